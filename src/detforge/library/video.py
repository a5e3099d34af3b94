"""Videos: probe (size, fps, duration, codec), frame sampling, and the per-video summary.

Frames are sampled uniformly (``every`` seconds of video, the default one a second) or at
scene changes (a frame is kept when its 32x32 grey thumbnail differs from the last kept one
by more than a threshold), at most ``max_frames`` per video; the runtime's
:class:`~detforge.runtime.sources.Source` reads them. Detections on the sampled frames are
tracked with ByteTrack (:mod:`detforge.runtime.track`) when Ultralytics is installed.

The summary of a video (stored as JSON in ``contents.video_summary``)::

    {"sampled_frames": 30, "sampling": "uniform", "tracked": true,
     "objects": {"dog": {"frames": 12, "max_count": 2, "first_t": 1.0, "last_t": 9.0,
                         "tracks": 2}},
     "timeline": [{"t": 0.0, "frame": 0, "counts": {"dog": 1}}, ...],
     "tracks": [{"track_id": 1, "label": "dog", "first_t": 1.0, "last_t": 5.0,
                 "frames": 5, "max_score": 0.91}]}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["FrameDetections", "VideoInfo", "probe_video", "sample_frames", "summarise"]

Sampling = Literal["uniform", "scene"]


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What OpenCV reports about a video file."""

    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float | None
    codec: str | None


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """Detections of one sampled frame: ``(label, score, x1, y1, x2, y2, track_id)`` rows."""

    frame: int
    t: float
    rows: Sequence[tuple[str, float, float, float, float, float, int | None]]


def probe_video(path: str) -> tuple[VideoInfo, NDArray[np.uint8]] | None:
    """Size, frame rate, frame count, duration and codec, and the first frame (BGR); None
    when the video cannot be opened or has no decodable frame."""
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return None
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")
        ok, frame = cap.read()
        if not ok or frame is None:
            return None
        h, w = frame.shape[:2]
    finally:
        cap.release()
    duration = count / fps if fps > 0 and count > 0 else None
    info = VideoInfo(width=w, height=h, fps=round(fps, 3), frame_count=count,
                     duration_s=None if duration is None else round(duration, 3),
                     codec=codec if codec.isprintable() and codec else None)
    return info, np.asarray(frame, np.uint8)


def sample_frames(path: str, info: VideoInfo, *, sampling: Sampling = "uniform",
                  every_s: float = 1.0, max_frames: int = 300,
                  scene_threshold: float = 0.15) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """Sampled ``(frame index, BGR frame)`` pairs of a video, in order.

    Args:
        path: The video.
        info: Its :func:`probe_video` result.
        sampling: ``uniform`` (one frame every ``every_s`` seconds) or ``scene``.
        every_s: Seconds between uniform samples; also the smallest gap in scene mode.
        max_frames: Most frames kept (uniform sampling spreads them over the whole video).
        scene_threshold: Grey-level change (0..1) that makes a scene change.
    """
    from detforge.runtime.sources import Source

    fps = info.fps if info.fps > 0 else 30.0
    step_s = every_s
    if sampling == "uniform" and info.duration_s and info.duration_s / every_s > max_frames:
        step_s = info.duration_s / max_frames
    source = Source([("video", path)], fps=1.0 / step_s if sampling == "uniform" else None,
                    keyframes=sampling == "scene", scene_threshold=scene_threshold,
                    every=1 if sampling == "uniform" else max(1, math.floor(fps * every_s)))
    kept = 0
    for item in source:
        if item.bgr is None or item.frame is None:
            continue
        yield item.frame, item.bgr
        kept += 1
        if kept >= max_frames:
            return


def summarise(frames: Sequence[FrameDetections], *, sampling: str,
              tracked: bool) -> dict[str, Any]:
    """The per-video summary (see the module docstring) of the sampled frames."""
    objects: dict[str, dict[str, Any]] = {}
    tracks: dict[int, dict[str, Any]] = {}
    timeline = []
    for fd in frames:
        counts = Counter(row[0] for row in fd.rows)
        timeline.append({"t": round(fd.t, 3), "frame": fd.frame, "counts": dict(counts)})
        for label, n in counts.items():
            o = objects.setdefault(label, {"frames": 0, "max_count": 0, "first_t": fd.t,
                                           "last_t": fd.t, "tracks": 0})
            o["frames"] += 1
            o["max_count"] = max(o["max_count"], n)
            o["last_t"] = round(fd.t, 3)
        for label, score, *_box, track in fd.rows:
            if track is None:
                continue
            tr = tracks.setdefault(track, {"track_id": track, "label": label,
                                           "first_t": round(fd.t, 3), "last_t": fd.t,
                                           "frames": 0, "max_score": 0.0})
            tr["frames"] += 1
            tr["last_t"] = round(fd.t, 3)
            tr["max_score"] = round(max(tr["max_score"], score), 4)
    for tr in tracks.values():
        objects[tr["label"]]["tracks"] += 1
    for o in objects.values():
        o["first_t"] = round(o["first_t"], 3)
    return {"sampled_frames": len(frames), "sampling": sampling, "tracked": tracked,
            "objects": objects, "timeline": timeline,
            "tracks": sorted(tracks.values(), key=lambda t: t["track_id"])}
