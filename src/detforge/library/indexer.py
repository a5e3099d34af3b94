"""``index_library``: walk a library, analyse what is new or changed, store it in SQLite.

Data flow (one decode per photo; decode and analysis overlap with inference)::

    walk ─▶ planner (stat vs the index; hash pool reads ahead) ─▶ skip / link / error
                  │ analyse
                  ▼
    runtime pipeline: decode threads run analyse_still (EXIF, decode, quality, pHash,
                  │   thumbnail, tagger input) ─▶ batched detector ─▶ ByteTrack (videos)
                  ▼
    LibrarySink (tags in batches) ─▶ Writer (one transaction per N files) ─▶ SQLite

Without a detector the same analysis runs on a thread pool. A killed run loses only the
uncommitted transaction; the next run skips every file already stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detforge.core.errors import ConfigError, MissingExtraError
from detforge.library.decode import library_max_pixels
from detforge.library.indexrun import (
    EXTRAS,
    IndexRun,
    IndexSummary,
    LibrarySink,
    StillItem,
    VideoOnlyTracker,
)
from detforge.library.plan import ALL_PHASES, Planner, ordered_map
from detforge.library.store import open_store
from detforge.library.walk import count_files, walk
from detforge.library.writer import Writer
from detforge.runtime.sources import SourceItem, UnreadableError

if TYPE_CHECKING:
    from detforge.library.taggers import Tagger
    from detforge.runtime import Model

__all__ = ["IndexSummary", "index_library", "parse_phases"]


def parse_phases(text: str | None, *, model: bool, tagger: bool) -> frozenset[str]:
    """The phases of a run: ``text`` (comma list) or the default for what is given.

    Default: ``meta,quality``, plus ``objects,video`` with a model, plus ``tags`` with a
    tagger. ``meta`` is always on.

    Raises:
        ConfigError: An unknown phase, or one whose model is missing.
    """
    if text is None:
        phases = {"meta", "quality"} | ({"objects", "video"} if model else set()) | (
            {"tags"} if tagger else set())
        return frozenset(phases)
    phases = {p.strip() for p in text.split(",") if p.strip()} | {"meta"}
    unknown = phases - set(ALL_PHASES)
    if unknown:
        raise ConfigError(f"--phases: unknown {sorted(unknown)}; choose from {list(ALL_PHASES)}")
    if phases & {"objects", "video"} and not model:
        raise ConfigError("--phases objects/video need a detector: pass --model MODEL")
    if "tags" in phases and not tagger:
        raise ConfigError("--phases tags needs a tagger: pass --tagger PATH")
    return frozenset(phases)


def index_library(root: str | Path, *, db: str | Path = "library.sqlite",
                  model: str | Path | None = None, tagger: str | None = None,
                  tags: str | Path | None = None, phases: str | None = None,
                  workers: int | None = None, batch: int | str = "auto", conf: float = 0.25,
                  device: str = "auto", imgsz: tuple[int, int] | None = None,
                  video_sampling: str = "uniform", video_every_s: float = 1.0,
                  max_video_frames: int = 300, prune: bool = False,
                  retry_errors: bool = False, commit_every: int = 64,
                  max_pixels: int | None = None, progress: bool = True,
                  ray: str | None = None) -> IndexSummary:
    """Index every photo and video under ``root`` into the SQLite database ``db``.

    Args:
        root: The library folder.
        db: The index (created when missing; upgraded when older).
        model: Detector (ONNX, engine, .pt or a folder; see
            :func:`~detforge.runtime.load_model`) for the objects and video phases.
        tagger: Scene tagger spec (see :func:`~detforge.library.taggers.load_tagger`).
        tags: Tag vocabulary file (default: the shipped list).
        phases: Comma list of ``meta,quality,objects,tags,video`` (default: all that the
            given models allow).
        workers: Decode and analysis threads (default: usable cores, at least 2).
        batch: Detector batch size, or ``"auto"``.
        conf: Detector confidence threshold.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        imgsz: Detector input ``(height, width)`` for dynamic-size models.
        video_sampling: ``uniform`` or ``scene``.
        video_every_s: Seconds between uniform samples.
        max_video_frames: Most sampled frames per video.
        prune: Delete the rows of indexed files under ``root`` that no longer exist.
        retry_errors: Analyse again unchanged files that failed before.
        commit_every: Files per transaction.
        max_pixels: Refuse images with more pixels (decompression bombs); default
            ``$DETFORGE_MAX_PIXELS``, else 250,000,000 (a library holds panoramas).
        progress: Show a progress bar with per-phase throughput.
        ray: Run the analysis and the detector on the Ray cluster at this address
            (``local``: one started for the run; see :mod:`detforge.scale`); the planner,
            the tagger and the database stay on this machine. Paths must resolve on every
            node.

    Returns:
        The :class:`IndexSummary`.

    Raises:
        ConfigError: A bad option, root or model path.
        LibraryDatabaseError: ``db`` is not a library index or is from a newer detforge.
        TaggerError: The tagger model cannot be loaded.
        MissingExtraError: Files needed a missing optional package (everything else is
            stored; install it and run again), or ``ray`` is given without Ray installed.
        ClusterError: The Ray cluster cannot be reached, or its workers failed repeatedly.

    Example:
        >>> index_library("Photos", db="p.sqlite", model="yolo11n.onnx")  # doctest: +SKIP
    """
    from tqdm import tqdm

    root = Path(root).absolute()
    if not root.exists():
        raise ConfigError(f"{root}: no such folder; pass the library folder to index")
    if video_sampling not in ("uniform", "scene"):
        raise ConfigError(f"--video-sampling {video_sampling!r}: choose uniform or scene")
    if video_every_s <= 0 or max_video_frames < 1 or commit_every < 1:
        raise ConfigError("--video-every must be positive, --max-video-frames and "
                          "--commit-every at least 1")
    phase_set = parse_phases(phases, model=model is not None, tagger=tagger is not None)
    cap = library_max_pixels(max_pixels)
    db_path = Path(db).absolute()
    con = open_store(db_path)
    reader = open_store(db_path)
    loaded_model: Model | None = None
    loaded_tagger: Tagger | None = None
    try:
        model_id = model_file = None
        if model is not None and phase_set & {"objects", "video"}:
            model_file, model_id = _detector_id(model, device=device, conf=conf)
            if ray is None:
                loaded_model = _load_detector(model_file, device=device, imgsz=imgsz,
                                              conf=conf)
        if tagger is not None and "tags" in phase_set:
            from detforge.library.taggers import load_tagger, read_vocabulary

            loaded_tagger = load_tagger(tagger, vocabulary=read_vocabulary(tags))
        exclude = frozenset(str(db_path) + s for s in ("", "-wal", "-shm", "-journal"))
        total = count_files(root, exclude=exclude)
        writer = Writer(con, commit_every=commit_every)
        planner = Planner(reader, phases=phase_set, objects_model=model_id,
                          tags_model=loaded_tagger.name if loaded_tagger else None,
                          retry_errors=retry_errors, queued=writer.is_queued)
        bar = tqdm(total=total, unit="file", disable=not progress, dynamic_ncols=True,
                   desc="index")
        run = IndexRun(root, db=db_path, phases=phase_set, model=loaded_model, model_id=model_id,
                   tagger=loaded_tagger, writer=writer, planner=planner, max_pixels=cap,
                   video={"sampling": video_sampling, "every_s": video_every_s,
                          "max_frames": max_video_frames}, progress=bar)
        run.summary.files = total
        t0 = time.perf_counter()
        n_workers = workers if workers is not None else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="detforge-hash") as hashers:
            decisions = planner.decisions(walk(root, exclude=exclude), hashers)
            items = run.items(decisions)
            try:
                if ray is not None:
                    from detforge.scale.library import index_on_cluster

                    index_on_cluster(run, items, address=ray, model=model_file, device=device,
                                     imgsz=imgsz, conf=conf, batch=batch, every_s=video_every_s)
                elif loaded_model is not None:
                    _run_with_model(run, loaded_model, items, workers=n_workers, batch=batch,
                                    every_s=video_every_s)
                else:
                    _run_without_model(run, items, workers=n_workers)
            finally:
                bar.close()
        run.summary.moved = writer.outcome.moved
        _finish(run, con, prune=prune)
        run.summary.wall_s = time.perf_counter() - t0
        run.summary.phase_rates = run.clock.rates()
        run.summary.needs_extra = {EXTRAS[k][0]: n for k, n in run.needs_extra.items()}
    finally:
        if loaded_model is not None:
            loaded_model.close()
        if loaded_tagger is not None:
            loaded_tagger.close()
        reader.close()
        con.close()
    if run.needs_extra:
        what = "; ".join(f"{n} file(s): {EXTRAS[k][1]}" for k, n in run.needs_extra.items())
        raise MissingExtraError(f"{what}: pip install 'detforge[library]' and run again "
                                f"(everything else is indexed in {db_path})")
    return run.summary


def _detector_id(model: str | Path, *, device: str, conf: float) -> tuple[Path, str]:
    """The detector's file and the id stored with its objects (name, content, threshold)."""
    from detforge.library.hashing import file_sha256
    from detforge.runtime import resolve_model_path

    file = resolve_model_path(model, device=device)
    return file, f"{file.name}@{file_sha256(file)[:16]}:conf={conf:g}"


