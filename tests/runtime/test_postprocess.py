"""Decoding of every layout and NMS, on hand-computed cases."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import BackendError
from detforge.runtime.postprocess import batched_nms, decode_batch, nms, scale_to_original
from detforge.runtime.preprocess import LetterboxInfo

BOXES = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 5], [50, 50, 60, 60]], np.float32)
SCORES = np.array([0.9, 0.8, 0.7, 0.6], np.float32)


@pytest.mark.parametrize(("iou", "keep"), [
    (0.7, [0, 1, 2, 3]),   # IoU(0,1) = 81/119 = 0.68 <= 0.7: kept; IoU(0,2) = 0.5
    (0.6, [0, 2, 3]),      # 0.68 > 0.6 drops box 1; box 2 (IoU 0.5) stays
    (0.45, [0, 3]),        # IoU 0.5 > 0.45 drops box 2 as well
], ids=["iou0.7", "iou0.6", "iou0.45"])
def test_nms_hand_computed(iou: float, keep: list[int]) -> None:
    assert nms(BOXES, SCORES, iou).tolist() == keep


def test_nms_iou_exactly_at_threshold_is_kept() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert nms(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]


def test_batched_nms_never_suppresses_across_classes() -> None:
    keep = batched_nms(BOXES[:2], SCORES[:2], np.array([0, 1]), 0.1)
    assert keep.tolist() == [0, 1]
    assert batched_nms(BOXES[:2], SCORES[:2], np.array([1, 1]), 0.1).tolist() == [0]


def _raw(rows: list[tuple[float, float, float, float, float, float]]) -> np.ndarray:
    """[1, 4+2, N] from (cx, cy, w, h, score class 0, score class 1) rows."""
    return np.asarray(rows, np.float32).T[None]


def test_decode_raw_thresholds_converts_and_suppresses() -> None:
    out = _raw([(5, 5, 10, 10, 0.9, 0.1),     # kept, class 0
                (6, 6, 10, 10, 0.2, 0.8),     # overlaps but class 1: kept
                (5, 5, 10, 10, 0.5, 0.0),     # same box, class 0, lower: suppressed
                (50, 50, 4, 4, 0.1, 0.2)])    # below conf 0.25
    [(xyxy, scores, cls)] = decode_batch([out], layout="raw", num_classes=2,
                                         input_hw=(64, 64), conf=0.25, iou=0.7)
    np.testing.assert_allclose(xyxy, [[0, 0, 10, 10], [1, 1, 11, 11]])
    np.testing.assert_allclose(scores, [0.9, 0.8])
    assert cls.tolist() == [0, 1]


def test_decode_max_det_caps_per_image() -> None:
    rows = [(10 + 20 * i, 10, 8, 8, 0.9 - 0.01 * i, 0.0) for i in range(5)]
    [(xyxy, _, _)] = decode_batch([_raw(rows)], layout="raw", num_classes=2,
                                  input_hw=(64, 128), conf=0.1, max_det=3)
    assert len(xyxy) == 3


def test_decode_older_rtdetr_per_class_scores_without_nms() -> None:
    out = np.array([[[0.5, 0.5, 0.5, 0.5, 0.1, 0.9, 0.0],
                     [0.5, 0.5, 0.5, 0.5, 0.8, 0.1, 0.0],
                     [0.1, 0.1, 0.1, 0.1, 0.2, 0.1, 0.0]]], np.float32)
    [(xyxy, scores, cls)] = decode_batch([out], layout="rtdetr-normalized", num_classes=3,
                                         input_hw=(100, 200), conf=0.25)
    np.testing.assert_allclose(xyxy, [[50, 25, 150, 75], [50, 25, 150, 75]])
    np.testing.assert_allclose(scores, [0.9, 0.8])
    assert cls.tolist() == [1, 0]


def test_decode_ultralytics_rtdetr_scales_normalised_boxes() -> None:
    # Ultralytics' own RT-DETR rows: cx, cy, w, h (normalised), score, class; two classes
    # make them as wide as a per-class [Q, 4+K] row: the score/class reading wins.
    out = np.array([[[0.5, 0.5, 0.5, 0.5, 0.9, 1.0],
                     [0.5, 0.5, 0.5, 0.5, 0.8, 0.0],
                     [0.1, 0.1, 0.1, 0.1, 0.2, 1.0]]], np.float32)
    [(xyxy, scores, cls)] = decode_batch([out], layout="rtdetr-normalized", num_classes=2,
                                         input_hw=(100, 200), conf=0.25)
    np.testing.assert_allclose(xyxy, [[50, 25, 150, 75], [50, 25, 150, 75]])
    np.testing.assert_allclose(scores, [0.9, 0.8])
    assert cls.tolist() == [1, 0]


def test_decode_rtdetr_pixel_rows_keep_overlaps() -> None:
    # detforge's rtdetr rows are already boxes in input pixels: no NMS, even on twins.
    out = np.array([[[10, 20, 30, 40, 0.9, 0], [10, 20, 30, 40, 0.8, 0],
                     [0, 0, 5, 5, 0.1, 1]]], np.float32)
    [(xyxy, scores, cls)] = decode_batch([out], layout="rtdetr", num_classes=2,
                                         input_hw=(64, 64), conf=0.25)
    np.testing.assert_allclose(xyxy, [[10, 20, 30, 40], [10, 20, 30, 40]])
    assert scores.tolist() == pytest.approx([0.9, 0.8]) and cls.tolist() == [0, 0]


@pytest.mark.parametrize(("layout", "kept"), [("deepstream", 2), ("end2end", 3)],
                         ids=["deepstream-nms", "end2end-no-nms"])
def test_decode_six_column_layouts(layout: str, kept: int) -> None:
    out = np.array([[[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0], [0, 0, 10, 10, 0.7, 1],
                     [0, 0, 0, 0, 0.0, 0]]], np.float32)  # last row: padding
    [(xyxy, scores, cls)] = decode_batch([out], layout=layout, num_classes=2,
                                         input_hw=(64, 64), conf=0.25)
    assert len(scores) == kept
    assert cls[-1] == 1


@pytest.mark.parametrize(("layout", "shape", "ctx"), [
    ("raw", (1, 7, 10), pytest.raises(BackendError, match="class list")),
    ("end2end", (1, 10, 7), pytest.raises(BackendError, match=r"\[B, N, 6\]")),
    ("raw", (1, 6), pytest.raises(BackendError, match="layout")),
    ("nope", (1, 10, 6), pytest.raises(BackendError, match="unknown output layout")),
    ("raw", (2, 6, 10), contextlib.nullcontext()),
], ids=["raw-wrong-k", "end2end-wrong-cols", "rank2", "unknown-layout", "ok"])
def test_decode_rejects_mismatched_shapes(layout: str, shape: tuple[int, ...], ctx: Any) -> None:
    with ctx:
        decode_batch([np.zeros(shape, np.float32)], layout=layout, num_classes=2,
                     input_hw=(64, 64))


def test_scale_to_original_undoes_letterbox_and_clips() -> None:
    info = LetterboxInfo(orig_h=480, orig_w=640, gain_x=0.5, gain_y=0.5, pad_x=0, pad_y=40)
    got = scale_to_original(np.array([[0, 40, 320, 280], [-5, 0, 400, 400]], np.float32), info)
    np.testing.assert_allclose(got, [[0, 0, 640, 480], [0, 0, 640, 480]])
