"""Indexing a generated library with every phase; re-runs, moves, copies, prune, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import ConfigError, MissingExtraError
from detforge.library import index_library, parse_phases
from detforge.library.hashing import file_sha256


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_every_file_gets_one_row_and_every_phase_ran(indexed: tuple[Path, Path, dict[str, Any]]
                                                      ) -> None:
    root, db, m = indexed
    p = m["paths"]
    files = dict(rows(db, "SELECT path, kind FROM files"))
    assert sorted(files) == sorted(p.values())  # hidden files left out, nothing twice
    assert files[p["text"]] == "other" and files[p["video1"]] == "video"
    errors = dict(rows(db, "SELECT path, error FROM files WHERE error IS NOT NULL"))
    assert set(errors) == {p["broken"], p["text"]}
    assert "not a decodable image" in errors[p["broken"]]
    assert "unsupported file type" in errors[p["text"]]
    # every readable file points at its content by SHA-256
    for path, h in rows(db, "SELECT path, hash FROM files WHERE error IS NULL"):
        assert h == file_sha256(path)
    phases = dict(rows(db, "SELECT c.format, c.phases FROM contents c"))
    for fmt in ("jpg", "png", "webp", "tiff", "heic", "dng"):
        assert phases[fmt] == "meta,objects,quality,tags", fmt
    assert phases["avi"] == "meta,tags,video"
    assert m["summary"].analysed == 12 and m["summary"].linked == 1  # the exact copy


def test_photo_fields_detections_and_tags(indexed: tuple[Path, Path, dict[str, Any]]) -> None:
    _, db, m = indexed
    p = m["paths"]
    cols = "c.width, c.height, c.taken_at, c.camera_make, c.camera_model, c.lens, c.gps_lat"
    got = {path: rest for path, *rest in rows(
        db, f"SELECT f.path, {cols} FROM files f JOIN contents c ON c.hash = f.hash")}
    assert got[p["dog24"]] == [160, 120, "2024-05-06T07:08:09", "Apple", "iPhone 15 Pro",
                               "back camera", pytest.approx(52.52, abs=1e-4)]
    assert got[p["dng"]][:5] == [96, 64, "2024-05-06T07:08:09", "DetforgeCam", "DNG-1"]
    assert got[p["heic"]][:2] == [128, 96]
    objects = dict(rows(db, "SELECT f.path, o.count FROM files f JOIN objects o "
                            "ON o.hash = f.hash WHERE o.label = 'dog' AND f.kind = 'image'"))
    bright = {p[k] for k in ("dog24", "dog23", "blurry", "png", "webp", "tiff", "heic", "dng",
                             "near", "copy")}
    assert set(objects) == bright  # the dark photo has no dog, every bright one has
    boxes = rows(db, "SELECT x1, y1, x2, y2 FROM detections d JOIN files f ON f.hash = d.hash "
                     "WHERE f.path = ?", p["dog24"])
    assert boxes and all(0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
                         for x1, y1, x2, y2 in boxes)  # original pixels, not the 64x64 input
    tagged = rows(db, "SELECT count(DISTINCT hash) FROM tags")[0][0]
    assert tagged == rows(db, "SELECT count(*) FROM contents")[0][0]
    sharp = dict(rows(db, "SELECT f.path, c.sharpness FROM files f JOIN contents c "
                          "ON c.hash = f.hash"))
    assert sharp[p["blurry"]] < sharp[p["dog23"]] / 5


def test_video_summary_and_tracks(indexed: tuple[Path, Path, dict[str, Any]]) -> None:
    _, db, m = indexed
    (fps, count, duration, codec, summary), = rows(
        db, "SELECT c.fps, c.frame_count, c.duration_s, c.codec, c.video_summary FROM files f "
            "JOIN contents c ON c.hash = f.hash WHERE f.path = ?", m["paths"]["video1"])
    assert (fps, count, duration, codec) == (6.0, 12, 2.0, "MJPG")
    s = json.loads(summary)
    assert s["sampled_frames"] == 4 and [p["t"] for p in s["timeline"]] == [0.0, 0.5, 1.0, 1.5]
    assert s["objects"]["dog"]["frames"] >= 3
    if importlib.util.find_spec("ultralytics") is not None:
        assert s["tracked"] and s["tracks"]
        n_tracks = rows(db, "SELECT count(*) FROM tracks t JOIN files f ON f.hash = t.hash "
                            "WHERE f.path = ?", m["paths"]["video1"])[0][0]
        assert n_tracks == len(s["tracks"]) == s["objects"]["dog"]["tracks"]


def test_rerun_touches_nothing(indexed: tuple[Path, Path, dict[str, Any]], tiny_model: Path,
                               tiny_clip: Path, tags_file: Path) -> None:
    root, db, m = indexed
    before = rows(db, "SELECT * FROM files ORDER BY id")
    s = index_library(root, db=db, model=tiny_model, tagger=str(tiny_clip), tags=tags_file,
                      progress=False, video_every_s=0.5)
    assert (s.analysed, s.unchanged, s.errors, s.other) == (0, m["files"], 0, 0)
    assert rows(db, "SELECT * FROM files ORDER BY id") == before


def test_moved_copied_changed_and_deleted_files(library: tuple[Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    root, m = library
    p = m["paths"]
    db = tmp_path / "l.sqlite"
    index_library(root, db=db, progress=False)
    ids = dict(rows(db, "SELECT path, id FROM files"))
    analysed_at = rows(db, "SELECT analysed_at FROM contents ORDER BY hash")
    moved = root / "moved" / "renamed.jpg"
    moved.parent.mkdir()
    os.replace(p["dog24"], moved)
    shutil.copy2(p["dog23"], root / "a" / "third_copy.jpg")
    Path(p["png"]).unlink()
    s = index_library(root, db=db, progress=False)
    assert (s.analysed, s.moved, s.linked, s.missing) == (0, 1, 2, 1)
    new_ids = dict(rows(db, "SELECT path, id FROM files"))
    assert new_ids[str(moved)] == ids[p["dog24"]]  # the same row, its path updated
    assert p["dog24"] not in new_ids and p["png"] in new_ids  # kept until --prune
    assert rows(db, "SELECT analysed_at FROM contents ORDER BY hash") == analysed_at
    s = index_library(root, db=db, progress=False, prune=True)
    assert s.pruned == 1
    assert p["png"] not in dict(rows(db, "SELECT path, id FROM files"))
    n_files = sum(1 for f in root.rglob("*") if f.is_file() and ".thumbnails" not in f.parts)
    assert rows(db, "SELECT count(*) FROM files")[0][0] == n_files
    # the pruned content is gone with its children; nothing is orphaned
    assert rows(db, "SELECT count(*) FROM contents WHERE hash NOT IN "
                    "(SELECT hash FROM files WHERE hash IS NOT NULL)")[0][0] == 0
    # an edited photo (same path, new bytes) is analysed again
    Path(p["dog23"]).write_bytes(Path(p["webp"]).read_bytes())
    s = index_library(root, db=db, progress=False)
    assert s.linked == 1 and s.analysed == 0  # its new bytes are those of photo.webp
    assert rows(db, "SELECT hash FROM files WHERE path = ?", p["dog23"])[0][0] == \
        file_sha256(p["webp"])


def test_unreadable_files_are_recorded_and_retried_only_when_asked(
        library: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, m = library
    db = tmp_path / "l.sqlite"
    s = index_library(root, db=db, progress=False)
    assert s.errors == 1 and s.other == 1
    s = index_library(root, db=db, progress=False)
    assert s.errors == 0 and s.unchanged == m["files"]
    s = index_library(root, db=db, progress=False, retry_errors=True)
    assert s.errors == 1


def test_missing_extra_indexes_the_rest_then_raises(library: tuple[Path, dict[str, Any]],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root, m = library
    db = tmp_path / "l.sqlite"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pillow_heif" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"1 file\(s\): HEIC.*detforge\[library\]"):
        index_library(root, db=db, progress=False)
    paths = {r[0] for r in rows(db, "SELECT path FROM files")}
    assert m["paths"]["heic"] not in paths and len(paths) == m["files"] - 1
    monkeypatch.undo()
    s = index_library(root, db=db, progress=False)  # installed now: only the HEIC is new
    assert s.analysed == 1 and rows(db, "SELECT count(*) FROM files")[0][0] == m["files"]


@pytest.mark.parametrize("text,model,tagger,expected", [
    (None, False, False, {"meta", "quality"}),
    (None, True, True, {"meta", "quality", "objects", "video", "tags"}),
    ("quality", False, False, {"meta", "quality"}),
    ("objects", False, False, ConfigError),
    ("tags", True, False, ConfigError),
    ("colour", True, True, ConfigError),
], ids=["default", "default-all", "explicit", "objects-no-model", "tags-no-tagger", "unknown"])
def test_parse_phases(text: str | None, model: bool, tagger: bool, expected: Any) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError):
            parse_phases(text, model=model, tagger=tagger)
    else:
        assert parse_phases(text, model=model, tagger=tagger) == expected


def test_a_new_model_reanalyses_objects_only_where_needed(library: tuple[Path, dict[str, Any]],
                                                          tmp_path: Path, tiny_model: Path
                                                          ) -> None:
    root, m = library
    db = tmp_path / "l.sqlite"
    index_library(root, db=db, progress=False, phases="meta,quality")
    assert rows(db, "SELECT count(*) FROM detections")[0][0] == 0
    s = index_library(root, db=db, progress=False, model=tiny_model, phases="objects",
                      video_every_s=0.5)
    assert s.analysed == 10, s  # the photos; videos get frames only with the video phase
    assert rows(db, "SELECT count(*) FROM contents WHERE phases LIKE '%objects%'")[0][0] == 10
    # quality measured by the first run is kept
    assert rows(db, "SELECT count(*) FROM contents WHERE sharpness IS NOT NULL")[0][0] == 10


def test_a_database_inside_the_library_is_not_indexed(library: tuple[Path, dict[str, Any]]
                                                      ) -> None:
    root, m = library
    db = root / "library.sqlite"
    index_library(root, db=db, progress=False)
    s = index_library(root, db=db, progress=False)
    assert s.files == m["files"] and s.unchanged == m["files"]
    assert not rows(db, "SELECT path FROM files WHERE path LIKE '%library.sqlite%'")
