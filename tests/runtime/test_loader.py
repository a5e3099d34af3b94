"""load_model: backend by suffix, directory and stem resolution, batch splitting and padding."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detforge.core.errors import ConfigError
from detforge.runtime import load_model, resolve_model_path
from detforge.testing import random_image, tiny_onnx_model


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "fixed-batch-1"])
def test_onnx_model_predicts_batches_like_single_images(tmp_path: Path, dynamic: bool) -> None:
    model = load_model(tiny_onnx_model(tmp_path / "m.onnx", dynamic_batch=dynamic),
                       device="cpu", conf=0.05)
    assert model.backend.input_spec.fixed_batch == (None if dynamic else 1)
    imgs = [random_image(40 + 7 * i, 64, seed=i) for i in range(3)]
    together = model.predict(imgs)
    for img, dets in zip(imgs, together, strict=True):
        assert dets.equals(model.predict([img])[0], atol=1e-4)
        assert len(dets) and dets.xyxy[:, 3].max() <= img.shape[0]


def test_directory_and_stem_prefer_onnx_over_pt(tmp_path: Path) -> None:
    onnx = tiny_onnx_model(tmp_path / "best.onnx")
    (tmp_path / "best.engine").write_bytes(b"plan without manifest")  # unusable here
    assert resolve_model_path(tmp_path, device="cpu") == onnx
    assert resolve_model_path(tmp_path / "best", device="auto") == onnx
    assert load_model(tmp_path / "best", device="cpu").meta.classes == ("cat", "dog")


@pytest.mark.parametrize(("setup", "ctx"), [
    ("two-onnx", pytest.raises(ConfigError, match=r"several \.onnx models")),
    ("none", pytest.raises(ConfigError, match="no such model file")),
    ("txt", pytest.raises(ConfigError, match="unknown model type '.txt'")),
    ("one", contextlib.nullcontext()),
], ids=["ambiguous", "missing", "bad-suffix", "ok"])
def test_resolve_errors(tmp_path: Path, setup: str, ctx: Any) -> None:
    target = tmp_path
    if setup in ("two-onnx", "one"):
        tiny_onnx_model(tmp_path / "a.onnx")
    if setup == "two-onnx":
        tiny_onnx_model(tmp_path / "b.onnx")
    if setup == "none":
        target = tmp_path / "model"
    if setup == "txt":
        target = tmp_path / "m.txt"
        target.write_text("x")
    with ctx:
        resolve_model_path(target, device="cpu")


def test_fixed_size_model_rejects_other_imgsz(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fixed at 64,64"):
        load_model(tiny_onnx_model(tmp_path / "m.onnx"), device="cpu", imgsz=(32, 32))


def test_predict_rejects_non_rgb_arrays(tmp_path: Path) -> None:
    model = load_model(tiny_onnx_model(tmp_path / "m.onnx"), device="cpu")
    with pytest.raises(ConfigError, match="RGB"):
        model.predict([np.zeros((8, 8), np.uint8)])
