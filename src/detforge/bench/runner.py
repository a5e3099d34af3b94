"""Measure models side by side: models x input sizes x batch sizes -> :class:`BenchRow`.

Every model is loaded once and every combination is warmed up before timing starts. Then
the repetitions are interleaved: repetition ``r`` runs each combination once (model-only
for ``seconds``, then one end-to-end pass over the source), starting one further along the
list each time, so a burst of load from elsewhere on a shared machine hits every row alike.
Figures are totals over the repetitions (images / seconds).

- model-only: ``Model.infer`` on one preprocessed ``[B, 3, H, W]`` batch built from the
  source's first images, from as many threads at once as the pipeline has inference
  streams (on the same stream sessions), for images / wall time; latency percentiles are
  per batch.
- end-to-end: :func:`detforge.runtime.pipeline.run_pipeline` over the whole source (decode
  and letterbox in worker threads, batching, inference, box decoding and NMS; no sink).
- memory: peak RSS of this process while the row ran (see :class:`RssSampler`).
- accuracy: with a dataset, COCO mAP@[.5:.95] through
  :func:`detforge.evaluate.model.evaluate_model` (once per model and input size).
"""

from __future__ import annotations

import itertools
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.bench.memory import RssSampler
from detforge.bench.result import BenchResult, BenchRow
from detforge.core.errors import ConfigError
from detforge.runtime.backend import Backend
from detforge.runtime.model import Model

__all__ = ["FORMATS", "run_benchmark"]

FORMATS: dict[str, str] = {"onnxruntime": "onnx", "tensorrt": "engine", "torch": "pt"}
"""Backend name -> the ``format`` column (other backends keep their own name)."""


@dataclass
class _Combo:
    """One row being measured."""

    name: str
    model: Model
    batch: int
    tensor: NDArray[np.float32]
    streams: int = 1
    stream_backend: Backend | None = None
    infer_s: list[float] = field(default_factory=list)
    model_only_s: float = 0.0
    e2e_images: int = 0
    e2e_s: float = 0.0
    peak_bytes: int = 0
    map50_95: float | None = None
    gpu: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        h, w = self.model.imgsz
        return f"{self.name} b{self.batch} {h}x{w}"


def _names(models: Sequence[str | Path | Model]) -> list[str]:
    names = [Path(m).name if isinstance(m, str | Path) else
             Path(getattr(m.backend, "path", f"model{i}")).name for i, m in enumerate(models)]
    if len(set(names)) == len(names):
        return names
    return [str(m) if isinstance(m, str | Path) else f"{n}#{i}"
            for i, (n, m) in enumerate(zip(names, models, strict=True))]


def _first_images(source: str | Path, count: int) -> tuple[list[NDArray[np.uint8]], int | None]:
    """The first ``count`` readable images of ``source`` (cycled when it has fewer)."""
    from detforge.runtime.sources import UnreadableError, open_source

    src = open_source(source)
    if any(kind == "stream" for kind, _ in src.entries):
        raise ConfigError(f"source {source}: a camera or stream never ends; benchmark a "
                          f"folder, list file or video file")
    images: list[NDArray[np.uint8]] = []
    for item in src:
        try:
            images.append(item.load())
        except UnreadableError:
            continue
        if len(images) == count:
            break
    if not images:
        raise ConfigError(f"source {source}: no readable image or frame in it; check the "
                          f"files with `detforge data validate`")
    return [images[i % len(images)] for i in range(count)], src.estimate_total()


def _combos(names: list[str], loaded: list[Model], batches: Sequence[int],
            imgszs: Sequence[tuple[int, int]] | None, images: list[NDArray[np.uint8]],
            skipped: list[str]) -> list[_Combo]:
    combos = []
    for name, base in zip(names, loaded, strict=True):
        spec = base.backend.input_spec
        for size in imgszs or [base.imgsz]:
            graph_hw = (spec.height, spec.width)
            if None not in graph_hw and graph_hw != size:
                skipped.append(f"{name} {size[0]}x{size[1]}: the model's input is fixed at "
                               f"{spec.height}x{spec.width}; re-export it at this size or "
                               f"with a dynamic input")
                continue
            model = Model(base.backend, base.meta, imgsz=size, conf=base.conf, iou=base.iou,
                          max_det=base.max_det)
            for batch in batches:
                if spec.fixed_batch is not None and batch != spec.fixed_batch:
                    skipped.append(f"{name} batch {batch}: the model's batch is fixed at "
                                   f"{spec.fixed_batch}; re-export it with a dynamic batch")
                    continue
                tensor = np.stack([model.preprocess(im)[0] for im in images[:batch]])
                combos.append(_Combo(name, model, batch, tensor))
    return combos


