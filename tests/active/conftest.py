"""Active-learning fixtures: a tiny real ONNX detector whose confidence is planted in the image.

The detector runs through ONNX Runtime like any exported model (``raw`` layout, detforge
metadata). It reports one box, centred, whose class scores are affine in the mean grey level
``m`` (0..1) of the image's *left half*: class k scores ``clip(a_k * m + b_k, 0, 1)``. An
image's brightness therefore sets how sure the model is, and a left/right asymmetric image
changes its score when mirrored (test-time augmentation). A dangling ``AveragePool`` over
32x32 cells gives the graph a stride-32 feature map (the mean colour per cell), which the
embedding tap pools into the image's mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from detforge.runtime import ModelMeta, embed_meta
from detforge.testing import write_image

SIZE = 64


def probe_onnx(path: Path, *, classes: Sequence[str] = ("thing",),
               slopes: Sequence[float] | None = None, offsets: Sequence[float] | None = None,
               half: str = "left", size: int = SIZE) -> Path:
    """Write the planted-confidence detector described in the module docstring."""
    k = len(classes)
    a = np.asarray(slopes if slopes is not None else [1.0] * k, np.float32).reshape(1, k, 1)
    b = np.asarray(offsets if offsets is not None else [0.0] * k, np.float32).reshape(1, k, 1)
    box = np.array([size / 2, size / 2, size / 2, size / 2], np.float32).reshape(1, 4, 1)
    start, end = (0, size // 2) if half == "left" else (size // 2, size)
    graph = helper.make_graph(
        [helper.make_node("Slice", ["images", "starts", "ends", "axes"], ["half"]),
         helper.make_node("ReduceMean", ["half", "mean_axes"], ["m"], keepdims=1),
         helper.make_node("Reshape", ["m", "shape"], ["m3"]),
         helper.make_node("Mul", ["m3", "a"], ["am"]),
         helper.make_node("Add", ["am", "b"], ["raw_scores"]),
         helper.make_node("Clip", ["raw_scores", "zero_s", "one_s"], ["scores"]),
         helper.make_node("Mul", ["m3", "zeros"], ["z"]),
         helper.make_node("Add", ["z", "box"], ["boxes"]),
         helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
         helper.make_node("AveragePool", ["images"], ["cells"], kernel_shape=[32, 32],
                          strides=[32, 32])],
        "probe",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + k, 1])],
        [numpy_helper.from_array(np.array([start], np.int64), "starts"),
         numpy_helper.from_array(np.array([end], np.int64), "ends"),
         numpy_helper.from_array(np.array([3], np.int64), "axes"),
         numpy_helper.from_array(np.array([1, 2, 3], np.int64), "mean_axes"),
         numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
         numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(0, np.float32), "zero_s"),
         numpy_helper.from_array(np.array(1, np.float32), "one_s"),
         numpy_helper.from_array(np.zeros((1, 4, 1), np.float32), "zeros"),
         numpy_helper.from_array(box, "box")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    embed_meta(model, ModelMeta(classes=tuple(classes), imgsz=(size, size), layout="raw",
                                dynamic_batch=True))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def textured(level: int, *, seed: int, colour: Sequence[int] | None = None,
             right: int | None = None, size: int = SIZE) -> NDArray[np.uint8]:
    """An RGB image: seeded noise (+-20) around ``level`` (or ``colour``); the right half
    around ``right`` when given. Distinct seeds give distinct perceptual hashes."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, (size, size, 1)).astype(np.int32)
    base = np.array(colour if colour is not None else [level] * 3, np.int32)[None, None, :]
    img = np.repeat(base, size, 0).repeat(size, 1) + noise
    if right is not None:
        img[:, size // 2:] = right + noise[:, size // 2:]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_pool(folder: Path, images: dict[str, NDArray[np.uint8]]) -> Path:
    """Write ``{name: image}`` as PNG files under ``folder``."""
    for name, img in images.items():
        write_image(folder / name, img)
    return folder


def last_line(output: str) -> str:
    """The last non-blank line of CLI output (progress bars redraw with carriage returns)."""
    lines = [ln for ln in output.replace("\r", "\n").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def probe_model(tmp_path: Path) -> Path:
    """One class; score = mean grey of the left half."""
    return probe_onnx(tmp_path / "probe.onnx")


# Grey levels and the planted uncertainty (|score - 0.5| small = unsure):
# 6 ~ 0.02 (sure: background), 250 ~ 0.98 (sure: object), 128 ~ 0.50 (most unsure).
PLANTED = {"a_dark.png": 6, "b_bright.png": 250, "c_unsure.png": 128, "d_unsure2.png": 110,
           "e_mid.png": 200, "f_low.png": 40}


@pytest.fixture
def planted_pool(tmp_path: Path) -> Path:
    """Six textured grey images of planted certainty (see :data:`PLANTED`)."""
    return write_pool(tmp_path / "pool", {n: textured(v, seed=i)
                                          for i, (n, v) in enumerate(PLANTED.items())})
