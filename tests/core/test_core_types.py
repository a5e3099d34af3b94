"""Core types: Detections indexing and validation, boxes, class maps, the error hierarchy."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core import (
    BackendError,
    ClassMap,
    ConfigError,
    DatasetError,
    Detections,
    DetforgeError,
    EngineMismatchError,
    ExportError,
    InvalidDetectionsError,
    MissingExtraError,
    TargetCapabilityError,
)
from detforge.core.boxes import box_area, box_iou, clip_xyxy


def _dets(n: int, *, tracks: bool = False) -> Detections:
    xyxy = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return Detections(xyxy, np.linspace(0, 1, n, dtype=np.float32), np.arange(n, dtype=np.int32),
                      np.arange(n, dtype=np.int64) + 10 if tracks else None)


@pytest.mark.parametrize(("index", "expect"), [
    (0, 0), (2, 2), (-1, 2), (-3, 0), (np.int64(1), 1),
    (3, IndexError), (5, IndexError), (-4, IndexError),
], ids=["first", "last", "minus-one", "minus-len", "numpy-int", "len", "beyond", "below"])
def test_integer_index(index: Any, expect: int | type[Exception]) -> None:
    d = _dets(3, tracks=True)
    if isinstance(expect, type):
        with pytest.raises(expect, match="out of range for 3 detections"):
            d[index]
        return
    one = d[index]
    assert len(one) == 1 and one.class_ids[0] == expect and one.track_ids is not None \
        and one.track_ids[0] == expect + 10


def test_empty_detections_refuse_every_integer_index() -> None:
    with pytest.raises(IndexError):
        Detections.empty()[0]


def test_mask_of_wrong_length_and_out_of_range_indices_raise() -> None:
    d = _dets(3)
    with pytest.raises(IndexError):
        d[np.array([True, False])]
    with pytest.raises(IndexError):
        d[[0, 7]]
    assert len(d[[2, 0]]) == 2 and d[[2, 0]].class_ids.tolist() == [2, 0]
    assert len(d[10:]) == 0  # slices clip, as Python's do


@pytest.mark.parametrize(("kwargs", "expect"), [
    ({}, contextlib.nullcontext()),
    ({"class_ids": np.zeros(2, np.int64)}, pytest.raises(InvalidDetectionsError, match="int32")),
    ({"scores": np.zeros(2, np.float64)}, pytest.raises(InvalidDetectionsError, match="float32")),
    ({"track_ids": np.zeros(3, np.int64)}, pytest.raises(InvalidDetectionsError, match="track")),
    ({"xyxy": np.zeros((2, 4, 1), np.float32)}, pytest.raises(InvalidDetectionsError)),
], ids=["ok", "class-dtype", "score-dtype", "track-length", "three-dims"])
def test_construction_is_validated(kwargs: dict[str, Any], expect: Any) -> None:
    base = {"xyxy": np.zeros((2, 4), np.float32), "scores": np.zeros(2, np.float32),
            "class_ids": np.zeros(2, np.int32)}
    with expect:
        Detections(**{**base, **kwargs})


def test_from_arrays_converts_and_concat_keeps_tracks_only_when_all_have_them() -> None:
    d = Detections.from_arrays([[0, 0, 1, 1]], [0.5], [2], track_ids=[7])
    assert d.xyxy.dtype == np.float32 and d.class_ids.dtype == np.int32
    both = Detections.concat([d, _dets(2, tracks=True)])
    assert both.track_ids is not None and both.track_ids.tolist() == [7, 10, 11]
    assert Detections.concat([d, _dets(2)]).track_ids is None


def test_equals_tolerance_and_tracks() -> None:
    a = _dets(2)
    b = Detections(a.xyxy + np.float32(0.01), a.scores, a.class_ids)
    assert not a.equals(b) and a.equals(b, atol=0.02)
    assert not a.equals(_dets(2, tracks=True)) and not a.equals(_dets(3))
    assert not a.equals(Detections(a.xyxy, a.scores, a.class_ids + 1))


def test_box_area_iou_and_clip_edge_cases() -> None:
    inverted = np.array([[10, 10, 0, 0]], np.float64)
    assert box_area(inverted)[0] == 0
    assert box_iou(inverted, inverted)[0, 0] == 0.0  # empty union: 0, not NaN
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    np.testing.assert_array_equal(clip_xyxy(np.array([[-5, -5, 50, 20.0]]), 40, 10),
                                  [[0, 0, 40, 10]])


def test_class_map_rules() -> None:
    cm = ClassMap(("cat", "dog"), source_ids=(3, 7))
    assert cm.index("dog") == 1 and cm.index_of_source(7) == 1 and cm.index_of_source(1) == -1
    assert ClassMap.from_names(["a", "b"]).source_ids == (0, 1) and len(cm) == 2
    with pytest.raises(ConfigError, match="valid classes: \\['cat', 'dog'\\]"):
        cm.index("bird")
    with pytest.raises(ConfigError, match="repeated: \\['a'\\]"):
        ClassMap(("a", "b", "a"))
    with pytest.raises(ConfigError, match="2 class names but 1 ids"):
        ClassMap(("a", "b"), source_ids=(1,))


@pytest.mark.parametrize(("cls", "code"), [
    (ConfigError, 2), (DatasetError, 2), (InvalidDetectionsError, 1), (ExportError, 1),
    (EngineMismatchError, 1), (TargetCapabilityError, 2), (MissingExtraError, 2),
    (BackendError, 1)])
def test_error_hierarchy_and_exit_codes(cls: type[DetforgeError], code: int) -> None:
    assert issubclass(cls, DetforgeError) and cls.exit_code == code


def test_dataset_error_names_file_and_line_and_missing_extra_is_an_import_error() -> None:
    err = DatasetError("bad box", path=Path("labels/a.txt"), line=3)
    assert str(err) == "labels/a.txt:3: bad box" and err.line == 3
    assert str(DatasetError("x", path="a.json")) == "a.json: x"
    with pytest.raises(ImportError):
        raise MissingExtraError("pip install 'detforge[train]'")
