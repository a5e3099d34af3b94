"""``detforge monitor report``: drift of a ``predict`` JSON Lines file against a reference.

The JSON Lines records hold each image's size and detections, so every detection signal
and ``resolution`` are measured; the image-quality signals (brightness, contrast,
sharpness) need the pixels and are reported as not measured. Records of another class list
are refused, as a server refuses a reference of another model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError, DatasetError
from detforge.monitor.reference import Reference
from detforge.monitor.signals import IMAGE_SIGNALS, ImageStats, detection_stats
from detforge.monitor.window import DriftResult, DriftWindow, Thresholds

__all__ = ["drift_from_jsonl", "format_result", "result_to_dict"]


def drift_from_jsonl(reference: Reference, jsonl: str | Path, *, window: int | None = None,
                     min_images: int = 30, thresholds: Thresholds | None = None
                     ) -> DriftResult:
    """Measure drift over the records of a ``detforge predict`` JSON Lines file.

    Args:
        reference: The reference.
        jsonl: ``predict --format jsonl`` output.
        window: Use the last ``window`` records (None: all).
        min_images: Fewest records that can be judged.
        thresholds: Drift thresholds.

    Returns:
        The drift (image-quality signals NaN: the file has no pixels).

    Raises:
        DatasetError: The file is missing, a line is not a record (the line is named), or a
            class name is not among the reference's classes.
        ConfigError: Fewer records than ``min_images``.
    """
    path = Path(jsonl)
    classes = {c: i for i, c in enumerate(reference.model.classes)}
    records: list[tuple[ImageStats | None, Any]] = []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror}); pass the JSON Lines file "
                           f"`detforge predict --out dets.jsonl` wrote", path=path) from exc
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            records.append(_record(line, number, path, classes, reference.conf))
    size = window or max(1, len(records))
    records = records[-size:]
    if len(records) < min_images:
        raise ConfigError(f"{path}: {len(records)} records; at least {min_images} are needed "
                          f"to judge drift (--min-images)")
    win = DriftWindow(reference, size=size, min_images=min_images, thresholds=thresholds)
    for image, det in records:
        win.observe(image, det)
    return win.measure()


def _record(line: str, number: int, path: Path, classes: dict[str, int],
            conf: float) -> tuple[ImageStats | None, Any]:
    try:
        rec = json.loads(line)
        width, height = int(rec["width"]), int(rec["height"])
        dets = rec["detections"]
        boxes = np.array([d["xyxy"] for d in dets], np.float32).reshape(-1, 4)
        scores = np.array([float(d["score"]) for d in dets], np.float32)
        names = [str(d.get("class_name", "")) for d in dets]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"not a detforge predict record ({type(exc).__name__}: {exc}); "
                           f"write the file with `detforge predict --format jsonl`",
                           path=path, line=number) from exc
    unknown = sorted({n for n in names if n not in classes})
    if unknown:
        raise DatasetError(f"classes {unknown} are not the reference's {sorted(classes)}: the "
                           f"file comes from another model; use that model's reference",
                           path=path, line=number)
    ids = np.array([classes[n] for n in names], np.int32)
    keep = scores > conf - 1e-6  # the reference's threshold: the same cut on both sides
    det = Detections(boxes[keep], scores[keep], ids[keep])
    return _with_resolution(width, height), detection_stats(det, width, height)


def _with_resolution(width: int, height: int) -> ImageStats:
    """Image signals known from a record: the resolution only (the rest NaN)."""
    nan = math.nan
    return ImageStats(nan, nan, nan, math.log2(max(1, width * height)))


def result_to_dict(result: DriftResult) -> dict[str, Any]:
    """A JSON-ready form (NaN as null)."""

    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else round(v, 5)

    return {"images": result.images, "min_images": result.min_images, "ready": result.ready,
            "drifted": result.drifted,
            "signals": {s.signal: {"psi": num(s.psi), "ks": num(s.ks), "values": s.values,
                                   "live_mean": num(s.live_mean),
                                   "reference_mean": num(s.reference_mean),
                                   "threshold": s.threshold, "drifted": s.signal in
                                   result.drifted} for s in result.signals},
            "classes": {c: {"psi": num(result.class_psi[c]), "live_share": num(live),
                            "reference_share": num(ref)}
                        for c, (live, ref) in result.class_share.items()}}


def format_result(result: DriftResult) -> str:
    """A text table: one row per signal and per class, and the verdict."""

    def f(v: float | None, spec: str = ".3f") -> str:
        return "-" if v is None or not math.isfinite(v) else format(v, spec)

    lines = [f"{'signal':<16}{'PSI':>8}{'KS':>8}{'limit':>8}{'live mean':>11}"
             f"{'ref mean':>10}{'values':>8}  state"]
    for s in result.signals:
        if s.signal in IMAGE_SIGNALS and not s.values:
            state = "not measured (no pixels)"
        elif not result.ready:
            state = "too few images"
        else:
            state = "DRIFT" if s.signal in result.drifted else "ok"
        lines.append(f"{s.signal:<16}{f(s.psi):>8}{f(s.ks):>8}{s.threshold:>8.3f}"
                     f"{f(s.live_mean, '.4g'):>11}{f(s.reference_mean, '.4g'):>10}"
                     f"{s.values:>8}  {state}")
    lines.append(f"{'class':<16}{'PSI term':>10}{'live share':>12}{'ref share':>11}")
    for c, (live, ref) in result.class_share.items():
        lines.append(f"{c:<16}{f(result.class_psi[c]):>10}{live:>12.3f}{ref:>11.3f}")
    verdict = (f"drift in {', '.join(result.drifted)}" if result.drifted else
               "within thresholds" if result.ready else
               f"too few images ({result.images} < {result.min_images})")
    lines.append(f"{result.images} images: {verdict}")
    return "\n".join(lines)