def _model_only(combo: _Combo, seconds: float) -> None:
    """Run the batch from ``combo.streams`` threads for ``seconds`` (at least 3 calls each)."""

    def loop(times: list[float]) -> None:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            combo.model.infer(combo.tensor, backend=combo.stream_backend)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if t1 - start >= seconds and len(times) >= 3:
                return

    per_thread: list[list[float]] = [[] for _ in range(combo.streams)]
    start = time.perf_counter()
    if combo.streams == 1:
        loop(per_thread[0])
    else:
        with ThreadPoolExecutor(combo.streams) as pool:
            for f in [pool.submit(loop, t) for t in per_thread]:
                f.result()
    combo.model_only_s += time.perf_counter() - start
    combo.infer_s.extend(itertools.chain.from_iterable(per_thread))


def _measure(combo: _Combo, source: str | Path, seconds: float,
             pipeline: dict[str, Any]) -> None:
    from detforge.runtime.gpu import GpuMonitor
    from detforge.runtime.pipeline import run_pipeline
    from detforge.runtime.sources import open_source

    with RssSampler() as rss, GpuMonitor(str(combo.model.backend.device)) as gpu:
        _model_only(combo, seconds)
        stats = run_pipeline(combo.model, open_source(source), [], batch=combo.batch,
                             streams=combo.streams, progress=False, warmup=False, **pipeline)
    combo.gpu = gpu.summary() or combo.gpu
    if stats.images == 0:
        raise ConfigError(f"source {source}: the pipeline read no image "
                          f"({stats.skipped} skipped); check it with `detforge data validate`")
    combo.e2e_images += stats.images
    combo.e2e_s += stats.wall_s
    combo.peak_bytes = max(combo.peak_bytes, rss.peak_bytes)


def _row(combo: _Combo) -> BenchRow:
    model = combo.model
    times = np.asarray(combo.infer_s)
    p50, p95, p99 = (float(v) for v in np.percentile(times * 1000, [50, 95, 99]))
    backend_name = str(getattr(model.backend, "name", "unknown"))
    return BenchRow(model=combo.name, format=FORMATS.get(backend_name, backend_name),
                    precision=model.meta.precision, batch=combo.batch, imgsz=model.imgsz,
                    model_only_ips=combo.batch * len(times) / combo.model_only_s,
                    end_to_end_ips=combo.e2e_images / combo.e2e_s if combo.e2e_s else 0.0,
                    p50_ms=p50, p95_ms=p95, p99_ms=p99, peak_rss_mb=combo.peak_bytes / 2**20,
                    map50_95=combo.map50_95, streams=combo.streams,
                    gpu_peak_mb=combo.gpu.get("vram_peak_mb"),
                    gpu_util=combo.gpu.get("util_mean"))


def _accuracy(combos: list[_Combo], data: str | Path, split: str | None,
              batch: int) -> None:
    from detforge.data.formats import read_dataset
    from detforge.evaluate.model import evaluate_model

    dataset = read_dataset(data)
    if split is None:
        split = "val" if "val" in dataset.split_names() else None
    done: dict[tuple[str, tuple[int, int]], float] = {}
    for c in combos:
        key = (c.name, c.model.imgsz)
        if key not in done:
            result = evaluate_model(c.model, dataset, split=split, iou=c.model.iou, batch=batch)
            done[key] = float(result.stats[0])
        c.map50_95 = done[key]