def _load_detector(file: Path, *, device: str, imgsz: tuple[int, int] | None,
                   conf: float) -> Model:
    from detforge.runtime import load_model

    return load_model(file, device=device, imgsz=imgsz, conf=conf)


def _run_with_model(run: IndexRun, model: Model, items: Iterator[SourceItem], *,
                    workers: int | None, batch: int | str, every_s: float) -> None:
    from detforge.runtime.pipeline import Tracker, run_pipeline

    tracker: Tracker | None = None
    if "video" in run.phases:  # without Ultralytics, videos get detections but no track ids
        tracker = VideoOnlyTracker(run, frame_rate=1.0 / every_s)
    sink = LibrarySink(run, model.classes)
    stats = run_pipeline(model, items, [sink], batch=batch, workers=workers, tracker=tracker,
                         progress=False, fast_decode=True)
    run.summary.interrupted = stats.interrupted


def _run_without_model(run: IndexRun, items: Iterator[SourceItem], *, workers: int | None) -> None:
    from detforge.core.detections import Detections
    from detforge.runtime.sinks import Prediction

    n = workers or max(2, _cores())
    sink = LibrarySink(run, ())

    def analyse(item: SourceItem) -> str | None:
        if not isinstance(item, StillItem):
            return None
        try:
            item.load_reduced((0, 0))
        except UnreadableError:
            return None
        return item.source

    try:
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="detforge-analyse") as pool:
            for source in ordered_map(analyse, items, pool, window=2 * n):
                if source is not None:
                    sink.write(Prediction(source, None, 0, 0, Detections.empty()))
    except KeyboardInterrupt:
        run.summary.interrupted = True
    finally:
        sink.close()


