"""Correctness: the small RT-DETR learns at 16:9 on the CPU, and every format agrees.

Trained by ``detforge train`` at a 160x288 letterboxed input (:mod:`conftest`), exported
with ``detforge export`` (rtdetr layout), scored by ``detforge evaluate`` (pycocotools'
numbers) on its ONNX; the ``.pt``, the ONNX and both INT8 flavours must then agree. Chance
level is about 0: two classes, 1-8 objects of 6-60 px per image, random positions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.rtdetr.conftest import TrainedRTDETR
from typer.testing import CliRunner

from detforge.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.train]

MIN_AP50 = 0.5
runner = CliRunner()


def test_run_records_the_real_input(rtdetr_trained: TrainedRTDETR) -> None:
    """run.json, args.yaml and the checkpoint name 160x288, not Ultralytics' square 288."""
    import torch

    h, w = rtdetr_trained.imgsz
    run = json.loads((rtdetr_trained.records / "run.json").read_text())
    assert run["input"] == {"imgsz": [h, w], "letterbox": True, "multi_scale": 0.0}
    args = yaml.safe_load((rtdetr_trained.records / "args.yaml").read_text())
    assert args["imgsz"] == [h, w] and args["rect"] is False
    ckpt = torch.load(rtdetr_trained.pt, map_location="cpu", weights_only=False)
    assert ckpt["train_args"]["imgsz"] == [h, w]
    assert ckpt["model"].yaml["detforge"] == {"imgsz": [h, w], "letterbox": True}


def test_onnx_reaches_ap50_through_detforge_evaluate(rtdetr_trained: TrainedRTDETR,
                                                     rtdetr_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(rtdetr_onnx), "--data", str(rtdetr_trained.data),
                                 "--split", "val", "--json", str(out)])
    assert result.exit_code == 0, result.output
    ap50 = json.loads(out.read_text())["stats"][1]
    took = (f"trained in {rtdetr_trained.train_seconds:.0f} s" if rtdetr_trained.train_seconds
            else "cached weights")
    print(f"\nRT-DETR tiny, 160x288: AP50 {ap50:.3f} on its ONNX ({took})")
    assert ap50 >= MIN_AP50, f"AP50 {ap50:.3f} < {MIN_AP50}"


def _val_images(data: Path) -> list[np.ndarray]:
    from detforge.core.imageio import read_image_bgr

    out = []
    for f in sorted((data / "images" / "val").iterdir()):
        bgr = read_image_bgr(f)
        assert bgr is not None
        out.append(np.ascontiguousarray(bgr[..., ::-1]))
    return out


def test_pt_and_onnx_agree_within_a_pixel(rtdetr_trained: TrainedRTDETR,
                                          rtdetr_onnx: Path) -> None:
    """The .pt (torch, Ultralytics' head) and the ONNX give the same detections: same
    letterbox, boxes within 1 px, scores within 1e-3 (measured: 0.03 px and 2e-6 once the
    .pt's cached FP16-rounded anchors are rebuilt; 1.5e-3 before)."""
    from detforge.runtime import load_model

    pt = load_model(rtdetr_trained.pt, device="cpu", conf=0.05)
    onnx = load_model(rtdetr_onnx, device="cpu", conf=0.05)
    assert pt.imgsz == onnx.imgsz == rtdetr_trained.imgsz
    assert not pt.meta.letterbox.scale_fill and not onnx.meta.letterbox.scale_fill
    compared = 0
    for img in _val_images(rtdetr_trained.data):
        a, b = pt.predict([img])[0], onnx.predict([img])[0]
        assert abs(len(a) - len(b)) <= 1  # a score on the threshold may cross it
        n = min(len(a), len(b))
        diff = np.abs(a.xyxy[:n, None, :] - b.xyxy[None, :n, :]).max(-1)
        same = (diff <= 1.0) & (a.class_ids[:n, None] == b.class_ids[None, :n]) & (
            np.abs(a.scores[:n, None] - b.scores[None, :n]) <= 1e-3)
        assert same.any(1).all(), np.flatnonzero(~same.any(1))
        compared += n
    assert compared >= 50, f"only {compared} boxes compared"


@pytest.mark.parametrize("flavour", ["tensorrt", "cpu"])
def test_int8_keeps_the_detections(rtdetr_trained: TrainedRTDETR, rtdetr_onnx: Path,
                                   tmp_path: Path, flavour: str) -> None:
    """Both INT8 flavours (the decoder kept float) lose little and keep the boxes; the
    fidelity report records the hop."""
    src = tmp_path / "model.onnx"
    src.write_bytes(rtdetr_onnx.read_bytes())
    out = tmp_path / f"int8_{flavour}.onnx"
    result = runner.invoke(app, ["quantize", str(src), "--data", str(rtdetr_trained.data),
                                 "--out", str(out), "--for", flavour, "--calib-images", "32",
                                 "--max-drop", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    fid = report["fidelity"]
    assert fid["map50_after"] >= MIN_AP50 - 0.05, fid
    assert fid["box_agreement"] >= 0.85, fid
    hops = json.loads((tmp_path / "fidelity.json").read_text())["hops"]
    assert hops[-1]["kind"] == "quantize-int8" and hops[-1]["target"] == str(out)
