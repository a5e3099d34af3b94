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

import importlib.util
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError, MissingExtraError
from detforge.library.analyse import PhaseClock, StillAnalysis, analyse_still, thumbnail_jpeg
from detforge.library.decode import DEFAULT_MAX_PIXELS, UndecodableError
from detforge.library.formats import Kind
from detforge.library.plan import ALL_PHASES, Decision, Planner, ordered_map
from detforge.library.store import open_store
from detforge.library.video import FrameDetections, VideoInfo, probe_video, sample_frames
from detforge.library.video import summarise as summarise_video
from detforge.library.walk import FileEntry, count_files, walk
from detforge.library.writer import ContentRecord, Writer
from detforge.runtime.sources import SourceItem, UnreadableError

if TYPE_CHECKING:
    from detforge.library.taggers import Tagger
    from detforge.runtime import Model
    from detforge.runtime.sinks import Prediction

__all__ = ["IndexSummary", "index_library", "parse_phases"]

_EXTRAS = {"heif": ("pillow_heif", "HEIC/HEIF files need pillow-heif"),
           "raw": ("rawpy", "DNG and camera RAW files need rawpy")}
_TAG_BATCH = 16


@dataclass
class IndexSummary:
    """What an index run did.

    Attributes:
        root: The folder indexed.
        db: The database file.
        files: Files found under the root (hidden files aside).
        analysed: Contents analysed in this run.
        unchanged: Files skipped because their row was current.
        linked: Files pointed at content analysed before (moved, renamed, copied).
        moved: Rows whose path was updated to a file's new place.
        errors: Files recorded with an error in this run.
        other: Files of unsupported types recorded in this run.
        missing: Indexed files under the root that no longer exist (kept unless pruned).
        pruned: Rows deleted by ``--prune``.
        needs_extra: Files left out for a missing optional package, by package.
        detections: Objects stored in this run.
        wall_s: Wall time.
        phase_rates: Items per second of one thread's busy time, per phase.
        interrupted: Ctrl-C stopped the run (what was done is stored).
        tracked: Video detections were tracked (ByteTrack available).
    """

    root: str
    db: str
    files: int = 0
    analysed: int = 0
    unchanged: int = 0
    linked: int = 0
    moved: int = 0
    errors: int = 0
    other: int = 0
    missing: int = 0
    pruned: int = 0
    needs_extra: dict[str, int] = field(default_factory=dict)
    detections: int = 0
    wall_s: float = 0.0
    phase_rates: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    tracked: bool = False

    @property
    def files_per_s(self) -> float:
        """Files handled per second of wall time."""
        return self.files / self.wall_s if self.wall_s > 0 else 0.0


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


@dataclass(frozen=True, slots=True)
class _StillItem(SourceItem):
    """A photo for the runtime pipeline: decoding runs the whole still analysis."""

    entry: FileEntry | None = None
    hash: str = ""
    run: _Run | None = None

    def load(self) -> NDArray[np.uint8]:
        """Analyse at full size; the RGB image for the detector."""
        return self.load_reduced((0, 0))[0]

    def load_reduced(self, size: tuple[int, int]) -> tuple[NDArray[np.uint8], tuple[int, int]]:
        """Analyse, decoding no smaller than ``size``; the image and the full size."""
        if self.run is None:
            raise UnreadableError("library item without its run")
        return self.run.analyse(self, max(size))


@dataclass
class _VideoJob:
    entry: FileEntry
    hash: str
    info: VideoInfo
    thumb: bytes | None
    tag_input: NDArray[np.float32] | None
    frames: list[FrameDetections] = field(default_factory=list)


