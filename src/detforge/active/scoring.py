"""Run a detector over pool images and keep what selection needs: every class's score per box.

The model runs through the public runtime (:func:`detforge.runtime.load_model` and the
:class:`~detforge.runtime.Model` steps ``preprocess`` / ``infer``), with images decoded by
the runtime's own decoder in worker threads while the previous batch infers. Detections
usually keep only each box's best class; uncertainty needs them all, so the raw output is
decoded here with the runtime's NMS (:func:`detforge.runtime.postprocess.batched_nms`) and
letterbox inverse, keeping the ``[N, K]`` class scores of every surviving candidate:

* ``raw`` (YOLOv8 / YOLO11 head): candidates whose best score is above the floor, class-aware
  NMS as in :mod:`detforge.runtime.postprocess`, the K scores of each kept box;
* ``rtdetr`` with ``4 + K`` columns: every query above the floor, no NMS;
* ``deepstream`` / ``end2end`` (only the best score survives the graph): one column.

The floor is low (0.05 by default, against 0.25 for predictions) because the uncertain boxes
are exactly the faint ones. Test-time augmentation runs the mirror image too (boxes flipped
back); a second model runs on the same decoded images. An image the runtime cannot decode
is recorded and skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.active.uncertainty import (
    DEFAULT_FLOOR,
    UNCERTAINTY_METHODS,
    disagreement,
    image_uncertainty,
)
from detforge.core.boxes import cxcywh_to_xyxy
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError
from detforge.runtime import Model

__all__ = ["ImageScore", "PoolScoring", "class_index_map", "decode_candidates", "score_images"]

F32 = NDArray[np.float32]


@dataclass(frozen=True, eq=False, slots=True)
class ImageScore:
    """What the model said about one image.

    Attributes:
        detections: Candidates above the floor (best class and score), original pixels.
        class_scores: ``[N, K]`` every class's score for those candidates (one column for
            layouts that keep only the best).
        uncertainty: Image uncertainty per method (:data:`UNCERTAINTY_METHODS`).
        disagreement: Disagreement with the second model or the mirror image, or None.
        embedding: Pooled features ``[C]`` when the model exposes them, else None.
    """

    detections: Detections
    class_scores: F32
    uncertainty: dict[str, float]
    disagreement: float | None = None
    embedding: F32 | None = None


@dataclass
class PoolScoring:
    """Scores of a list of images, in input order.

    Attributes:
        scores: One :class:`ImageScore` per image, None where it was skipped.
        skipped: ``(row, reason)`` of images the runtime could not decode.
    """

    scores: list[ImageScore | None]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def class_index_map(names: Sequence[str], reference: Sequence[str]) -> NDArray[np.int32]:
    """For each class of ``names``, its index in ``reference`` (-1 when absent).

    Raises:
        ConfigError: The two class lists share no name.
    """
    index = {c: i for i, c in enumerate(reference)}
    out = np.array([index.get(c, -1) for c in names], np.int32)
    if len(out) and (out < 0).all():
        raise ConfigError(f"the second model's classes {list(names)} share none with the "
                          f"first model's {list(reference)}; compare models of one task")
    return out


def decode_candidates(model: Model, outputs: Sequence[NDArray[Any]], infos: Sequence[Any], *,
                      floor: float = DEFAULT_FLOOR, iou: float | None = None
                      ) -> list[tuple[Detections, F32]]:
    """Decode one batch of raw outputs into candidates with every class's score.

    Args:
        model: The model that produced ``outputs``.
        outputs: Its raw outputs for the batch.
        infos: The letterbox of each image (from :meth:`Model.preprocess`).
        floor: Keep candidates whose best score is above this.
        iou: NMS IoU threshold (default: the model's).

    Returns:
        Per image: the candidates (original pixels) and their ``[N, K]`` class scores.
    """
    from detforge.runtime.postprocess import batched_nms, scale_to_original

    layout, k = model.meta.layout, len(model.classes)
    out = np.asarray(outputs[0], np.float32)
    iou = model.iou if iou is None else iou
    results: list[tuple[Detections, F32]] = []
    if layout == "raw" and out.ndim == 3 and out.shape[1] == 4 + k:
        for pred, info in zip(out, infos, strict=True):
            cls_scores = pred[4:].T  # [N, K]
            best = cls_scores.max(axis=1) if k else np.zeros(len(cls_scores), np.float32)
            cand = np.flatnonzero(best > floor)
            xyxy = cxcywh_to_xyxy(pred[:4, cand].T)
            sel = batched_nms(xyxy, best[cand], cls_scores[cand].argmax(axis=1),
                              iou)[:model.max_det]
            keep = cand[sel]
            boxes = scale_to_original(xyxy[sel], info)
            scores = cls_scores[keep]
            results.append((Detections.from_arrays(boxes, best[keep], scores.argmax(axis=1)),
                            np.ascontiguousarray(scores, np.float32)))
        return results
    if layout == "rtdetr" and out.ndim == 3 and out.shape[2] == 4 + k:
        h, w = model.imgsz
        scale = np.array([w, h, w, h], np.float32)
        for pred, info in zip(out, infos, strict=True):
            cls_scores = pred[:, 4:]
            best = cls_scores.max(axis=1)
            keep = np.flatnonzero(best > floor)[:model.max_det]
            boxes = scale_to_original(cxcywh_to_xyxy(pred[keep, :4]) * scale, info)
            results.append((Detections.from_arrays(boxes, best[keep],
                                                   cls_scores[keep].argmax(axis=1)),
                            np.ascontiguousarray(cls_scores[keep], np.float32)))
        return results
    dets = model.postprocess(list(outputs), infos, conf=floor, iou=iou)
    return [(d, d.scores[:, None].astype(np.float32)) for d in dets]


def _load(path: Path) -> NDArray[np.uint8] | str:
    from detforge.runtime.sources import UnreadableError, decode_image

    try:
        return decode_image(path)
    except UnreadableError as exc:
        return str(exc)


def _flip_back(d: Detections, width: int) -> Detections:
    xyxy = d.xyxy.copy()
    xyxy[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    return Detections(xyxy, d.scores, d.class_ids)


def _run(model: Model, images: Sequence[NDArray[np.uint8]], floor: float
         ) -> tuple[list[tuple[Detections, F32]], list[NDArray[Any]]]:
    tensors, infos = zip(*(model.preprocess(im) for im in images), strict=True)
    outputs = model.infer(np.stack(tensors))
    return decode_candidates(model, outputs, infos, floor=floor), list(outputs)


def score_images(model: Model, paths: Sequence[Path], *, second: Model | None = None,
                 tta: bool = False, embedding_output: bool = False,
                 floor: float = DEFAULT_FLOOR, aggregate: str = "max", batch: int = 8,
                 workers: int = 2, progress: bool = True) -> PoolScoring:
    """Score images: candidates, uncertainty, disagreement and embedding per image.

    Args:
        model: The detector.
        paths: Image files.
        second: Another detector for disagreement (classes matched by name).
        tta: Disagreement with the horizontally mirrored image (when ``second`` is None).
        embedding_output: The model's last output is a pooled embedding
            (:func:`~detforge.active.embedding.load_with_embedding`).
        floor: Candidates whose best score is at most this are dropped.
        aggregate: How box uncertainties become an image's (``max``, ``mean``, ``sum``).
        batch: Images per inference call.
        workers: Decoding threads.
        progress: Show a progress bar.

    Returns:
        The scores, in the order of ``paths``.

    Raises:
        ConfigError: ``batch`` < 1, or the second model shares no class with the first.
        BackendError: A model failed on a batch.
    """
    from tqdm import tqdm

    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    remap = None if second is None else class_index_map(second.classes, model.classes)
    result = PoolScoring([None] * len(paths))
    chunks = [list(range(i, min(i + batch, len(paths)))) for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(paths), desc="scoring", unit="img", disable=not progress,
                 leave=False) as bar:
        ahead: list[Future[NDArray[np.uint8] | str]] = []
        if chunks:
            ahead = [pool.submit(_load, paths[i]) for i in chunks[0]]
        for c, rows in enumerate(chunks):
            loaded = [f.result() for f in ahead]
            ahead = ([pool.submit(_load, paths[i]) for i in chunks[c + 1]]
                     if c + 1 < len(chunks) else [])
            ok = [(r, im) for r, im in zip(rows, loaded, strict=True) if not isinstance(im, str)]
            result.skipped += [(r, im) for r, im in zip(rows, loaded, strict=True)
                               if isinstance(im, str)]
            if ok:
                _score_chunk(model, ok, result, second=second, remap=remap, tta=tta,
                             embedding_output=embedding_output, floor=floor,
                             aggregate=aggregate)
            bar.update(len(rows))
    return result


def _score_chunk(model: Model, ok: list[tuple[int, NDArray[np.uint8]]], result: PoolScoring, *,
                 second: Model | None, remap: NDArray[np.int32] | None, tta: bool,
                 embedding_output: bool, floor: float, aggregate: str) -> None:
    images = [im for _, im in ok]
    decoded, outputs = _run(model, images, floor)
    embeds = np.asarray(outputs[-1], np.float32) if embedding_output else None
    others: list[Detections] | None = None
    if second is not None and remap is not None:
        others = []
        for d, _ in _run(second, images, floor)[0]:
            mapped = remap[d.class_ids] if len(d) else d.class_ids
            keep = mapped >= 0
            others.append(Detections(d.xyxy[keep], d.scores[keep], mapped[keep]))
    elif tta:
        flipped = [np.ascontiguousarray(im[:, ::-1]) for im in images]
        others = [_flip_back(d, im.shape[1])
                  for (d, _), im in zip(_run(model, flipped, floor)[0], images, strict=True)]
    for j, ((row, _), (dets, cls)) in enumerate(zip(ok, decoded, strict=True)):
        unc = {m: image_uncertainty(cls, m, aggregate=aggregate, floor=floor)
               for m in UNCERTAINTY_METHODS}
        dis = None if others is None else disagreement(dets, others[j], floor=floor)
        emb = None if embeds is None else embeds[j].reshape(-1)
        result.scores[row] = ImageScore(dets, cls, unc, dis, emb)
