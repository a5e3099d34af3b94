"""detforge's ONNX predictions match Ultralytics' own ONNX predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detforge.runtime import load_model
from detforge.testing import random_image

pytestmark = pytest.mark.slow

SIZES = [(240, 320), (320, 320), (200, 500), (511, 333), (100, 90)]


@pytest.mark.parametrize("conf", [0.005, 0.02], ids=["conf0.005", "conf0.02"])
def test_matches_ultralytics_onnx_predict(yolo_onnx: Path, conf: float) -> None:
    from ultralytics import YOLO

    ours = load_model(yolo_onnx, device="cpu", conf=conf, iou=0.7, max_det=300)
    ref = YOLO(str(yolo_onnx), task="detect")
    compared = matched = 0
    for seed, (h, w) in enumerate(SIZES):
        img = random_image(h, w, seed=seed)
        got = ours.predict([img])[0]
        res = ref.predict(np.ascontiguousarray(img[..., ::-1]), conf=conf, iou=0.7, imgsz=320,
                          max_det=300, verbose=False)[0].boxes
        want_xyxy, want_conf = res.xyxy.numpy(), res.conf.numpy()
        want_cls = res.cls.numpy().astype(np.int32)
        assert abs(len(got) - len(want_conf)) <= 2, (h, w, len(got), len(want_conf))
        top = min(len(got), len(want_conf), 25)
        # Equal scores may come in either order, so match each box to the reference.
        diff = np.abs(got.xyxy[:top, None, :] - want_xyxy[None, :, :]).max(-1)
        same = ((diff <= 1.0) & (got.class_ids[:top, None] == want_cls[None])
                & (np.abs(got.scores[:top, None] - want_conf[None]) <= 1e-3))
        hits = int(same.any(1).sum())
        # An untrained model scores many overlapping boxes alike, so an IoU a hair from the
        # NMS threshold may keep a different twin on another CPU's float rounding.
        assert hits >= top - 2, f"{(h, w)}: boxes {np.flatnonzero(~same.any(1)).tolist()} unmatched"
        compared += top
        matched += hits
    assert compared >= 20, f"only {compared} boxes compared; the test would be vacuous"
    assert matched >= 0.95 * compared, (matched, compared)


def test_torch_backend_matches_onnx_backend(yolo_onnx: Path) -> None:
    pt = yolo_onnx.with_suffix(".pt")
    torch_model = load_model(pt, device="cpu", imgsz=(320, 320), conf=0.02)
    onnx_model = load_model(yolo_onnx, device="cpu", conf=0.02)
    assert torch_model.backend.name == "torch" and torch_model.classes == onnx_model.classes
    img = random_image(240, 320, seed=7)
    got, want = torch_model.predict([img])[0], onnx_model.predict([img])[0]
    # Ultralytics stores .pt weights in fp16, so the two differ by fp16 rounding.
    assert len(want) > 0 and abs(len(got) - len(want)) <= 2
    top = min(len(got), len(want), 15)
    diff = np.abs(got.xyxy[:top, None, :] - want.xyxy[None, :, :]).max(-1)
    same = ((diff <= 3.0) & (got.class_ids[:top, None] == want.class_ids[None])
            & (np.abs(got.scores[:top, None] - want.scores[None]) <= 5e-3))
    assert same.any(1).mean() >= 0.8, np.flatnonzero(~same.any(1))
