"""Inputs to predict on: images, folders, globs, list files, videos, cameras and streams.

:func:`open_source` turns a spec into a :class:`Source`, an iterable of :class:`SourceItem`.
Images are decoded lazily by :meth:`SourceItem.load` (so decoding happens in the pipeline's
worker threads); video frames are read in order by the iterator and sampled (every n-th
frame, a target fps, scene-change keyframes). Unreadable inputs are recorded in
:attr:`Source.skipped` and skipped, never fatal.

Live streams (``rtsp://``, ``http(s)://``, a camera index) are read by a thread of their
own that keeps only the newest frame: when inference falls behind, older frames are dropped
(counted in :attr:`Source.dropped`) instead of piling up latency. A stream that cannot be
opened, or stops delivering, is reconnected with exponential backoff (``backoff_s``,
doubling up to :data:`MAX_BACKOFF_S`; :attr:`Source.reconnects`); ``reconnect`` bounds the
attempts in a row. A stream that never delivered a frame is listed in
:attr:`Source.never_read` (``predict`` then exits non-zero). ``realtime`` replays images and
video files as a live stream at that many frames per second (a KITTI ``image_2`` folder at
10 fps): frames whose time has passed while the pipeline was busy are dropped and counted.
"""

from __future__ import annotations

import glob
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError
from detforge.core.imageio import ImageError, read_image, resolve_max_pixels
from detforge.data.images import IMAGE_EXTENSIONS

__all__ = ["MAX_BACKOFF_S", "VIDEO_EXTENSIONS", "Skipped", "Source", "SourceItem",
           "UnreadableError", "decode_image", "open_source"]

MAX_BACKOFF_S = 10.0
"""Longest wait between two reconnection attempts."""
STREAM_TIMEOUT_MS = 5000
"""Longest OpenCV waits to open a stream or for its next packet."""

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg",
                              ".mpeg", ".wmv", ".ts"})
LIST_EXTENSIONS = frozenset({".txt", ".list"})


UnreadableError = ImageError
"""An input that was refused or could not be decoded; the pipeline records it and carries on.

It is :class:`detforge.core.imageio.ImageError` (``kind`` says why)."""


def decode_image(path: str | Path, *, max_pixels: int | None = None) -> NDArray[np.uint8]:
    """Read an image file as RGB ``[H, W, 3]`` uint8 (EXIF orientation applied).

    The file goes through :mod:`detforge.core.imageio`: regular files only, known formats,
    and a header-checked pixel cap before any decoding.

    Raises:
        UnreadableError: The file is refused, missing, empty or not a decodable image.
    """
    return read_image(path, max_pixels=max_pixels)


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One image or video frame to predict on.

    Attributes:
        source: The file path, camera index or stream URL it came from.
        frame: Frame index in the video, or None for an image.
        path: Image file to decode, or None for a frame already read.
        bgr: The decoded frame (BGR, as OpenCV reads it), or None for an image file.
        max_pixels: Pixel cap for the image file (None: the default cap).
    """

    source: str
    frame: int | None = None
    path: Path | None = None
    bgr: NDArray[np.uint8] | None = None
    max_pixels: int | None = None

    def load(self) -> NDArray[np.uint8]:
        """The RGB ``[H, W, 3]`` uint8 image.

        Raises:
            UnreadableError: The image file cannot be decoded.
        """
        if self.bgr is not None:
            import cv2

            return np.asarray(cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        if self.path is None:
            raise UnreadableError("item has neither a path nor a frame", kind="corrupt")
        return decode_image(self.path, max_pixels=self.max_pixels)

    def load_reduced(self, size: tuple[int, int]) -> tuple[NDArray[np.uint8], tuple[int, int]]:
        """The RGB image, decoded at a reduced JPEG scale that still covers ``size``.

        Returns:
            The image and the full ``(height, width)`` it stands for (equal to the image's
            own size for frames and for files decoded at full scale).

        Raises:
            UnreadableError: The image file cannot be decoded.
        """
        if self.path is None or self.bgr is not None:
            image = self.load()
            return image, (image.shape[0], image.shape[1])
        from detforge.runtime.reduced_decode import decode_reduced

        return decode_reduced(self.path, size, max_pixels=self.max_pixels)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An input that was skipped, and why."""

    source: str
    reason: str


