"""``benchmark``: measure, write the JSON file, check a baseline: the library side of the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detforge.bench.baseline import Comparison, compare_with_baseline
from detforge.bench.result import BenchResult, read_rows
from detforge.bench.runner import run_benchmark
from detforge.runtime.model import Model

__all__ = ["BenchReport", "benchmark"]


@dataclass(frozen=True, slots=True)
class BenchReport:
    """What :func:`benchmark` did.

    Attributes:
        result: The measured rows, skipped combinations and settings.
        json_path: Where the rows were written, or None.
        comparison: The baseline check, or None without a baseline.
    """

    result: BenchResult
    json_path: Path | None
    comparison: Comparison | None

    @property
    def regressed(self) -> bool:
        """True when the baseline check failed."""
        return self.comparison is not None and self.comparison.failed


def benchmark(models: Sequence[str | Path | Model], *, source: str | Path,
              json_out: str | Path | None = None, batches: Sequence[int] = (1,),
              imgszs: Sequence[tuple[int, int]] | None = None, data: str | Path | None = None,
              split: str | None = None, baseline: str | Path | None = None,
              tolerance: float = 0.05, device: str = "auto", conf: float = 0.25,
              iou: float = 0.7, repeats: int = 3, seconds: float = 1.0,
              workers: int | None = None, progress: bool = True,
              spin: bool = False, fast_decode: bool = False,
              streams: int | str = "auto") -> BenchReport:
    """Benchmark models side by side, write ``{"rows": [...]}`` and compare with a baseline.

    The baseline is read before anything is measured, so a bad file fails fast. The JSON
    file is written even when the check fails (CI keeps it as an artefact).

    Args:
        models: Model files, directories, stems or loaded models (see
            :func:`~detforge.bench.runner.run_benchmark`).
        source: Images (folder, list file, glob) or a video to run.
        json_out: Output JSON file, or None.
        batches: Batch sizes.
        imgszs: Input sizes ``(height, width)``; None: each model's own.
        data: Labelled dataset for mAP@[.5:.95], or None.
        split: Dataset split for mAP (None: ``val`` when present, else all images).
        baseline: A previous ``--json`` file to compare with, or None.
        tolerance: Allowed throughput drop versus the baseline, as a fraction.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        conf: Confidence threshold of the end-to-end runs.
        iou: NMS IoU threshold.
        repeats: Interleaved repetitions.
        seconds: Model-only timing per combination and repetition.
        workers: Decode threads of the pipeline.
        spin: Idle ONNX Runtime threads spin (faster on a CPU the run has to itself).
        fast_decode: End-to-end runs decode JPEGs at a reduced scale where the input allows.
        streams: Batches inferred at once (model-only and end-to-end), or ``"auto"``.
        progress: Show a progress bar.

    Returns:
        The :class:`BenchReport`.

    Raises:
        ConfigError: Bad options, source or baseline file.
        BackendError: A model cannot be loaded or run.
        DatasetError: ``data`` cannot be read.

    Example:
        >>> report = benchmark(["m.onnx"], source="photos/",  # doctest: +SKIP
        ...                    json_out="bench.json", baseline="old.json", tolerance=0.05)
        >>> report.regressed  # doctest: +SKIP
        False
    """
    if baseline is not None:
        read_rows(baseline)
    result = run_benchmark(models, source=source, batches=batches, imgszs=imgszs, data=data,
                           split=split, device=device, conf=conf, iou=iou, repeats=repeats,
                           seconds=seconds, workers=workers, progress=progress,
                           spin=spin, fast_decode=fast_decode, streams=streams)
    path = None if json_out is None else Path(json_out)
    if path is not None:
        result.write_json(path)
    comparison = (None if baseline is None else
                  compare_with_baseline(result.rows, baseline, tolerance=tolerance))
    return BenchReport(result, path, comparison)
