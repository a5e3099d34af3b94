"""Sources: folders, globs, list files, videos with every-n, fps and scene-change sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.runtime.sources import SourceItem, open_source
from detforge.testing import random_image, solid_image, write_image, write_video


def _scene_video(path: Path) -> Path:
    """20 frames at 10 fps: four scenes of five near-identical frames (grey 20, 80, 160, 240)."""
    frames = []
    for level in (20, 80, 160, 240):
        for k in range(5):
            frames.append(solid_image(48, 64, level + k))
    return write_video(path, frames, fps=10)


@pytest.mark.parametrize(("kwargs", "frames"), [
    ({}, list(range(20))),
    ({"every": 3}, [0, 3, 6, 9, 12, 15, 18]),
    ({"fps": 2.5}, [0, 4, 8, 12, 16]),
    ({"fps": 100.0}, list(range(20))),
    ({"keyframes": True}, [0, 5, 10, 15]),
    ({"every": 2, "keyframes": True}, [0, 6, 10, 16]),
], ids=["all", "every3", "fps2.5", "fps-above-source", "keyframes", "every2-keyframes"])
def test_video_sampling(tmp_path: Path, kwargs: dict[str, object], frames: list[int]) -> None:
    src = open_source(_scene_video(tmp_path / "v.avi"), **kwargs)  # type: ignore[arg-type]
    items = list(src)
    assert [it.frame for it in items] == frames
    assert items[0].load().shape == (48, 64, 3)
    total = src.estimate_total()
    assert total is not None and total >= len(frames) - 1


def test_folder_is_recursive_and_sorted_with_videos(tmp_path: Path) -> None:
    write_image(tmp_path / "b.jpg", random_image(8, 8))
    write_image(tmp_path / "a" / "c.png", random_image(8, 8))
    (tmp_path / "notes.md").write_text("skip me")
    _scene_video(tmp_path / "z.avi")
    src = open_source(tmp_path, every=10)
    assert [(Path(i.source).name, i.frame) for i in src] == [
        ("c.png", None), ("b.jpg", None), ("z.avi", 0), ("z.avi", 10)]


def test_glob_and_list_file(tmp_path: Path) -> None:
    for name in ("x1.jpg", "x2.jpg", "y.jpg"):
        write_image(tmp_path / "imgs" / name, random_image(8, 8))
    assert [Path(i.source).name for i in open_source(str(tmp_path / "imgs" / "x*.jpg"))] == [
        "x1.jpg", "x2.jpg"]
    lst = tmp_path / "files.txt"
    lst.write_text("# photos\nimgs/y.jpg\n\nimgs/missing.jpg\nimgs/x1.jpg\n")
    src = open_source(lst)
    assert [Path(i.source).name for i in src] == ["y.jpg", "x1.jpg"]
    assert [Path(s.source).name for s in src.skipped] == ["missing.jpg"]


def test_unreadable_video_is_skipped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    src = open_source(tmp_path / "bad.mp4")
    assert list(src) == [] and len(src.skipped) == 1


def test_camera_and_stream_specs() -> None:
    assert open_source("0").entries == [("stream", "0")]
    assert open_source("rtsp://cam/1").entries == [("stream", "rtsp://cam/1")]
    assert open_source("rtsp://cam/1").estimate_total() is None


@pytest.mark.parametrize(("spec", "kwargs", "match"), [
    ("nope/none.jpg", {}, "no such file or directory"),
    ("nope/*.jpg", {}, "matched no image or video"),
    (".", {"every": 0}, "--every"),
    (".", {"fps": -1.0}, "--fps"),
], ids=["missing", "empty-glob", "every0", "negative-fps"])
def test_bad_specs_raise_config_error(tmp_path: Path, spec: str, kwargs: dict[str, object],
                                      match: str) -> None:
    write_image(tmp_path / "a.jpg", random_image(8, 8))
    with pytest.raises(ConfigError, match=match):
        open_source(str(tmp_path / spec), **kwargs)  # type: ignore[arg-type]


def test_item_load_converts_bgr_frames_to_rgb() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    assert SourceItem("s", 0, bgr=bgr).load()[0, 0].tolist() == [0, 0, 255]
