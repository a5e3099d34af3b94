"""Test helpers: a fake backend with fixed outputs, and synthetic images and videos.

``FakeBackend`` lets the pipeline, sinks, serving and benchmarks be tested without ONNX
Runtime or TensorRT, the way httpx's ``MockTransport`` stands in for a network.

Example:
    >>> from detforge.testing import FakeBackend, fake_model
    >>> model = fake_model(FakeBackend.echo())
    >>> dets = model.predict([solid_image(64, 64, 128)])[0]  # the fake input is 64x64
    >>> round(float(dets.scores[0]), 2)
    0.5
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.runtime.backend import BackendBase, InputSpec, RawOutput
from detforge.runtime.metadata import ModelMeta
from detforge.runtime.model import Model

__all__ = ["FakeBackend", "fake_model", "random_image", "seeded_yolo11n", "solid_image",
           "tiny_onnx_model", "write_image", "write_video"]

OutputFn = Callable[[NDArray[np.float32]], RawOutput]


class FakeBackend(BackendBase):
    """A backend that returns fixed outputs (or a function of the batch).

    Args:
        outputs: The raw outputs for a batch of one (repeated along the batch axis), or a
            function from the batch to the outputs.
        input_spec: The input it claims to take (default: dynamic batch, 64x64).
        delay: Seconds each :meth:`infer` sleeps, to simulate a slow model.
        interrupt_on_call: On this 1-based call, send this process SIGINT as Ctrl-C would
            (Python raises ``KeyboardInterrupt`` in the main thread); the call still returns.

    Attributes:
        batch_sizes: The batch size of every call so far.
    """

    name = "fake"

    def __init__(self, outputs: RawOutput | OutputFn, *, input_spec: InputSpec | None = None,
                 delay: float = 0.0, interrupt_on_call: int | None = None) -> None:
        self._outputs = outputs
        self.input_spec = input_spec or InputSpec(height=64, width=64, max_batch=None)
        self.device = "cpu"
        self.delay = delay
        self.interrupt_on_call = interrupt_on_call
        self.batch_sizes: list[int] = []
        self.closed = False

    @classmethod
    def echo(cls, **kwargs: Any) -> FakeBackend:
        """An ``end2end`` backend: one box over the whole input per image, scored by the
        image's mean intensity (0..1) and with class 0, so tests can tell images apart."""

        def fn(batch: NDArray[np.float32]) -> RawOutput:
            b, _, h, w = batch.shape
            out = np.zeros((b, 2, 6), np.float32)
            out[:, 0, :4] = (0, 0, w, h)
            out[:, 0, 4] = batch.reshape(b, -1).mean(1)
            return [out]

        return cls(fn, **kwargs)

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        """Return the fixed outputs for ``batch``."""
        self.batch_sizes.append(len(batch))
        if self.interrupt_on_call is not None and len(self.batch_sizes) == self.interrupt_on_call:
            os.kill(os.getpid(), signal.SIGINT)
        if self.delay:
            time.sleep(self.delay)
        if callable(self._outputs):
            return self._outputs(batch)
        return [np.repeat(np.asarray(o), len(batch), axis=0) for o in self._outputs]

    def close(self) -> None:
        """Mark the backend closed."""
        self.closed = True


def fake_model(backend: FakeBackend, *, classes: Sequence[str] = ("thing", "other"),
               layout: str = "end2end", conf: float = 0.0, **meta: Any) -> Model:
    """A :class:`Model` around ``backend`` with metadata fitting its input spec."""
    spec = backend.input_spec
    m = ModelMeta.model_validate({"classes": list(classes), "layout": layout,
                                  "imgsz": (spec.height or 64, spec.width or 64), **meta})
    return Model(backend, m, conf=conf)


def solid_image(height: int, width: int, value: int) -> NDArray[np.uint8]:
    """An RGB image of one grey level."""
    return np.full((height, width, 3), value, np.uint8)