class _Run:
    """State shared by the planner thread, the decode threads and the sink."""

    def __init__(self, root: Path, *, db: Path, phases: frozenset[str], model: Model | None,
                 model_id: str | None, tagger: Tagger | None, writer: Writer,
                 planner: Planner, max_pixels: int, video: dict[str, Any],
                 progress: Any) -> None:
        self.root, self.db, self.phases = root, db, phases
        self.model, self.model_id, self.tagger = model, model_id, tagger
        self.writer, self.planner = writer, planner
        self.max_pixels, self.video, self.bar = max_pixels, video, progress
        self.clock = PhaseClock()
        self.summary = IndexSummary(root=str(root), db=str(db))
        self.pending: dict[str, tuple[StillAnalysis, int, int, FileEntry, str]] = {}
        self.videos: dict[str, _VideoJob] = {}
        self.current_video: str | None = None
        self.tag_queue: list[tuple[ContentRecord, FileEntry, NDArray[np.float32]]] = []
        self.needs_extra: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last_postfix = 0.0

    # -- counting and progress ---------------------------------------------------------------
    def count(self, name: str, n: int = 1, files: int = 1) -> None:
        with self._lock:
            setattr(self.summary, name, getattr(self.summary, name) + n)
            self.bar.update(files)
            now = time.monotonic()
            if now - self._last_postfix > 1.0:
                self._last_postfix = now
                rates = self.clock.rates()
                self.bar.set_postfix_str(" ".join(f"{k} {v:.0f}/s" for k, v in rates.items()),
                                         refresh=False)

    # -- planning ------------------------------------------------------------------------------
    def items(self, decisions: Iterator[Decision]) -> Iterator[SourceItem]:
        """Work items for the analysis; everything else is stored right away."""
        available = {k: importlib.util.find_spec(mod) is not None
                     for k, (mod, _) in _EXTRAS.items()}
        for d in decisions:
            if d.action == "skip":
                self.count("unchanged")
            elif d.action == "link" and d.hash is not None:
                self.writer.link(d.entry, d.hash)
                self.count("linked")
            elif d.action == "duplicate":
                self.count("linked", 1, 0)  # the bar moves when its content is stored
            elif d.action == "error":
                self.writer.error(d.entry, None, d.reason or "unreadable")
                self.count("errors")
            elif d.action == "other":
                self.writer.error(d.entry, None, d.reason or "unsupported")
                self.count("other")
            elif d.hash is not None:
                kind = d.entry.kind
                if kind in _EXTRAS and not available[kind]:
                    n = 1 + len(self.planner.in_flight.release(d.hash))
                    self.needs_extra[kind] += n
                    self.count("analysed", 0, n)
                elif kind == "video":
                    yield from self._video_items(d.entry, d.hash)
                else:
                    yield _StillItem(source=d.entry.path, path=Path(d.entry.path),
                                     entry=d.entry, hash=d.hash, run=self)

    def _video_items(self, entry: FileEntry, hash_: str) -> Iterator[SourceItem]:
        t0 = time.perf_counter()
        probed = probe_video(entry.path)
        if probed is None:
            self.fail(entry, hash_, "cannot open the video or read a frame (corrupt file or "
                                    "a codec OpenCV lacks)")
            return
        info, first = probed
        rgb = np.ascontiguousarray(first[..., ::-1])
        small_thumb = thumbnail_jpeg(rgb)
        tag_input = self.tagger.prepare(rgb) if self.tagger is not None else None
        job = _VideoJob(entry, hash_, info, small_thumb, tag_input)
        self.clock.add("video-probe", time.perf_counter() - t0)
        if self.model is None or "video" not in self.phases:
            self.finish_video(job)
            return
        self.videos[entry.path] = job
        n = 0
        for index, bgr in sample_frames(entry.path, info, **self.video):
            n += 1
            yield SourceItem(source=entry.path, frame=index, bgr=bgr)
        if n == 0:
            self.videos.pop(entry.path, None)
            self.finish_video(job)

    # -- analysis (decode threads) -----------------------------------------------------------
    def analyse(self, item: _StillItem, min_side: int) -> tuple[NDArray[np.uint8],
                                                              tuple[int, int]]:
        entry = item.entry
        if entry is None:
            raise UnreadableError("library item without its file")
        kind: Kind = entry.kind
        try:
            analysis, decoded = analyse_still(
                entry.path, kind, quality="quality" in self.phases, tagger=self.tagger,
                min_side=min_side, max_pixels=self.max_pixels, clock=self.clock)
        except UndecodableError as exc:
            self.fail(entry, item.hash, str(exc))
            raise UnreadableError(str(exc)) from exc
        self.pending[entry.path] = (analysis, decoded.width, decoded.height, entry, item.hash)
        return decoded.rgb, (decoded.height, decoded.width)

    def fail(self, entry: FileEntry, hash_: str, message: str) -> None:
        copies = self.planner.in_flight.release(hash_)
        for e in (entry, *copies):
            self.writer.error(e, hash_, message)
        self.count("errors", 1 + len(copies), 1 + len(copies))

    # -- results (sink thread) ----------------------------------------------------------------
    def still_done(self, source: str, rows: list[tuple[Any, ...]]) -> None:
        analysis, width, height, item_entry, hash_ = self.pending.pop(source)
        meta = analysis.meta.as_dict()
        cols: dict[str, Any] = {"format": _format(source), "width": width, "height": height,
                                **meta}
        phases = {"meta"}
        if analysis.quality is not None:
            q = analysis.quality
            cols.update(sharpness=q.sharpness, brightness=q.brightness, dark_clip=q.dark_clip,
                        bright_clip=q.bright_clip, noise=q.noise, phash=analysis.phash)
            phases.add("quality")
        detections: list[tuple[Any, ...]] | None = None
        if self.model is not None and "objects" in self.phases:
            cols["objects_model"] = self.model_id
            phases.add("objects")
            detections = rows
        record = ContentRecord(hash_, "image", cols, frozenset(phases), detections=detections,
                               thumb=analysis.thumb)
        self.emit(record, item_entry, analysis.tag_input)

    def frame_done(self, source: str, frame: int, rows: list[tuple[Any, ...]]) -> None:
        if self.current_video is not None and self.current_video != source:
            self.close_video()
        self.current_video = source
        job = self.videos[source]
        fps = job.info.fps if job.info.fps > 0 else 30.0
        t = frame / fps
        job.frames.append(FrameDetections(frame, t, [
            (r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows]))

    def close_video(self) -> None:
        if self.current_video is None:
            return
        job = self.videos.pop(self.current_video)
        self.current_video = None
        self.finish_video(job)

    def finish_video(self, job: _VideoJob) -> None:
        info = job.info
        cols: dict[str, Any] = {"format": _format(job.entry.path), "width": info.width,
                                "height": info.height, "fps": info.fps,
                                "frame_count": info.frame_count, "duration_s": info.duration_s,
                                "codec": info.codec}
        phases = {"meta"}
        detections = tracks = None
        if self.model is not None and "video" in self.phases:
            summary = summarise_video(job.frames, sampling=str(self.video["sampling"]),
                                      tracked=self.summary.tracked)
            cols.update(video_summary=json.dumps(summary, separators=(",", ":")),
                        objects_model=self.model_id)
            phases.add("video")
            detections = [(fd.frame, round(fd.t, 3), *row) for fd in job.frames
                          for row in fd.rows]
            tracks = [(t["track_id"], t["label"], t["first_t"], t["last_t"], t["frames"],
                       t["max_score"]) for t in summary["tracks"]]
        record = ContentRecord(job.hash, "video", cols, frozenset(phases), detections=detections,
                               tracks=tracks, thumb=job.thumb)
        self.emit(record, job.entry, job.tag_input)

    def emit(self, record: ContentRecord, entry: FileEntry,
             tag_input: NDArray[np.float32] | None) -> None:
        if self.tagger is not None and "tags" in self.phases and tag_input is not None:
            self.tag_queue.append((record, entry, tag_input))
            if len(self.tag_queue) >= _TAG_BATCH:
                self.flush_tags()
            return
        self._store(record, entry)

    def flush_tags(self) -> None:
        if not self.tag_queue or self.tagger is None:
            return
        queue, self.tag_queue = self.tag_queue, []
        t0 = time.perf_counter()
        tags = self.tagger.tag(np.stack([q[2] for q in queue]))
        self.clock.add("tags", time.perf_counter() - t0, len(queue))
        for (record, entry, _), found in zip(queue, tags, strict=True):
            record.tags = found
            record.columns["tags_model"] = self.tagger.name
            record.phases = record.phases | {"tags"}
            self._store(record, entry)

    def _store(self, record: ContentRecord, entry: FileEntry) -> None:
        n = self.planner.in_flight.release_into(
            record.hash, lambda copies: self.writer.content(record, [entry, *copies]))
        self.count("analysed", 1, 1 + n)
        if record.detections:
            self.summary.detections += len(record.detections)


def _format(path: str) -> str:
    return Path(path).suffix.lower().lstrip(".") or "unknown"


class _LibrarySink:
    """Receives the pipeline's predictions, in input order, and stores them."""

    needs_image = False

    def __init__(self, run: _Run, classes: tuple[str, ...]) -> None:
        self.run = run
        self.classes = classes

    def write(self, prediction: Prediction) -> None:
        d = prediction.detections
        tracks = d.track_ids.tolist() if d.track_ids is not None else [None] * len(d)
        frame = -1 if prediction.frame is None else prediction.frame
        rows = [(frame, None, _label(self.classes, int(c)), round(float(s), 5),
                 *(round(float(v), 2) for v in box), t)
                for box, s, c, t in zip(d.xyxy, d.scores, d.class_ids, tracks, strict=True)]
        if prediction.frame is None:
            self.run.still_done(prediction.source, rows)
        else:
            self.run.frame_done(prediction.source, prediction.frame, rows)

    def close(self) -> None:
        self.run.close_video()
        self.run.flush_tags()
        self.run.writer.flush()


def _label(classes: tuple[str, ...], cid: int) -> str:
    return classes[cid] if 0 <= cid < len(classes) else str(cid)


class _VideoOnlyTracker:
    """ByteTrack for video frames; photos pass through untouched. Ultralytics (which holds
    ByteTrack) is imported at the first video frame, not before."""

    def __init__(self, run: _Run, frame_rate: float) -> None:
        self.run = run
        self.frame_rate = frame_rate
        self.tracker: Any = None
        self.available = importlib.util.find_spec("ultralytics") is not None

    def update(self, source: str, detections: Any) -> Any:
        if source not in self.run.videos or not self.available:
            return detections
        if self.tracker is None:
            from detforge.runtime.track import ByteTracker

            try:
                self.tracker = ByteTracker(frame_rate=self.frame_rate)
            except MissingExtraError:
                self.available = False
                return detections
            self.run.summary.tracked = True
        return self.tracker.update(source, detections)


def index_library(root: str | Path, *, db: str | Path = "library.sqlite",
                  model: str | Path | None = None, tagger: str | None = None,
                  tags: str | Path | None = None, phases: str | None = None,
                  workers: int | None = None, batch: int | str = "auto", conf: float = 0.25,
                  device: str = "auto", imgsz: tuple[int, int] | None = None,
                  video_sampling: str = "uniform", video_every_s: float = 1.0,
                  max_video_frames: int = 300, prune: bool = False,
                  retry_errors: bool = False, commit_every: int = 64,
                  max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True) -> IndexSummary:
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
        max_pixels: Refuse images with more pixels (decompression bombs).
        progress: Show a progress bar with per-phase throughput.

    Returns:
        The :class:`IndexSummary`.

    Raises:
        ConfigError: A bad option, root or model path.
        LibraryDatabaseError: ``db`` is not a library index or is from a newer detforge.
        TaggerError: The tagger model cannot be loaded.
        MissingExtraError: Files needed a missing optional package (everything else is
            stored; install it and run again).

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
    db_path = Path(db).absolute()
    con = open_store(db_path)
    reader = open_store(db_path)
    loaded_model: Model | None = None
    loaded_tagger: Tagger | None = None
    try:
        model_id = None
        if model is not None and phase_set & {"objects", "video"}:
            loaded_model, model_id = _load_detector(model, device=device, imgsz=imgsz, conf=conf)
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
        run = _Run(root, db=db_path, phases=phase_set, model=loaded_model, model_id=model_id,
                   tagger=loaded_tagger, writer=writer, planner=planner, max_pixels=max_pixels,
                   video={"sampling": video_sampling, "every_s": video_every_s,
                          "max_frames": max_video_frames}, progress=bar)
        run.summary.files = total
        t0 = time.perf_counter()
        n_workers = workers if workers is not None else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="detforge-hash") as hashers:
            decisions = planner.decisions(walk(root, exclude=exclude), hashers)
            items = run.items(decisions)
            try:
                if loaded_model is not None:
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
        run.summary.needs_extra = {_EXTRAS[k][0]: n for k, n in run.needs_extra.items()}
    finally:
        if loaded_model is not None:
            loaded_model.close()
        if loaded_tagger is not None:
            loaded_tagger.close()
        reader.close()
        con.close()
    if run.needs_extra:
        what = "; ".join(f"{n} file(s): {_EXTRAS[k][1]}" for k, n in run.needs_extra.items())
        raise MissingExtraError(f"{what}: pip install 'detforge[library]' and run again "
                                f"(everything else is indexed in {db_path})")
    return run.summary


