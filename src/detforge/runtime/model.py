"""A loaded detector: backend + metadata + pre- and post-processing."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.runtime.backend import Backend, RawOutput
from detforge.runtime.metadata import ModelMeta
from detforge.runtime.postprocess import decode_batch, to_detections
from detforge.runtime.preprocess import LetterboxInfo, letterbox, to_input

__all__ = ["Model"]


class Model:
    """A detector ready to run: images in, :class:`~detforge.core.Detections` out.

    The three steps are public so the pipeline can run them on different threads:
    :meth:`preprocess` (one image), :meth:`infer` (one batch), :meth:`postprocess` (one batch).

    Args:
        backend: The loaded network.
        meta: Classes, input size, layout, letterbox and normalisation.
        imgsz: Input ``(height, width)``; default: the metadata's. Must match a fixed-size graph.
        conf: Keep detections scoring strictly above this.
        iou: NMS IoU threshold.
        max_det: Most detections per image.

    Raises:
        ConfigError: ``imgsz`` does not fit the graph, or a threshold is out of range.

    Example:
        >>> model = load_model("model.onnx")  # doctest: +SKIP
        >>> dets = model.predict([rgb_image])[0]  # doctest: +SKIP
    """

    def __init__(self, backend: Backend, meta: ModelMeta, *,
                 imgsz: tuple[int, int] | None = None, conf: float = 0.25, iou: float = 0.7,
                 max_det: int = 300) -> None:
        spec = backend.input_spec
        graph_hw = None if spec.height is None or spec.width is None else (spec.height,
                                                                            spec.width)
        size: tuple[int, int] = imgsz or graph_hw or meta.imgsz
        if imgsz is not None and graph_hw is not None and tuple(imgsz) != graph_hw:
            raise ConfigError(f"imgsz {imgsz[0]},{imgsz[1]} does not fit the model, whose input "
                              f"is fixed at {spec.height},{spec.width}; drop --imgsz or "
                              f"re-export with a dynamic input size")
        if size[0] % meta.stride or size[1] % meta.stride:
            up = (_round_up(size[0], meta.stride), _round_up(size[1], meta.stride))
            raise ConfigError(f"imgsz {size[0]},{size[1]} is not a multiple of the model "
                              f"stride {meta.stride}; round it, e.g. {up[0]},{up[1]}")
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ConfigError(f"conf ({conf}) and iou ({iou}) must lie in [0, 1]")
        if max_det < 1:
            raise ConfigError(f"max_det must be at least 1, got {max_det}")
        self.backend = backend
        self.meta = meta
        self.imgsz: tuple[int, int] = (int(size[0]), int(size[1]))
        self.conf, self.iou, self.max_det = conf, iou, max_det

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, indexed by class id."""
        return self.meta.classes

    def preprocess(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.float32], LetterboxInfo]:
        """Letterbox and normalise one RGB ``[H, W, 3]`` uint8 image into ``[3, H, W]``."""
        boxed, info = letterbox(image, self.imgsz, self.meta.letterbox)
        return to_input(boxed, self.meta.normalize, bgr_to_rgb=self.meta.color == "BGR"), info

    def infer(self, batch: NDArray[np.float32], *,
              backend: Backend | None = None) -> RawOutput:
        """Run the backend on ``[B, 3, H, W]``, splitting or padding to its batch limits.

        Args:
            batch: The normalised batch.
            backend: Run it on this backend instead of the model's own (one of its
                :meth:`~detforge.runtime.backend.BackendBase.concurrent` streams).
        """
        runner = backend or self.backend
        spec = runner.input_spec
        n = len(batch)
        fixed = spec.fixed_batch
        step = fixed or spec.max_batch or n
        if n <= step and (fixed is None or n == fixed):
            return runner.infer(batch)
        parts: list[RawOutput] = []
        for start in range(0, n, step):
            chunk = batch[start:start + step]
            if fixed is not None and len(chunk) < fixed:
                pad = np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)
                outs = runner.infer(np.concatenate([chunk, pad]))
                outs = [o[:len(chunk)] for o in outs]
            else:
                outs = runner.infer(chunk)
            parts.append(outs)
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    def postprocess(self, outputs: RawOutput, infos: Sequence[LetterboxInfo], *,
                    conf: float | None = None, iou: float | None = None,
                    max_det: int | None = None) -> list[Detections]:
        """Decode a batch's outputs into detections in original-image pixels."""
        decoded = decode_batch(outputs, layout=self.meta.layout,
                               num_classes=len(self.meta.classes), input_hw=self.imgsz,
                               conf=self.conf if conf is None else conf,
                               iou=self.iou if iou is None else iou,
                               max_det=self.max_det if max_det is None else max_det)
        return [to_detections(d, info) for d, info in zip(decoded, infos, strict=True)]

    def predict(self, images: Sequence[NDArray[np.uint8]], *, conf: float | None = None,
                iou: float | None = None, max_det: int | None = None) -> list[Detections]:
        """Detect objects in RGB images.

        Args:
            images: RGB ``[H, W, 3]`` uint8 images of any sizes.
            conf: Override the confidence threshold.
            iou: Override the NMS IoU threshold.
            max_det: Override the most detections per image.

        Returns:
            One :class:`~detforge.core.Detections` per image, in its own pixel coordinates.

        Raises:
            ConfigError: An image is not ``[H, W, 3]`` uint8.
        """
        if not images:
            return []
        tensors, infos = [], []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ConfigError(f"image {i} has shape {img.shape} and dtype {img.dtype}; "
                                  f"pass RGB [H, W, 3] uint8 arrays")
            t, info = self.preprocess(img)
            tensors.append(t)
            infos.append(info)
        outputs = self.infer(np.stack(tensors))
        return self.postprocess(outputs, infos, conf=conf, iou=iou, max_det=max_det)

    def warmup(self, runs: int = 1, batch: int = 1, *, backend: Backend | None = None) -> None:
        """Run ``runs`` dummy batches so lazy allocations happen before timing (on
        ``backend`` instead of the model's own when given)."""
        dummy = np.zeros((batch, 3, *self.imgsz), np.float32)
        for _ in range(runs):
            self.infer(dummy, backend=backend)

    def statistics(self) -> dict[str, Any]:
        """Backend, device, input size, layout and precision; on a GPU also its memory in use
        and utilisation now (NVML, :mod:`detforge.runtime.gpu`; absent without one)."""
        from detforge.runtime.gpu import gpu_index, gpu_sample

        b: Any = self.backend
        out: dict[str, Any] = {"backend": b.name, "device": b.device, "imgsz": list(self.imgsz),
                               "classes": len(self.classes), "layout": self.meta.layout,
                               "precision": self.meta.precision}
        index = gpu_index(str(b.device))
        sample = gpu_sample(index) if index is not None else None
        if sample is not None:
            out["gpu"] = {"index": sample.index, "name": sample.name,
                          "vram_used_mb": round(sample.used_bytes / 2**20, 1),
                          "vram_total_mb": round(sample.total_bytes / 2**20, 1),
                          "utilization": sample.utilization}
        return out

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        b: Any = self.backend
        return (f"Model(backend={b.name!r}, device={b.device!r}, imgsz={self.imgsz}, "
                f"layout={self.meta.layout!r}, classes={len(self.meta.classes)})")


def _round_up(value: int, stride: int) -> int:
    return -(-value // stride) * stride