@dataclass
class Source:
    """An iterable of :class:`SourceItem` with sampling options.

    Attributes:
        entries: ``(kind, target)`` pairs: kind is ``"image"``, ``"video"`` or ``"stream"``.
        every: Keep every n-th video frame.
        fps: Keep frames at about this rate (None: no rate limit).
        keyframes: Keep only frames that differ from the last kept one by more than
            ``scene_threshold`` (mean absolute difference of 32x32 grey thumbnails, 0..1).
        skipped: Inputs skipped so far, with the reason.
        max_pixels: Largest image or video frame (width x height) read; None: the default
            (:func:`~detforge.core.imageio.resolve_max_pixels`).
        reconnect: Reconnection attempts in a row before a stream is given up (-1: never).
        backoff_s: First wait before reconnecting; doubles up to :data:`MAX_BACKOFF_S`.
        live: Read streams on a thread that keeps only the newest frame (drops the rest).
        realtime: Replay images and video files at this many frames per second.
        dropped: Frames dropped so far (live streams, realtime replay).
        reconnects: Reconnections so far.
        frames_read: Frames read from streams so far.
        never_read: Streams that never delivered a frame.
        stop: Set it to end the iteration (a stream runs until then).
    """

    entries: list[tuple[str, str]]
    every: int = 1
    fps: float | None = None
    keyframes: bool = False
    scene_threshold: float = 0.15
    skipped: list[Skipped] = field(default_factory=list)
    max_pixels: int | None = None
    reconnect: int = 5
    backoff_s: float = 0.5
    live: bool = True
    realtime: float | None = None
    dropped: int = 0
    reconnects: int = 0
    frames_read: int = 0
    never_read: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.max_pixels = resolve_max_pixels(self.max_pixels)
        if self.every < 1:
            raise ConfigError(f"--every must be at least 1, got {self.every}")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"--fps must be positive, got {self.fps}")
        if self.realtime is not None and self.realtime <= 0:
            raise ConfigError(f"--realtime must be positive (frames per second), got "
                              f"{self.realtime}")
        if self.reconnect < -1 or self.backoff_s <= 0:
            raise ConfigError(f"--reconnect must be -1 (forever) or more and the backoff "
                              f"positive, got {self.reconnect} and {self.backoff_s}")

    def estimate_total(self) -> int | None:
        """Expected number of items (for progress bars), or None for live streams."""
        total = 0
        for kind, target in self.entries:
            if kind == "image":
                total += 1
            elif kind == "stream":
                return None
            else:
                count, fps = _video_info(target)
                if count <= 0:
                    return None
                step: float = self.every
                if self.fps is not None and fps > 0:
                    step = max(step, fps / self.fps)
                total += math.ceil(count / step)
        return total

    def __iter__(self) -> Iterator[SourceItem]:
        items = self._items()
        if self.realtime is None:
            yield from items
            return
        period = 1.0 / self.realtime
        start = time.monotonic()
        for i, item in enumerate(items):
            due = start + i * period
            now = time.monotonic()
            if now > due + period:  # the pipeline was busy past this frame's slot
                self.dropped += 1
                continue
            if due > now and self.stop.wait(due - now):
                return
            yield item

    def _items(self) -> Iterator[SourceItem]:
        for kind, target in self.entries:
            if self.stop.is_set():
                return
            if kind == "image":
                yield SourceItem(source=target, path=Path(target), max_pixels=self.max_pixels)
            elif kind == "stream":
                yield from self._stream(target)
            else:
                yield from self._frames(kind, target)

    def _stream(self, target: str) -> Iterator[SourceItem]:
        """Frames of a live stream: newest-frame reader thread, reconnection, sampling."""
        reader = _StreamReader(self, target)
        reader.start()
        min_gap = 1.0 / self.fps if self.fps else 0.0
        last_kept = -math.inf
        last_thumb: NDArray[np.float32] | None = None
        try:
            while True:
                got = reader.next_frame()
                if got is None:
                    break
                index, frame = got
                now = time.monotonic()
                if now - last_kept < min_gap:
                    continue
                if self.keyframes:
                    thumb = _thumb(frame)
                    if last_thumb is not None and float(
                            np.abs(thumb - last_thumb).mean()) <= self.scene_threshold:
                        continue
                    last_thumb = thumb
                last_kept = now
                yield SourceItem(source=target, frame=index, bgr=frame)
        finally:
            reader.close()
        if reader.frames == 0:
            self.never_read.append(target)
            self.skipped.append(Skipped(target, f"no frame was ever read ({reader.attempts} "
                                                f"connection attempt(s); last error: "
                                                f"{reader.error}); check the URL, the camera "
                                                f"or the network"))
        elif reader.gave_up:
            self.skipped.append(Skipped(target, f"stream lost after {reader.frames} frames; "
                                                f"{reader.attempts} reconnection attempt(s) "
                                                f"failed ({reader.error})"))

    def _frames(self, kind: str, target: str) -> Iterator[SourceItem]:
        import cv2

        cap = cv2.VideoCapture(int(target) if target.isdigit() else target)
        if not cap.isOpened():
            self.skipped.append(Skipped(target, "cannot open video (missing codec or corrupt "
                                                "file, or the camera/stream is unreachable)"))
            return
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.max_pixels is not None and width * height > self.max_pixels:
            cap.release()
            self.skipped.append(Skipped(target, f"video frames are {width}x{height} = "
                                                f"{width * height:,} pixels, over the "
                                                f"{self.max_pixels:,}-pixel cap (--max-pixels)"))
            return
        src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rate = self.fps if self.fps and src_fps > 0 else None
        last_bucket = -1
        last_thumb: NDArray[np.float32] | None = None
        index = -1
        got_any = False
        try:
            while True:
                index += 1
                keep = index % self.every == 0
                if keep and rate is not None:  # one frame per 1/fps time bucket
                    bucket = math.floor(index / src_fps * rate + 1e-6)
                    keep = bucket > last_bucket
                if not keep and not self.keyframes:
                    if not cap.grab():
                        break
                    continue
                ok, frame = cap.read() if keep else (cap.grab(), None)
                if not ok:
                    break
                got_any = True
                if not keep or frame is None:
                    continue
                if rate is not None:
                    last_bucket = bucket
                if self.keyframes:
                    thumb = _thumb(frame)
                    if last_thumb is not None and float(
                            np.abs(thumb - last_thumb).mean()) <= self.scene_threshold:
                        continue
                    last_thumb = thumb
                yield SourceItem(source=target, frame=index, bgr=np.asarray(frame, np.uint8))
        finally:
            cap.release()
        if not got_any:
            self.skipped.append(Skipped(target, "video has no decodable frames"))


