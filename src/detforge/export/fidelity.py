"""Fidelity at every hop (.pt -> ONNX -> INT8 -> engine): mAP before/after, box agreement.

Each hop appends one record to ``fidelity.json`` beside the new model and re-renders
``fidelity.html``, so the accuracy lost along the chain is measured, not guessed.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.boxes import box_iou
from detforge.core.detections import Detections
from detforge.data.dataset import Dataset

__all__ = ["LOW_CONF", "LOW_TOP", "Hop", "append_hop", "box_agreement", "box_matches",
           "measure_hop"]

LOW_CONF = 0.001
"""Score threshold of the low-threshold box comparison (the evaluation's own)."""
LOW_TOP = 100
"""Boxes per image of the low-threshold comparison: the best ``LOW_TOP`` by score."""


@dataclass(frozen=True)
class Hop:
    """One conversion and what it cost."""

    kind: str
    source: str
    target: str
    images: int
    map50_95_before: float
    map50_95_after: float
    map50_before: float
    map50_after: float
    box_agreement: float
    max_abs_diff: float | None = None
    at: str = ""
    low_agreement: float | None = None
    """Box agreement over each image's best :data:`LOW_TOP` boxes scoring >= :data:`LOW_CONF`
    (None: not measured)."""
    low_boxes: int | None = None
    """Reference boxes in that comparison (0: neither model detects anything)."""

    @property
    def map_drop_pts(self) -> float:
        """mAP50-95 lost, in points (percent)."""
        return 100 * (self.map50_95_before - self.map50_95_after)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"map_drop_pts": self.map_drop_pts}


def box_agreement(reference: Sequence[Detections], other: Sequence[Detections], *,
                  iou: float = 0.9, conf: float = 0.25) -> float:
    """Share of reference boxes (score >= conf) matched one-to-one by a box of the same class
    at IoU >= ``iou`` in ``other``. 1.0 when the reference has no box."""
    matched, total = box_matches(reference, other, iou=iou, conf=conf)
    return 1.0 if total == 0 else matched / total


def box_matches(reference: Sequence[Detections], other: Sequence[Detections], *,
                iou: float = 0.9, conf: float = 0.25, top: int | None = None,
                ) -> tuple[int, int]:
    """(matched, total): reference boxes scoring >= ``conf`` (the best ``top`` per image
    when given, in both lists) matched one-to-one by a box of the same class at IoU >=
    ``iou``, by decreasing reference score."""
    matched = total = 0
    for ref, new in zip(reference, other, strict=True):
        ref = ref[ref.scores >= conf]
        new = new[new.scores >= conf]
        if top is not None:
            ref = ref[np.argsort(-ref.scores, kind="stable")[:top]]
            new = new[np.argsort(-new.scores, kind="stable")[:top]]
        total += len(ref)
        if not len(ref) or not len(new):
            continue
        m = box_iou(ref.xyxy, new.xyxy)
        m[ref.class_ids[:, None] != new.class_ids[None, :]] = 0
        for i in np.argsort(-ref.scores):
            j = int(np.argmax(m[i]))
            if m[i, j] >= iou:
                matched += 1
                m[:, j] = 0
    return matched, total


def measure_hop(kind: str, source: Path, target: Path, dataset: Dataset, *,
                split: str | None = "val", max_images: int = 200,
                imgsz: tuple[int, int] | None = None,
                max_abs_diff: float | None = None) -> Hop:
    """Run both models on up to ``max_images`` images of ``split`` and compare them."""
    from detforge.evaluate.coco import dataset_to_coco, detections_to_coco
    from detforge.evaluate.metrics import evaluate_coco
    from detforge.evaluate.model import predict_split
    from detforge.runtime import load_model

    rows = np.flatnonzero(dataset.images.split == split) if split else \
        np.arange(dataset.num_images)
    if len(rows) == 0:
        rows = np.arange(dataset.num_images)
    subset = dataset.subset(rows[np.linspace(0, len(rows) - 1, min(max_images, len(rows)),
                                             dtype=int)])
    subset = subset.with_split(["eval"] * subset.num_images)
    gt = dataset_to_coco(subset, split="eval")
    image_rows = gt.image_rows.tolist()
    scores = []
    preds = []
    for path in (source, target):
        model = load_model(path, device="cpu", imgsz=imgsz, conf=0.001, iou=0.7)
        try:
            p = predict_split(model, subset, image_rows, conf=0.001, iou=0.7, batch=8)
        finally:
            model.close()
        preds.append([p[r] for r in image_rows])
        stats = evaluate_coco(gt.coco, detections_to_coco(p, gt)).stats
        scores.append((float(stats[0]), float(stats[1])))
    low_matched, low_total = box_matches(preds[0], preds[1], conf=LOW_CONF, top=LOW_TOP)
    return Hop(kind, str(source), str(target), len(image_rows), scores[0][0], scores[1][0],
               scores[0][1], scores[1][1], box_agreement(preds[0], preds[1]), max_abs_diff,
               _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               low_matched / low_total if low_total else None, low_total)


def append_hop(model_path: Path, hop: Hop) -> Path:
    """Add ``hop`` to ``fidelity.json`` beside ``model_path`` (keeping earlier hops, also the
    ones recorded beside the source model) and rewrite ``fidelity.html``."""
    folder = model_path.parent
    record = folder / "fidelity.json"
    hops: list[dict[str, Any]] = []
    for candidate in (Path(hop.source).parent / "fidelity.json", record):
        if candidate.is_file():
            for h in json.loads(candidate.read_text(encoding="utf-8")).get("hops", []):
                if h not in hops:
                    hops.append(h)
    hops = [h for h in hops if (h["source"], h["target"]) != (hop.source, hop.target)]
    hops.append(hop.to_dict())
    atomic_write_json(record, {"hops": hops})
    atomic_write_text(folder / "fidelity.html", _html(hops))
    return record


def _html(hops: list[dict[str, Any]]) -> str:
    from detforge.evaluate.fidelity_page import render_fidelity_page

    return render_fidelity_page(hops)
