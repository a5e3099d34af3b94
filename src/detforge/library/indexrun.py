"""The work of one index run: photo items for the pipeline, the shared state, the sink.

:class:`IndexRun` is shared by the planner's thread (which turns decisions into work
items), the pipeline's decode threads (:meth:`IndexRun.analyse`) and its post thread
(:class:`LibrarySink`), and hands finished units to the writer
(:class:`~detforge.library.writer.Writer`).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import MissingExtraError
from detforge.library.analyse import PhaseClock, StillAnalysis, analyse_still, thumbnail_jpeg
from detforge.library.decode import UndecodableError
from detforge.library.formats import Kind
from detforge.library.plan import Decision, Planner
from detforge.library.remote import RemoteAnalysis, RemoteStill
from detforge.library.video import FrameDetections, VideoInfo, probe_video, sample_frames
from detforge.library.video import summarise as summarise_video
from detforge.library.walk import FileEntry
from detforge.library.writer import ContentRecord, Writer
from detforge.runtime.sources import SourceItem, UnreadableError

if TYPE_CHECKING:
    from detforge.library.taggers import Tagger
    from detforge.runtime import Model
    from detforge.runtime.sinks import Prediction

__all__ = ["EXTRAS", "IndexRun", "IndexSummary", "LibrarySink", "StillItem", "VideoOnlyTracker"]

EXTRAS = {"heif": ("pillow_heif", "HEIC/HEIF files need pillow-heif"),
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


@dataclass(frozen=True, slots=True)
class StillItem(SourceItem):
    """A photo for the runtime pipeline: decoding runs the whole still analysis."""

    entry: FileEntry | None = None
    hash: str = ""
    run: IndexRun | None = None

    def load(self) -> NDArray[np.uint8]:
        """Analyse at full size; the RGB image for the detector."""
        return self.load_reduced((0, 0))[0]

    def load_reduced(self, size: tuple[int, int]) -> tuple[NDArray[np.uint8], tuple[int, int]]:
        """Analyse, decoding no smaller than ``size``; the image and the full size."""
        if self.run is None:
            raise UnreadableError("library item without its run")
        return self.run.analyse(self, max(size))

    def for_cluster(self) -> tuple[RemoteStill, Callable[[Any, str | None], None]]:
        """The analysis as a worker runs it (``--ray``), and what the driver does with its
        outcome (see :class:`~detforge.scale.stages.ClusterItem`)."""
        run, entry = self.run, self.entry
        if run is None or entry is None:
            raise UnreadableError("library item without its run")

        def settle(found: RemoteAnalysis | None, error: str | None) -> None:
            if found is None:
                run.fail(entry, self.hash, error or "unreadable")
            else:
                run.accept(entry, self.hash, found)

        return RemoteStill(entry.path, entry.kind, "quality" in run.phases,
                           run.tagger is not None and "tags" in run.phases,
                           run.max_pixels), settle


@dataclass
class VideoJob:
    entry: FileEntry
    hash: str
    info: VideoInfo
    thumb: bytes | None
    tag_input: NDArray[np.float32] | None
    frames: list[FrameDetections] = field(default_factory=list)


class IndexRun:
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
        self.videos: dict[str, VideoJob] = {}
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
                     for k, (mod, _) in EXTRAS.items()}
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
                if kind in EXTRAS and not available[kind]:
                    n = 1 + len(self.planner.in_flight.release(d.hash))
                    self.needs_extra[kind] += n
                    self.count("analysed", 0, n)
                elif kind == "video":
                    yield from self._video_items(d.entry, d.hash)
                else:
                    yield StillItem(source=d.entry.path, path=Path(d.entry.path),
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
        job = VideoJob(entry, hash_, info, small_thumb, tag_input)
        self.clock.add("video-probe", time.perf_counter() - t0)
        if self.model_id is None or "video" not in self.phases:
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
    def analyse(self, item: StillItem, min_side: int) -> tuple[NDArray[np.uint8],
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

    def accept(self, entry: FileEntry, hash_: str, found: RemoteAnalysis) -> None:
        """File the analysis a worker made (``--ray``) as :meth:`analyse` files its own."""
        analysis = found.analysis
        for phase, seconds in found.seconds.items():
            self.clock.add(phase, seconds, found.counts.get(phase, 1))
        if self.tagger is not None and found.small is not None:
            t0 = time.perf_counter()
            analysis.tag_input = self.tagger.prepare(found.small)
            self.clock.add("tag-prep", time.perf_counter() - t0)
        self.pending[entry.path] = (analysis, found.width, found.height, entry, hash_)

    def fail(self, entry: FileEntry, hash_: str, message: str) -> None:
        copies = self.planner.in_flight.release(hash_)
        for e in (entry, *copies):
            self.writer.error(e, hash_, message)
        self.count("errors", 1 + len(copies), 1 + len(copies))

    # -- results (sink thread) ----------------------------------------------------------------
    def still_done(self, source: str, rows: list[tuple[Any, ...]]) -> None:
        self.close_video()  # results come in input order: a video before this is complete
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
        if self.model_id is not None and "objects" in self.phases:
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

    def finish_video(self, job: VideoJob) -> None:
        info = job.info
        cols: dict[str, Any] = {"format": _format(job.entry.path), "width": info.width,
                                "height": info.height, "fps": info.fps,
                                "frame_count": info.frame_count, "duration_s": info.duration_s,
                                "codec": info.codec}
        phases = {"meta"}
        detections = tracks = None
        if self.model_id is not None and "video" in self.phases:
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


class LibrarySink:
    """Receives the pipeline's predictions, in input order, and stores them."""

    needs_image = False

    def __init__(self, run: IndexRun, classes: tuple[str, ...]) -> None:
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

    def abort(self) -> None:
        """The run stopped early: commit the files finished so far (the next run resumes
        after them); a video cut short is left out, to be analysed again."""
        self.run.writer.flush()


def _label(classes: tuple[str, ...], cid: int) -> str:
    return classes[cid] if 0 <= cid < len(classes) else str(cid)


class VideoOnlyTracker:
    """ByteTrack for video frames; photos pass through untouched. Ultralytics (which holds
    ByteTrack) is imported at the first video frame, not before."""

    def __init__(self, run: IndexRun, frame_rate: float) -> None:
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