def _load_detector(model: str | Path, *, device: str, imgsz: tuple[int, int] | None,
                   conf: float) -> tuple[Model, str]:
    from detforge.library.hashing import file_sha256
    from detforge.runtime import load_model, resolve_model_path

    file = resolve_model_path(model, device=device)
    loaded = load_model(file, device=device, imgsz=imgsz, conf=conf)
    return loaded, f"{file.name}@{file_sha256(file)[:16]}:conf={conf:g}"


def _run_with_model(run: _Run, model: Model, items: Iterator[SourceItem], *,
                    workers: int | None, batch: int | str, every_s: float) -> None:
    from detforge.runtime.pipeline import Tracker, run_pipeline

    tracker: Tracker | None = None
    if "video" in run.phases:  # without Ultralytics, videos get detections but no track ids
        tracker = _VideoOnlyTracker(run, frame_rate=1.0 / every_s)
    sink = _LibrarySink(run, model.classes)
    stats = run_pipeline(model, items, [sink], batch=batch, workers=workers, tracker=tracker,
                         progress=False, fast_decode=True)
    run.summary.interrupted = stats.interrupted


def _run_without_model(run: _Run, items: Iterator[SourceItem], *, workers: int | None) -> None:
    from detforge.core.detections import Detections
    from detforge.runtime.sinks import Prediction

    n = workers or max(2, _cores())
    sink = _LibrarySink(run, ())

    def analyse(item: SourceItem) -> str | None:
        if not isinstance(item, _StillItem):
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


def _finish(run: _Run, con: Any, *, prune: bool) -> None:
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