def run_benchmark(models: Sequence[str | Path | Model], *, source: str | Path,
                  batches: Sequence[int] = (1,),
                  imgszs: Sequence[tuple[int, int]] | None = None,
                  data: str | Path | None = None, split: str | None = None,
                  device: str = "auto", conf: float = 0.25, iou: float = 0.7,
                  repeats: int = 3, seconds: float = 1.0, workers: int | None = None,
                  progress: bool = True, spin: bool = False,
                  fast_decode: bool = False, streams: int | str = "auto") -> BenchResult:
    """Benchmark models side by side on one source.

    Args:
        models: Model files, directories or stems for :func:`~detforge.runtime.load_model`,
            or loaded :class:`~detforge.runtime.Model` objects (left open).
        source: Folder, list file, glob or video of images to run (end-to-end); its first
            images also make the model-only batches.
        batches: Batch sizes.
        imgszs: Input ``(height, width)`` sizes; None: each model's own size. A size that a
            fixed-size model cannot take is skipped and reported.
        data: A labelled dataset for mAP, or None.
        split: Dataset split for mAP (None: ``val`` when present, else every image).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        conf: Confidence threshold of the end-to-end runs.
        iou: NMS IoU threshold.
        repeats: Interleaved repetitions of every combination.
        seconds: Model-only timing per combination and repetition.
        workers: Decode threads of the pipeline (default: its own).
        progress: Show a progress bar.
        spin: Idle ONNX Runtime threads spin: faster on a CPU the run has to itself.
        fast_decode: The end-to-end runs decode JPEGs at a reduced scale when the input
            allows it (``detforge predict --fast-decode``).
        streams: Inference streams of both the model-only and the end-to-end runs, or
            ``"auto"`` (the pipeline's choice; see
            :func:`~detforge.runtime.pipeline.resolve_streams`).

    Returns:
        The rows, what was skipped and the settings.

    Raises:
        ConfigError: No model, a bad option, an empty or endless source, or nothing left to
            measure once the impossible combinations are skipped.
        BackendError: A model cannot be loaded or run.
        DatasetError: ``data`` cannot be read.

    Example:
        >>> result = run_benchmark(["a.onnx", "b.onnx"], source="photos/",  # doctest: +SKIP
        ...                        batches=(1, 8))
    """
    from detforge.runtime.pipeline import resolve_streams

    if not models:
        raise ConfigError("give at least one model to benchmark")
    if not batches or min(batches) < 1:
        raise ConfigError(f"batch sizes must be positive integers, got {list(batches)}")
    if repeats < 1 or not seconds > 0:
        raise ConfigError(f"repeats ({repeats}) must be at least 1 and seconds ({seconds}) "
                          f"above 0")
    images, total = _first_images(source, max(batches))
    names = _names(models)
    loaded: list[Model] = []
    owned: list[Model] = []
    try:
        for m in models:
            if isinstance(m, Model):
                loaded.append(m)
                continue
            from detforge.runtime.loader import load_model

            owned.append(load_model(m, device=device, conf=conf, iou=iou, spin=spin))
            loaded.append(owned[-1])
        result = BenchResult(settings={**_settings(source, total, repeats, seconds, device, conf),
                                       "spin": spin, "fast_decode": fast_decode,
                                       "streams": streams})
        combos = _combos(names, loaded, batches, imgszs, images, result.skipped)
        if not combos:
            raise ConfigError("nothing to measure: " + "; ".join(result.skipped))
        for c in combos:
            c.streams, c.stream_backend = resolve_streams(c.model, streams)
        _run(combos, source, repeats, seconds, progress,
             {"workers": workers, "fast_decode": fast_decode})
        if data is not None:
            _accuracy(combos, data, split, max(batches))
        result.rows = [_row(c) for c in combos]
        return result
    finally:
        for m in owned:
            m.close()


def _run(combos: list[_Combo], source: str | Path, repeats: int, seconds: float,
         progress: bool, pipeline: dict[str, Any]) -> None:
    from tqdm import tqdm

    for c in combos:  # warm-up: lazy allocations, thread pools, kernel choice
        for _ in range(2):
            c.model.infer(c.tensor, backend=c.stream_backend)
    with tqdm(total=repeats * len(combos), desc="benchmark", unit="run",
              disable=not progress, dynamic_ncols=True) as bar:
        for rep in range(repeats):
            shift = rep % len(combos)
            for combo in itertools.chain(combos[shift:], combos[:shift]):
                bar.set_postfix_str(combo.label, refresh=False)
                _measure(combo, source, seconds, pipeline)
                bar.update(1)


def _settings(source: str | Path, total: int | None, repeats: int, seconds: float,
              device: str, conf: float) -> dict[str, Any]:
    from detforge.runtime.hardware import cpu_cores

    return {"source": str(source), "source_images": total, "repeats": repeats,
            "model_only_seconds": seconds, "device": device, "conf": conf,
            "latency": "model-only, per batch", "cpu_cores": cpu_cores(),
            "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "python": platform.python_version()}
