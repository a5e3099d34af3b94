"""What runs on the cluster's workers: decoding tasks and inference actors.

A chunk of items goes through two stages::

    decode task (CPU)   item.load / load_reduced ─▶ letterbox ─┬─▶ Pixels: uint8 [n, H, W, 3]
                                                               │   in the object store
                                                               └─▶ Outcome (errors, sizes,
                                                                   extras) ─▶ the driver
    inference actor     Pixels ─▶ Model.preprocess ─▶ Model.infer ─▶ Model.postprocess
    (GPU, or CPU)          ─▶ Detections (original pixels) ─▶ the driver

Both stages call the runtime's own functions (:func:`~detforge.runtime.preprocess.letterbox`
with the model's letterbox metadata, then :class:`~detforge.runtime.model.Model`'s
``preprocess``, ``infer`` and ``postprocess``), so a cluster run computes exactly what the
local pipeline computes. The letterboxed image travels as uint8, a quarter of the bytes of
the float input; ``Model.preprocess`` on an image already at the input size letterboxes
nothing and only normalises it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.runtime.metadata import LetterboxSpec
from detforge.runtime.preprocess import LetterboxInfo, letterbox
from detforge.runtime.sources import SourceItem, UnreadableError

__all__ = ["ClusterItem", "InferenceWorker", "InferredChunk", "ItemDecode", "ModelInfo",
           "ModelSpec", "Outcome", "Pixels", "Prepare", "RemoteDecode", "decode_chunk"]


class RemoteDecode(Protocol):
    """The part of an item that a worker decodes; it must pickle."""

    def decode(self, size: tuple[int, int], *, reduce: bool) -> tuple[
            NDArray[np.uint8], tuple[int, int], Any]:
        """The RGB image, the full ``(height, width)`` it stands for, and anything the
        driver should receive with the result (None for a plain image).

        Raises:
            UnreadableError: The input cannot be decoded; it is skipped and counted.
        """
        ...


Settle = Callable[[Any, "str | None"], None]
"""Called on the driver, in input order, with an item's extra (or its error) before its
prediction reaches the sinks."""


class ClusterItem(Protocol):
    """A source item that decodes on a worker in its own way (a library photo's analysis)."""

    def for_cluster(self) -> tuple[RemoteDecode, Settle | None]:
        """The picklable decoding, and what the driver does with its result."""
        ...


@dataclass(frozen=True, slots=True)
class ItemDecode:
    """A :class:`~detforge.runtime.sources.SourceItem` decoded as the local pipeline does."""

    item: SourceItem

    def decode(self, size: tuple[int, int], *, reduce: bool) -> tuple[
            NDArray[np.uint8], tuple[int, int], Any]:
        """``item.load_reduced(size)`` with ``reduce``, else ``item.load()``."""
        if reduce:
            image, full = self.item.load_reduced(size)
            return image, full, None
        image = self.item.load()
        return image, (image.shape[0], image.shape[1]), None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How the inference actors load the model (see :func:`~detforge.runtime.load_model`).

    Attributes:
        path: The model file, as every node sees it (absolute).
        device: ``auto``, ``cpu`` or ``cuda`` (a GPU actor sees its own GPU alone).
        imgsz: Input ``(height, width)`` for dynamic-size models.
        conf: Confidence threshold.
        iou: NMS IoU threshold.
        max_det: Most detections per image.
        batch: Batch size, or ``"auto"`` (chosen on the actor's own hardware).
        threads: ONNX Runtime threads per actor (None: the actor's share of its node's
            cores).
        share: Actors that share a node's cores (sets the default ``threads``).
        spin: ONNX Runtime threads spin while idle.
    """

    path: str
    device: str = "auto"
    imgsz: tuple[int, int] | None = None
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    batch: int | str = "auto"
    threads: int | None = None
    share: int = 1
    spin: bool = False


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What an inference actor loaded: what the decode tasks and the sinks need."""

    classes: tuple[str, ...]
    imgsz: tuple[int, int]
    letterbox: LetterboxSpec
    batch: int
    backend: str
    device: str
    node_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class Prepare:
    """Decode settings sent with every chunk.

    Attributes:
        imgsz: Input size to letterbox to; None decodes only (no model: analysis runs).
        letterbox: The model's letterbox options.
        reduce: Decode JPEGs at a reduced scale where the input allows it.
        keep_images: Send the full RGB images back too (a sink draws them).
    """

    imgsz: tuple[int, int] | None
    letterbox: LetterboxSpec | None = None
    reduce: bool = False
    keep_images: bool = False


@dataclass(slots=True)
class Pixels:
    """The images of a decoded chunk, for the inference actor (stays on the workers).

    Attributes:
        boxed: Letterboxed uint8 images of the decoded items, ``[n, H, W, 3]``.
        infos: How each was letterboxed, to map boxes back to original pixels.
    """

    boxed: NDArray[np.uint8]
    infos: list[LetterboxInfo]


@dataclass(slots=True)
class Outcome:
    """What the driver needs of a decoded chunk (small: no model input pixels).

    Attributes:
        ok: Position in the chunk of each decoded item.
        errors: Reason by position, for the items that could not be decoded.
        extras: What each item's decoder sent back, by position.
        sizes: Full ``(height, width)`` of each decoded item.
        images: Full RGB images of the decoded items, when a sink draws them.
        decode_s: Seconds spent decoding each decoded item.
        letterbox_s: Seconds spent letterboxing each decoded item.
    """

    ok: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    extras: list[Any] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    images: list[NDArray[np.uint8]] | None = None
    decode_s: list[float] = field(default_factory=list)
    letterbox_s: list[float] = field(default_factory=list)


def decode_chunk(prepare: Prepare, tasks: list[RemoteDecode]) -> tuple[Pixels | None, Outcome]:
    """Decode and letterbox a chunk (the body of the decode task, two return objects).

    Unreadable items are recorded in ``errors`` and skipped, as the local pipeline does;
    any other error fails the task.

    Returns:
        The pixels for the inference actor (None without a model) and the outcome for the
        driver.
    """
    size = prepare.imgsz or (0, 0)
    out = Outcome(extras=[None] * len(tasks), images=[] if prepare.keep_images else None)
    boxed: list[NDArray[np.uint8]] = []
    infos: list[LetterboxInfo] = []
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        try:
            image, full, extra = task.decode(size, reduce=prepare.reduce)
        except UnreadableError as exc:
            out.errors[i] = exc.reason
            continue
        t1 = time.perf_counter()
        out.extras[i] = extra
        out.ok.append(i)
        out.sizes.append((int(full[0]), int(full[1])))
        out.decode_s.append(t1 - t0)
        if out.images is not None:
            out.images.append(image)
        if prepare.imgsz is None:
            continue
        small, info = letterbox(image, prepare.imgsz, prepare.letterbox)
        if (info.orig_h, info.orig_w) != full:
            info = info.for_original(*full)
        boxed.append(small)
        infos.append(info)
        out.letterbox_s.append(time.perf_counter() - t1)
    if prepare.imgsz is None:
        return None, out
    stacked = np.stack(boxed) if boxed else np.zeros((0, *prepare.imgsz, 3), np.uint8)
    return Pixels(stacked, infos), out


@dataclass(slots=True)
class InferredChunk:
    """The output of one inference call: detections of the decoded items, in order."""

    detections: list[Detections]
    batches: int
    preprocess_s: list[float]
    infer_s: list[float]
    postprocess_s: list[float]


class InferenceWorker:
    """The body of an inference actor: one loaded model, batches of a chunk through it.

    Args:
        spec: What to load, and how.
    """

    def __init__(self, spec: ModelSpec) -> None:
        from detforge.runtime.hardware import cpu_cores
        from detforge.runtime.loader import load_model
        from detforge.runtime.pipeline import resolve_batch

        threads = spec.threads or max(1, cpu_cores() // max(1, spec.share))
        self.model = load_model(spec.path, device=spec.device, imgsz=spec.imgsz,
                                conf=spec.conf, iou=spec.iou, max_det=spec.max_det,
                                threads=threads, spin=spec.spin)
        # as the local pipeline's streams: each actor's share of the cores picks its batch
        self.batch = resolve_batch(self.model, spec.batch, streams=max(1, spec.share))
        self.model.warmup(1, self.batch)

    def info(self) -> ModelInfo:
        """What was loaded, and where."""
        import ray

        backend: Any = self.model.backend
        return ModelInfo(classes=tuple(self.model.classes), imgsz=self.model.imgsz,
                         letterbox=self.model.meta.letterbox, batch=self.batch,
                         backend=str(backend.name), device=str(backend.device),
                         node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid())

    def infer(self, chunk: Pixels) -> InferredChunk:
        """Detections for every image of ``chunk``, in batches of the actor's size."""
        model = self.model
        out = InferredChunk([], 0, [], [], [])
        boxed = chunk.boxed
        for start in range(0, len(boxed), self.batch):
            t0 = time.perf_counter()
            tensors = [model.preprocess(img)[0] for img in boxed[start:start + self.batch]]
            t1 = time.perf_counter()
            outputs = model.infer(np.stack(tensors))
            t2 = time.perf_counter()
            out.detections += model.postprocess(outputs, chunk.infos[start:start + self.batch])
            out.preprocess_s.append(t1 - t0)
            out.infer_s.append(t2 - t1)
            out.postprocess_s.append(time.perf_counter() - t2)
            out.batches += 1
        return out

    def close(self) -> None:
        """Release the model."""
        self.model.close()
