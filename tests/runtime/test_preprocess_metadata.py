"""Letterbox identical to Ultralytics', and the model metadata contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detforge.core.errors import BackendError
from detforge.runtime.metadata import META_KEY, LetterboxSpec, ModelMeta, meta_from_props
from detforge.runtime.preprocess import letterbox, to_input
from detforge.testing import random_image


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (321, 123), (10, 1000), (320, 320),
                                (100, 90)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("target", [(320, 320), (384, 640)], ids=["320sq", "384x640"])
def test_letterbox_matches_ultralytics(hw: tuple[int, int], target: tuple[int, int]) -> None:
    from ultralytics.data.augment import LetterBox

    img = random_image(*hw, seed=1)
    want = LetterBox(target, auto=False, center=True)(image=img)
    got, info = letterbox(img, target)
    np.testing.assert_array_equal(got, want)
    assert (info.orig_h, info.orig_w) == hw


def test_letterbox_scale_fill_and_top_left() -> None:
    img = random_image(100, 200, seed=0)
    out, info = letterbox(img, (64, 64), LetterboxSpec(scale_fill=True))
    assert out.shape == (64, 64, 3) and (info.pad_x, info.pad_y) == (0, 0)
    assert (info.gain_x, info.gain_y) == (64 / 200, 64 / 100)
    out, info = letterbox(img, (64, 64), LetterboxSpec(center=False))
    assert info.pad_y == 0 and (out[40:] == 114).all()


def test_to_input_normalises_to_chw_float() -> None:
    x = to_input(np.full((2, 3, 3), 255, np.uint8))
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, 1.0)


def test_meta_round_trips_through_props() -> None:
    meta = ModelMeta(classes=("a", "b"), imgsz=(384, 640), layout="deepstream",
                     precision="int8", dataset_version="abc", metrics={"map50": 0.5})
    assert meta_from_props({META_KEY: meta.to_json()}, source="m.onnx") == meta
    assert json.loads(meta.to_json())["imgsz"] == [384, 640]


def test_meta_reads_ultralytics_props() -> None:
    props = {"names": "{0: 'person', 1: 'car'}", "imgsz": "[320, 480]", "stride": "32",
             "task": "detect", "end2end": "False", "args": "{'dynamic': True}"}
    meta = meta_from_props(props, source="y.onnx")
    assert meta.classes == ("person", "car") and meta.imgsz == (320, 480)
    assert meta.layout == "raw" and meta.dynamic_batch


@pytest.mark.parametrize(("props", "match"), [
    ({}, "no model metadata"),
    ({META_KEY: '{"classes": ["a"], "layout": "yolo"}'}, "layout"),
    ({META_KEY: '{"classes": ["a"], "colour": "RGB"}'}, "colour"),
    ({"names": "{0: 'a'}", "task": "segment"}, "segment"),
], ids=["none", "bad-layout", "unknown-key", "not-detect"])
def test_meta_errors_say_what_and_fix(props: dict[str, str], match: str) -> None:
    with pytest.raises(BackendError, match=match):
        meta_from_props(props, source="m.onnx")
