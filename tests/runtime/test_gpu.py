"""GPU paths of the runtime (run on a CUDA machine; skipped cleanly elsewhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detforge.runtime import load_model
from detforge.runtime.hardware import choose_batch, detect_hardware
from detforge.testing import random_image

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_hardware_profile_sees_the_gpu() -> None:
    hw = detect_hardware(probe_torch=True)
    assert hw.gpu_name and hw.gpu_memory_bytes and hw.has_cuda
    batch = choose_batch(hw, device="cuda:0", fixed_batch=None, max_batch=None,
                         input_hw=(640, 640))
    assert batch >= 8 and batch & (batch - 1) == 0  # a power of two from the GPU's memory


def test_fp16_channels_last_on_gpu_matches_cpu(yolo_onnx: Path) -> None:
    pt = yolo_onnx.with_suffix(".pt")
    gpu = load_model(pt, device="cuda", imgsz=(320, 320), conf=0.02)
    cpu = load_model(pt, device="cpu", imgsz=(320, 320), conf=0.02)
    assert gpu.backend.half and not cpu.backend.half  # type: ignore[attr-defined]
    imgs = [random_image(240, 320, seed=s) for s in range(4)]
    for got, want in zip(gpu.predict(imgs), cpu.predict(imgs), strict=True):
        assert len(want) > 0 and abs(len(got) - len(want)) <= 3
        top = min(len(got), len(want), 15)
        diff = np.abs(got.xyxy[:top, None, :] - want.xyxy[None, :, :]).max(-1)
        same = ((diff <= 3.0) & (got.class_ids[:top, None] == want.class_ids[None])
                & (np.abs(got.scores[:top, None] - want.scores[None]) <= 1e-2))
        assert same.any(1).mean() >= 0.8


def test_predict_pipeline_on_gpu(yolo_onnx: Path, tmp_path: Path) -> None:
    from PIL import Image

    from detforge.runtime.predict import predict

    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in range(12):
        Image.fromarray(random_image(240, 320, seed=s)).save(folder / f"{s}.jpg")
    stats = predict(yolo_onnx.with_suffix(".pt"), folder, out=tmp_path / "d.jsonl",
                    device="cuda", batch="auto", imgsz=(320, 320), conf=0.02, progress=False)
    assert stats.images == 12 and stats.skipped == 0
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 12
