"""Everything the index learns from one still image's pixels, from a single decode.

:func:`analyse_still` reads the file once, parses its EXIF, decodes it once (at a reduced
scale when the largest consumer allows), and from that one image computes the quality
measures, the perceptual hash, the thumbnail and the tagger's input; the decoded image is
handed back for the detector. The pipeline runs it in its decode threads, so all of this
overlaps with inference.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from detforge.library.decode import DEFAULT_MAX_PIXELS, Decoded, UndecodableError, decode_still
from detforge.library.formats import Kind
from detforge.library.hashing import phash
from detforge.library.meta import PhotoMeta, read_meta
from detforge.library.quality import ANALYSIS_SIDE, Quality, analysis_image, measure

if TYPE_CHECKING:
    from detforge.library.taggers import Tagger

__all__ = ["THUMB_SIDE", "PhaseClock", "StillAnalysis", "analyse_still", "thumbnail_jpeg"]

THUMB_SIDE = 256


class PhaseClock:
    """Thread-safe busy time and item count per phase, for per-phase throughput."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, phase: str, seconds: float, count: int = 1) -> None:
        """Record ``count`` items that took ``seconds`` of one thread's time."""
        with self._lock:
            self.seconds[phase] += seconds
            self.counts[phase] += count

    def rates(self) -> dict[str, float]:
        """Items per second of busy time, per phase (one thread's throughput)."""
        with self._lock:
            return {k: self.counts[k] / s for k, s in self.seconds.items() if s > 0}


@dataclass(slots=True)
class StillAnalysis:
    """What :func:`analyse_still` found.

    Attributes:
        meta: EXIF fields.
        width: Full upright width of the original.
        height: Full upright height of the original.
        quality: Quality measures (None when the quality phase is off).
        phash: Perceptual hash (with quality).
        thumb: JPEG thumbnail bytes, long side :data:`THUMB_SIDE`.
        tag_input: The tagger's prepared input, or None.
    """

    meta: PhotoMeta
    width: int
    height: int
    quality: Quality | None = None
    phash: int | None = None
    thumb: bytes | None = None
    tag_input: NDArray[np.float32] | None = field(default=None, repr=False)


def thumbnail_jpeg(rgb: NDArray[np.uint8], side: int = THUMB_SIDE) -> bytes:
    """A JPEG (quality 80) of ``rgb`` with its long side at most ``side`` pixels."""
    import cv2

    small = analysis_image(rgb, side)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise UndecodableError("could not encode a thumbnail")
    return bytes(buf.tobytes())


def analyse_still(path: str | Path, kind: Kind, *, quality: bool = True,
                  tagger: Tagger | None = None, min_side: int = 0,
                  max_pixels: int = DEFAULT_MAX_PIXELS,
                  clock: PhaseClock | None = None) -> tuple[StillAnalysis, Decoded]:
    """Analyse one still image.

    Args:
        path: The file.
        kind: ``image``, ``heif`` or ``raw``.
        quality: Compute quality measures and the perceptual hash.
        tagger: Prepare this tagger's input too.
        min_side: Smallest short side the detector needs (0: decode at full size).
        max_pixels: Refuse images with more pixels.
        clock: Receives the time spent per phase.

    Returns:
        The analysis and the decoded image (for the detector).

    Raises:
        UndecodableError: The file cannot be read or decoded (the message says why).
        MissingExtraError: The format's decoder is not installed.
    """
    t0 = time.perf_counter()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UndecodableError(f"cannot read the file ({exc.strerror or exc})") from exc
    meta = read_meta(data, kind)
    t1 = time.perf_counter()
    decoded = decode_still(data, kind, min_side=max(min_side, ANALYSIS_SIDE if quality else 0),
                           max_pixels=max_pixels)
    del data
    small = analysis_image(decoded.rgb)
    result = StillAnalysis(meta, decoded.width, decoded.height, thumb=thumbnail_jpeg(small))
    t3 = time.perf_counter()
    if quality:
        result.quality = measure(small)
        result.phash = phash(small)
    t4 = time.perf_counter()
    if tagger is not None:
        result.tag_input = tagger.prepare(small)
    if clock is not None:
        clock.add("meta", t1 - t0)
        clock.add("decode", t3 - t1)
        if quality:
            clock.add("quality", t4 - t3)
        if tagger is not None:
            clock.add("tag-prep", time.perf_counter() - t4)
    return result, decoded