def _cores() -> int:
    from detforge.runtime.hardware import cpu_cores

    return cpu_cores()


def _finish(run: IndexRun, con: Any, *, prune: bool) -> None:
    """Count (and with ``prune`` delete) rows of vanished files; drop orphaned contents."""
    import os

    prefix = str(run.root).rstrip(os.sep) + os.sep
    gone = [row_id for row_id, path in con.execute(
        "SELECT id, path FROM files WHERE substr(path, 1, ?) = ? OR path = ?",
        (len(prefix), prefix, str(run.root))) if not os.path.lexists(path)]
    run.summary.missing = len(gone)
    con.execute("BEGIN IMMEDIATE")
    try:
        if prune and gone:
            for start in range(0, len(gone), 500):
                chunk = gone[start:start + 500]
                con.execute(f"DELETE FROM files WHERE id IN ({','.join('?' * len(chunk))})",
                            chunk)
            run.summary.pruned = len(gone)
            run.summary.missing = 0
        live = "SELECT hash FROM files WHERE hash IS NOT NULL"
        for table in ("detections", "objects", "tags", "tracks", "thumbnails", "contents"):
            con.execute(f"DELETE FROM {table} WHERE hash NOT IN ({live})")
        con.execute("COMMIT")
        con.execute("PRAGMA optimize")  # refresh the planner's statistics when they drifted
    except BaseException:
        con.execute("ROLLBACK")
        raise