def random_image(height: int, width: int, *, seed: int = 0,
                 shapes: int = 6) -> NDArray[np.uint8]:
    """An RGB image with a noisy background and a few solid rectangles."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8) // 4 + 96
    for _ in range(shapes):
        x1, x2 = sorted(rng.integers(0, width, 2))
        y1, y2 = sorted(rng.integers(0, height, 2))
        img[y1:y2 + 1, x1:x2 + 1] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def write_image(path: str | Path, image: NDArray[np.uint8]) -> Path:
    """Write an RGB image (format from the suffix); returns the path."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"cv2 could not write {path}")
    return path


def write_video(path: str | Path, frames: Sequence[NDArray[np.uint8]], *,
                fps: float = 10.0) -> Path:
    """Write RGB frames as an MJPG ``.avi`` (or mp4v ``.mp4``) video; returns the path."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter.fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cv2 cannot write video {path}")
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[..., ::-1]))
    finally:
        writer.release()
    return path


def tiny_onnx_model(path: str | Path, *, classes: Sequence[str] = ("cat", "dog"),
                    imgsz: tuple[int, int] = (64, 64), layout: str = "raw",
                    dynamic_batch: bool = True) -> Path:
    """Write a tiny ONNX detector (no weights to train, no torch) with detforge metadata.

    Output, ``raw`` layout ``[B, 4+K, 3]``: three fixed boxes (cx, cy, w, h in input pixels)
    whose class scores are fixed weights times the image's mean intensity (0..1), so
    results depend on the input and every runtime path can be exercised.

    Args:
        path: Output ``.onnx`` file.
        classes: Class names (K).
        imgsz: Input ``(height, width)``.
        layout: Only ``"raw"`` is built.
        dynamic_batch: A symbolic batch dimension (else fixed at 1).

    Returns:
        ``path``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from detforge.runtime.metadata import ModelMeta, embed_meta

    if layout != "raw":
        raise ValueError(f"tiny_onnx_model builds the 'raw' layout only, not {layout!r}")
    h, w = imgsz
    k = len(classes)
    boxes = np.array([[w * 0.3, w * 0.6, w * 0.5], [h * 0.3, h * 0.5, h * 0.7],
                      [w * 0.4, w * 0.3, w * 0.2], [h * 0.4, h * 0.5, h * 0.3]],
                     np.float32)[None]
    weights = np.linspace(0.2, 1.8, 3 * k, dtype=np.float32).reshape(1, k, 3)[:, :, ::-1]
    batch: str | int = "batch" if dynamic_batch else 1
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
         helper.make_node("Reshape", ["mean", "shape"], ["mean3"]),
         helper.make_node("Mul", ["mean3", "weights"], ["scores"]),
         helper.make_node("Mul", ["mean3", "zero"], ["zeros"]),
         helper.make_node("Add", ["zeros", "boxes"], ["bboxes"]),
         helper.make_node("Concat", ["bboxes", "scores"], ["output0"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + k, 3])],
        [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
         numpy_helper.from_array(np.ascontiguousarray(weights), "weights"),
         numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
         numpy_helper.from_array(boxes, "boxes")])
    # opset 13: what every TensorRT in detforge.export.trt_compat imports (8.2 stops there)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    embed_meta(model, ModelMeta(classes=tuple(classes), imgsz=imgsz, layout="raw",
                                dynamic_batch=dynamic_batch))
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def seeded_yolo11n(height: int, width: int) -> Any:
    """An Ultralytics ``YOLO("yolo11n.yaml")`` (80 classes) from a seeded random init, offline.

    Batch-norm statistics are recalibrated on four synthetic ``height`` x ``width`` images
    and the class biases raised, so scores spread over (0, 1) instead of all sitting near
    1e-5: parity tests then compare meaningful rankings. Needs the ``train`` extra.
    """
    import torch

    from detforge.integrations.ultralytics import import_ultralytics

    yolo = import_ultralytics().YOLO
    torch.manual_seed(0)
    model = yolo("yolo11n.yaml")
    net: Any = model.model
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # a cumulative average over the calibration pass
    images = np.stack([random_image(height, width, seed=s).transpose(2, 0, 1)
                       for s in range(4)])
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(images.astype(np.float32) / 255))
        for branch in net.model[-1].cv3:
            branch[-1].bias.add_(3.0)
    net.eval()
    return model