class _StreamReader:
    """Reads one stream on a thread, keeping the newest frame; reconnects with backoff."""

    def __init__(self, source: Source, target: str) -> None:
        self.source = source
        self.target = target
        self.frames = 0
        self.attempts = 0
        self.gave_up = False
        self.error = "none"
        self._latest: tuple[int, NDArray[np.uint8]] | None = None
        self._done = False  # the consumer closed the reader
        self._finished = False  # the reading thread ended
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="detforge-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop reading (the caller stopped iterating)."""
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._thread.join(timeout=STREAM_TIMEOUT_MS / 1000 + 1)

    def next_frame(self) -> tuple[int, NDArray[np.uint8]] | None:
        """The newest frame not yet taken; None once the stream has ended."""
        with self._cond:
            while self._latest is None and not self._finished:
                if self.source.stop.is_set():
                    return None
                self._cond.wait(0.1)
            got, self._latest = self._latest, None
            self._cond.notify_all()
            return got

    def _open(self) -> Any:
        import cv2

        if self.target.isdigit():
            return cv2.VideoCapture(int(self.target))
        return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])

    def _stopped(self) -> bool:
        return self._done or self.source.stop.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped first; True when stopped."""
        end = time.monotonic() + seconds
        while not self._stopped():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.05))
        return True

    def _run(self) -> None:
        src = self.source
        delay = src.backoff_s
        in_row = 0  # reconnections since the last frame read
        index = -1
        try:
            while not self._stopped():
                cap = self._open()
                self.attempts += 1
                if cap.isOpened():
                    while not self._stopped():
                        ok, frame = cap.read()
                        if not ok or frame is None:
                            self.error = "the stream stopped sending frames"
                            break
                        index += 1
                        in_row, delay = 0, src.backoff_s
                        self.frames += 1
                        src.frames_read += 1
                        if index % src.every:
                            continue
                        with self._cond:
                            if self._latest is not None:
                                src.dropped += 1
                            self._latest = (index, np.asarray(frame, np.uint8))
                            self._cond.notify_all()
                        if not src.live:
                            self._wait_taken()
                else:
                    self.error = "cannot open (unreachable, refused or not a stream)"
                cap.release()
                if self._stopped():
                    break
                if src.reconnect >= 0 and in_row >= src.reconnect:
                    self.gave_up = self.frames > 0 and src.reconnect > 0
                    break
                in_row += 1
                src.reconnects += 1
                if self._wait(delay):
                    break
                delay = min(delay * 2, MAX_BACKOFF_S)
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _wait_taken(self) -> None:
        """Without the live policy: wait until the consumer took the frame."""
        with self._cond:
            while self._latest is not None and not self._stopped():
                self._cond.wait(0.1)


def _thumb(frame: NDArray[Any]) -> NDArray[np.float32]:
    import cv2

    grey = cv2.cvtColor(cv2.resize(frame, (32, 32), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2GRAY)
    return grey.astype(np.float32) / 255.0


def _video_info(target: str) -> tuple[int, float]:
    import cv2

    cap = cv2.VideoCapture(target)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def _classify(path: Path) -> str:
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_EXTENSIONS else "image"


def _entries(paths: list[Path], skipped: list[Skipped]) -> list[tuple[str, str]]:
    """Entries for ``paths``; a video that is not a regular file is skipped unopened (a
    FIFO would block the video decoder). Images are refused later, by the image reader."""
    out = []
    for p in paths:
        kind = _classify(p)
        if kind == "video" and not p.is_file():
            skipped.append(Skipped(str(p), "not a regular file (a FIFO, a device or a "
                                           "dangling link); point it at a video file"))
        else:
            out.append((kind, str(p)))
    return out


def _expand(spec: str, skipped: list[Skipped], *, base: Path | None = None) -> list[
        tuple[str, str]]:
    if spec.isdigit():
        return [("stream", spec)]
    if "://" in spec:
        return [("stream", spec)]
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir():
        # not is_dir(): a FIFO, a device or a dangling link with an image name is listed, so
        # that reading it reports it as skipped instead of dropping it unseen
        files = sorted(p for p in path.rglob("*") if not p.is_dir()
                       and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        return _entries(files, skipped)
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS and base is None:
            return _read_list(path, skipped)
        return [(_classify(path), str(path))]
    if path.exists():  # a FIFO, a device, a socket: reported as skipped, never read
        return _entries([path], skipped)
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        return _entries([p for p in matches if not p.is_dir()], skipped)
    if base is not None:
        skipped.append(Skipped(str(path), "listed file not found"))
        return []
    raise ConfigError(f"source {spec!r}: no such file or directory; pass an image, a folder, a "
                      f"glob ('photos/**/*.jpg'), a list file (.txt), a video, a camera index "
                      f"or an rtsp:// URL")


def _read_list(path: Path, skipped: list[Skipped]) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.extend(_expand(line, skipped, base=path.parent))
    return entries


def open_source(spec: str | Path, *, every: int = 1, fps: float | None = None,
                keyframes: bool = False, scene_threshold: float = 0.15,
                max_pixels: int | None = None, reconnect: int = 5, backoff_s: float = 0.5,
                live: bool = True, realtime: float | None = None) -> Source:
    """Open an input spec.

    Args:
        spec: An image, a folder (recursive), a glob, a list file (``.txt``, one path per
            line, relative to the list), a video file, a camera index (``"0"``) or a stream
            URL (``rtsp://...``).
        every: Keep every n-th video frame.
        fps: Keep video frames at about this rate.
        keyframes: Keep only scene-change frames.
        scene_threshold: Mean grey-level difference (0..1) that counts as a scene change.
        max_pixels: Largest image or frame read (default: 64,000,000, or
            ``$DETFORGE_MAX_PIXELS``); larger ones are skipped and counted.
        reconnect: Stream reconnection attempts in a row before giving up (-1: forever).
        backoff_s: First wait before a reconnection (doubling, at most 10 s).
        live: Keep only the newest frame of a stream (drop what inference cannot keep up
            with); False reads every frame (latency grows when inference is slower).
        realtime: Replay images and videos as a stream at this many frames per second.

    Returns:
        The :class:`Source`.

    Raises:
        ConfigError: ``spec`` matches nothing, or a sampling or size option is invalid.

    Example:
        >>> src = open_source("clips/", every=5)  # doctest: +SKIP
        >>> for item in src: ...  # doctest: +SKIP
    """
    skipped: list[Skipped] = []
    entries = _expand(str(spec), skipped)
    if not entries and not skipped:
        raise ConfigError(f"source {spec!s}: matched no image or video files; check the path "
                          f"or pattern (images: {sorted(IMAGE_EXTENSIONS)})")
    return Source(entries, every=every, fps=fps, keyframes=keyframes,
                  scene_threshold=scene_threshold, skipped=skipped, max_pixels=max_pixels,
                  reconnect=reconnect, backoff_s=backoff_s, live=live, realtime=realtime)
