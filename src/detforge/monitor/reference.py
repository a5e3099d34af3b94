"""Reference statistics: what a model sees and says on data it is known to handle.

``detforge monitor reference MODEL --data DS`` runs the model, through the same runtime as
``predict`` and ``serve``, over a dataset split (the validation split by default) and keeps,
per signal (:mod:`detforge.monitor.signals`), the decile bins with their counts (for PSI),
101 quantiles (for KS), and for ``class`` the count of each class. The file also names the
model it describes (file name, sha256, classes, input size, layout, training run) and the
thresholds it was computed at, so a reference is never applied to another model:
:meth:`Reference.check_model` refuses one whose classes differ, or whose file differs
without both coming from the same training run.

File format (JSON, ``format: detforge-reference/1``)::

    {"format": "detforge-reference/1", "created": "...",
     "model": {"file": "model.onnx", "sha256": "...", "classes": [...], "imgsz": [H, W],
               "layout": "raw", "run_id": null, "dataset_version": null},
     "conf": 0.25, "iou": 0.7, "data": {"source": "ds", "split": "val", "images": 120},
     "signals": {"score": {"count": 830, "edges": [...], "counts": [...],
                           "quantiles": [... 101 values ...], "mean": 0.61}, ...
                 "class": {"count": 830, "counts": [410, 420]}}}
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from detforge.core.artefacts.io import read_artefact
from detforge.core.atomic import atomic_write_text
from detforge.core.config import StrictModel
from detforge.core.errors import ConfigError
from detforge.monitor.drift import bin_counts, quantile_edges, quantiles
from detforge.monitor.signals import CONTINUOUS, DetectionStats, ImageStats

__all__ = ["FORMAT", "ModelIdentity", "Reference", "ReferenceBuilder", "SignalReference",
           "load_reference"]

FORMAT: Literal["detforge-reference/1"] = "detforge-reference/1"


class ModelIdentity(StrictModel):
    """Which model a reference describes."""

    file: str
    sha256: str
    classes: tuple[str, ...]
    imgsz: tuple[int, int]
    layout: str
    run_id: str | None = None
    dataset_version: str | None = None


class SignalReference(StrictModel):
    """One signal's reference distribution.

    Attributes:
        count: Values seen (images, or detections for per-detection signals).
        edges: Inner decile bin edges (continuous signals).
        counts: Reference count per bin (``len(edges) + 1``), or per class for ``class``.
        quantiles: 0 %, 1 %, ..., 100 % quantiles (continuous signals; for KS).
        mean: Mean value (continuous signals), for reports.
    """

    count: int = Field(ge=0)
    edges: tuple[float, ...] = ()
    counts: tuple[int, ...]
    quantiles: tuple[float, ...] = ()
    mean: float | None = None

    @model_validator(mode="after")
    def _shapes(self) -> SignalReference:
        if self.edges and len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"{len(self.counts)} counts for {len(self.edges)} edges; "
                             f"a signal has one count more than edges")
        if sum(self.counts) != self.count:
            raise ValueError(f"counts add up to {sum(self.counts)}, not count {self.count}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase")
        return self


class Reference(StrictModel):
    """Reference statistics of one model (see the module docstring)."""

    format: Literal["detforge-reference/1"] = FORMAT
    created: str
    model: ModelIdentity
    conf: float = Field(ge=0.0, le=1.0)
    iou: float = Field(ge=0.0, le=1.0)
    data: dict[str, Any] = Field(default_factory=dict)
    signals: dict[str, SignalReference]

    @model_validator(mode="after")
    def _complete(self) -> Reference:
        missing = [s for s in (*CONTINUOUS, "class") if s not in self.signals]
        if missing:
            raise ValueError(f"signals {missing} are missing")
        if len(self.signals["class"].counts) != len(self.model.classes):
            raise ValueError(f"class counts has {len(self.signals['class'].counts)} entries "
                             f"for {len(self.model.classes)} classes")
        return self

    def check_model(self, identity: ModelIdentity, *, conf: float | None = None,
                    where: str = "reference") -> None:
        """Refuse to monitor ``identity`` (the model being served) with this reference.

        Args:
            identity: The served model.
            conf: The server's default confidence threshold.
            where: Named in messages (the reference file).

        Raises:
            ConfigError: The classes differ; or the model file differs and the two do not
                come from the same training run; or ``conf`` is above the reference's (the
                live scores would be cut where the reference's are not).
        """
        fix = (f"build a reference for this model: `detforge monitor reference "
               f"{identity.file} --data DATASET --out ref.json`")
        mine = self.model
        if tuple(mine.classes) != tuple(identity.classes):
            raise ConfigError(f"{where}: built for classes {list(mine.classes)}, but the model "
                              f"{identity.file} has {list(identity.classes)}; {fix}")
        same_run = mine.run_id is not None and mine.run_id == identity.run_id
        if mine.sha256 != identity.sha256 and not same_run:
            raise ConfigError(f"{where}: built for {mine.file} (sha256 {mine.sha256[:12]}), "
                              f"not {identity.file} (sha256 {identity.sha256[:12]}), and no "
                              f"training run ties the two; {fix}")
        if conf is not None and conf > self.conf + 1e-9:
            raise ConfigError(f"{where}: built at --conf {self.conf:g}, and the server keeps "
                              f"only scores over {conf:g}, so the score and count signals "
                              f"would drift by construction; serve with --conf {self.conf:g} "
                              f"or build the reference with --conf {conf:g}")

    def to_json(self) -> str:
        """The JSON text."""
        return json.dumps(self.model_dump(mode="json"), indent=1)

    def write(self, path: str | Path) -> Path:
        """Write atomically; returns ``path``."""
        atomic_write_text(path, self.to_json() + "\n")
        return Path(path)


def load_reference(path: str | Path) -> Reference:
    """Read and validate a reference file.

    Raises:
        ConfigError: One line naming the file and what is wrong (missing, not JSON, not a
            reference, a malformed field).
    """
    return read_artefact(path, Reference, what="reference", fix="rebuild it with "
                         "`detforge monitor reference MODEL --data DATASET --out FILE`")


class ReferenceBuilder:
    """Collects signals image by image, then builds the :class:`Reference`.

    Args:
        identity: The model.
        conf: Confidence threshold the detections were kept at.
        iou: NMS IoU threshold.
        bins: Bins per continuous signal (deciles by default).
    """

    def __init__(self, identity: ModelIdentity, *, conf: float, iou: float,
                 bins: int = 10) -> None:
        self.identity = identity
        self.conf, self.iou, self.bins = conf, iou, bins
        self._values: dict[str, list[NDArray[np.floating]]] = {s: [] for s in CONTINUOUS}
        self._classes = np.zeros(len(identity.classes), np.int64)
        self.images = 0

    def add(self, image: ImageStats, det: DetectionStats) -> None:
        """Add one image's signals."""
        self.images += 1
        for name in ("brightness", "contrast", "sharpness", "resolution"):
            self._values[name].append(np.array([getattr(image, name)], np.float64))
        self._values["boxes_per_image"].append(np.array([det.count], np.float64))
        self._values["score"].append(det.scores)
        self._values["box_area"].append(det.box_area)
        self._values["box_aspect"].append(det.box_aspect)
        ids = det.class_ids[(det.class_ids >= 0) & (det.class_ids < len(self._classes))]
        self._classes += np.bincount(ids, minlength=len(self._classes))

    def build(self, *, data: dict[str, Any] | None = None,
              min_images: int = 1) -> Reference:
        """The reference.

        Raises:
            ConfigError: Fewer than ``min_images`` images, or no detection at all (the
                score and box signals would be empty: lower ``--conf``).
        """
        if self.images < min_images:
            raise ConfigError(f"only {self.images} images were read for the reference; at "
                              f"least {min_images} are needed (use a larger split)")
        signals: dict[str, SignalReference] = {}
        for name, parts in self._values.items():
            values = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)
            values = values[np.isfinite(values)]
            if len(values) == 0:
                raise ConfigError(f"no detection on the {self.images} reference images at "
                                  f"--conf {self.conf:g}, so {name!r} has no reference; "
                                  f"lower --conf or check the model and data")
            edges = quantile_edges(values, self.bins)
            signals[name] = SignalReference(
                count=len(values), edges=tuple(float(e) for e in edges),
                counts=tuple(int(c) for c in bin_counts(values, edges)),
                quantiles=tuple(float(q) for q in quantiles(values)),
                mean=float(values.mean()))
        signals["class"] = SignalReference(count=int(self._classes.sum()),
                                           counts=tuple(int(c) for c in self._classes))
        return Reference(created=_dt.datetime.now(_dt.timezone.utc).isoformat(
            timespec="seconds"), model=self.identity, conf=self.conf, iou=self.iou,
            data=dict(data or {}, images=self.images), signals=signals)

