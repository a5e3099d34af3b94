"""Sinks round-trip: what JsonlSink, CsvSink and CocoSink write reads back the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.runtime.sinks import (
    CocoSink,
    CsvSink,
    JsonlSink,
    Prediction,
    VisSink,
    make_sink,
    read_coco_results,
    read_csv,
    read_jsonl,
)
from detforge.testing import random_image

CLASSES = ("person", "car")


def _predictions(tracked: bool = False) -> list[Prediction]:
    dets = Detections.from_arrays([[1.5, 2.25, 30.0, 40.5], [0, 0, 5, 5]], [0.9, 0.12345],
                                  [1, 0], [7, 9] if tracked else None)
    return [Prediction("a.jpg", None, 64, 48, dets),
            Prediction("v.mp4", 3, 64, 48, Detections.empty()),
            Prediction("v.mp4", 4, 64, 48, dets[0])]


@pytest.mark.parametrize("tracked", [False, True], ids=["plain", "tracked"])
@pytest.mark.parametrize(("sink_cls", "reader"), [(JsonlSink, read_jsonl), (CsvSink, read_csv)],
                         ids=["jsonl", "csv"])
def test_round_trip(tmp_path: Path, sink_cls: type, reader: object, tracked: bool) -> None:
    out = tmp_path / "out"
    sink = sink_cls(out, CLASSES)
    preds = _predictions(tracked)
    for p in preds:
        sink.write(p)
    assert not out.exists()  # atomic: nothing until closed
    sink.close()
    got = reader(out)  # type: ignore[operator]
    assert [(g.source, g.frame, g.width, g.height) for g in got] == [
        (p.source, p.frame, p.width, p.height) for p in preds]
    for g, p in zip(got, preds, strict=True):
        assert g.detections.equals(p.detections, atol=0.01)


def test_jsonl_record_shape(tmp_path: Path) -> None:
    rec = _predictions()[0].to_record(CLASSES)
    assert rec["detections"][0] == {"xyxy": [1.5, 2.25, 30.0, 40.5], "score": 0.9,
                                    "class_id": 1, "class_name": "car", "track_id": None}


def test_coco_results_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    sink = CocoSink(out, CLASSES, category_ids=[1, 3])
    for p in _predictions():
        sink.write(p)
    sink.close()
    got = read_coco_results(out)
    assert sorted(got) == [1, 3]
    np.testing.assert_allclose(got[1].xyxy, _predictions()[0].detections.xyxy, atol=0.01)
    assert got[1].class_ids.tolist() == [3, 1]


def test_coco_image_id_map_names_missing_source(tmp_path: Path) -> None:
    sink = CocoSink(tmp_path / "r.json", CLASSES, image_ids={"a.jpg": 12})
    sink.write(_predictions()[0])
    with pytest.raises(ConfigError, match="v.mp4#3: not in the COCO image id map"):
        sink.write(_predictions()[1])


def test_coco_image_ids_match_the_longest_listed_path_suffix(tmp_path: Path) -> None:
    sink = CocoSink(tmp_path / "r.json", CLASSES,
                    image_ids={"a.jpg": 1, "val/a.jpg": 2, "x/b.jpg": 3})
    for source in ("/data/ds/val/a.jpg", "/data/ds/train/a.jpg", "ds/x/b.jpg"):
        sink.write(Prediction(source, None, 10, 10, _predictions()[0].detections))
    sink.close()
    assert sorted({r["image_id"] for r in json.loads((tmp_path / "r.json").read_text())}) \
        == [1, 2, 3]
    with pytest.raises(ConfigError, match="b.jpg: not in the COCO image id map"):
        sink.write(Prediction("elsewhere/b.jpg", None, 10, 10, _predictions()[0].detections))


def test_vis_sink_writes_images_and_video(tmp_path: Path) -> None:
    sink = VisSink(tmp_path / "vis", CLASSES, fps=5)
    img = random_image(48, 64)
    for p in _predictions():
        sink.write(Prediction(p.source, p.frame, p.width, p.height, p.detections, img))
    sink.close()
    assert sorted(f.name for f in (tmp_path / "vis").iterdir()) == ["a.jpg", "v.mp4"]


def test_make_sink_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"choose one of \['jsonl', 'coco', 'csv'\]"):
        make_sink("xml", tmp_path / "x", CLASSES)
