"""Benchmark rows and results, and their JSON form ``{"rows": [...]}``.

One :class:`BenchRow` per (model, batch, input size). The JSON keys of a row are fixed (the
CLI's interface, used by scripts and CI baselines): ``model``, ``format``, ``precision``,
``batch``, ``imgsz`` (an int when square, else ``[height, width]``), ``model_only_ips``,
``end_to_end_ips``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``peak_rss_mb`` and ``map50_95``
(null without ``--data``); then ``streams``, the batches inferred at once (rows written
before it existed read as 1), and ``gpu_peak_mb`` / ``gpu_util`` (peak GPU memory in use and
mean utilisation through NVML; null on a CPU).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detforge.bench.options import format_imgsz
from detforge.core.atomic import atomic_write_json
from detforge.core.errors import ConfigError

__all__ = ["ROW_KEYS", "BenchResult", "BenchRow", "RowKey", "read_rows"]

ROW_KEYS = ("model", "format", "precision", "batch", "imgsz", "model_only_ips",
            "end_to_end_ips", "p50_ms", "p95_ms", "p99_ms", "peak_rss_mb", "map50_95")
"""The keys of every row, in the order they are written."""

RowKey = tuple[str, str, str, int, tuple[int, int]]
"""What identifies a row across runs: model name, format, precision, batch, (H, W)."""


@dataclass(frozen=True, slots=True)
class BenchRow:
    """The figures of one model at one batch size and input size.

    Attributes:
        model: The model's name (its file name, or the path where names repeat).
        format: ``onnx``, ``engine``, ``pt`` (or the backend name for others).
        precision: ``fp32``, ``fp16`` or ``int8``, from the model's metadata.
        batch: Images per inference call.
        imgsz: Input ``(height, width)``.
        model_only_ips: Images/s of the backend alone on preprocessed batches, after warm-up.
        end_to_end_ips: Images/s of the full pipeline (decode, letterbox, infer, decode
            boxes + NMS) over the source.
        p50_ms: Median model-only latency of one batch, in milliseconds.
        p95_ms: 95th percentile of the same.
        p99_ms: 99th percentile of the same.
        peak_rss_mb: Peak resident memory of the benchmark process while this row ran, MiB.
        map50_95: COCO mAP@[.5:.95] on ``--data``, or None.
        streams: Batches inferred at once, in both the model-only and end-to-end runs.
        gpu_peak_mb: Peak GPU memory in use while the row ran (NVML), or None on a CPU.
        gpu_util: Mean GPU utilisation (0..1) while the row ran, or None.
    """

    model: str
    format: str
    precision: str
    batch: int
    imgsz: tuple[int, int]
    model_only_ips: float
    end_to_end_ips: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_rss_mb: float
    map50_95: float | None = None
    streams: int = 1
    gpu_peak_mb: float | None = None
    gpu_util: float | None = None

    @property
    def key(self) -> RowKey:
        """The identity used to match a baseline row."""
        return (self.model, self.format, self.precision, self.batch, self.imgsz)

    def to_dict(self) -> dict[str, Any]:
        """The JSON row, keys in :data:`ROW_KEYS` order, figures rounded."""
        return {"model": self.model, "format": self.format, "precision": self.precision,
                "batch": self.batch, "imgsz": format_imgsz(self.imgsz),
                "model_only_ips": round(self.model_only_ips, 2),
                "end_to_end_ips": round(self.end_to_end_ips, 2),
                "p50_ms": round(self.p50_ms, 3), "p95_ms": round(self.p95_ms, 3),
                "p99_ms": round(self.p99_ms, 3), "peak_rss_mb": round(self.peak_rss_mb, 1),
                "map50_95": None if self.map50_95 is None else round(self.map50_95, 5),
                "streams": self.streams, "gpu_peak_mb": self.gpu_peak_mb,
                "gpu_util": self.gpu_util}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], *, where: str = "row") -> BenchRow:
        """Read a JSON row back.

        Args:
            row: A mapping with every key of :data:`ROW_KEYS`.
            where: Where it came from, for error messages (``"old.json row 3"``).

        Raises:
            ConfigError: A key is missing or a value has the wrong type.
        """
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ConfigError(f"{where}: missing keys {missing}; a benchmark row has "
                              f"{list(ROW_KEYS)} (write it with `detforge benchmark --json`)")
        try:
            imgsz = row["imgsz"]
            size = (int(imgsz), int(imgsz)) if isinstance(imgsz, int | float) else (
                int(imgsz[0]), int(imgsz[1]))
            map_ = row["map50_95"]
            return cls(str(row["model"]), str(row["format"]), str(row["precision"]),
                       int(row["batch"]), size, _num(row["model_only_ips"]),
                       _num(row["end_to_end_ips"]), _num(row["p50_ms"]), _num(row["p95_ms"]),
                       _num(row["p99_ms"]), _num(row["peak_rss_mb"]),
                       None if map_ is None else _num(map_), int(row.get("streams", 1)),
                       _opt(row.get("gpu_peak_mb")), _opt(row.get("gpu_util")))
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise ConfigError(f"{where}: bad value ({exc}); numbers are expected for the "
                              f"figures and an int or [height, width] for imgsz") from exc


def _opt(value: Any) -> float | None:
    return None if value is None else _num(value)


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


@dataclass
class BenchResult:
    """The rows of one benchmark run, plus what was skipped and the run's settings.

    Attributes:
        rows: One row per measured (model, batch, input size).
        skipped: ``"model batch imgsz: reason"`` for combinations that cannot run (a fixed
            input size or batch that differs from the one asked for).
        settings: Source, repeats, seconds and the machine, for the JSON file.
    """

    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"rows": [...], "skipped": [...], "settings": {...}}``."""
        return {"rows": [r.to_dict() for r in self.rows], "skipped": list(self.skipped),
                "settings": dict(self.settings)}

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically (NaN figures become null)."""
        atomic_write_json(path, _finite(self.to_json()))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def read_rows(path: str | Path) -> list[BenchRow]:
    """Read the rows of a benchmark JSON file (e.g. a saved baseline).

    Args:
        path: A file written by ``detforge benchmark --json``.

    Returns:
        Its rows.

    Raises:
        ConfigError: The file is missing, not JSON, has no ``rows`` list, or a row is bad.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: baseline file not found; write one with "
                          f"`detforge benchmark ... --json {path}`") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the baseline ({exc.strerror})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column "
                          f"{exc.colno}); regenerate it with `detforge benchmark --json`") from exc
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: no \"rows\" list at the top level; a benchmark file looks "
                          f"like {{\"rows\": [{{\"model\": ..., ...}}]}}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"{path} row {i}: expected an object, got {type(row).__name__}")
        out.append(BenchRow.from_dict(row, where=f"{path} row {i}"))
    return out
