"""A library photo's analysis as a picklable unit of work for a Ray worker (``--ray``).

On a worker, :class:`RemoteStill` runs :func:`~detforge.library.analyse.analyse_still` on
the file, exactly as the local decode threads do, and sends back the analysis with the
decoded image; on the driver, :meth:`~detforge.library.indexrun.IndexRun.accept` files it
where the local run files it, so both runs store the same rows. The tagger stays on the
driver: the worker sends the small analysis image it prepares its input from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.library.analyse import PhaseClock, StillAnalysis, analyse_still
from detforge.library.decode import UndecodableError
from detforge.library.formats import Kind
from detforge.library.quality import analysis_image
from detforge.runtime.sources import UnreadableError

__all__ = ["RemoteAnalysis", "RemoteStill"]


@dataclass(frozen=True, slots=True)
class RemoteAnalysis:
    """What a worker found in one photo.

    Attributes:
        analysis: The still analysis (``tag_input`` unset).
        width: Full upright width of the decoded original.
        height: Full upright height.
        small: The analysis image the tagger's input is made from (None without a tagger).
        seconds: Busy seconds per phase on the worker.
        counts: Items per phase on the worker.
    """

    analysis: StillAnalysis
    width: int
    height: int
    small: NDArray[np.uint8] | None
    seconds: dict[str, float]
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class RemoteStill:
    """The analysis of one photo, to run on a worker.

    Attributes:
        path: The file (as every node sees it).
        kind: ``image``, ``heif`` or ``raw``.
        quality: Compute the quality measures and the perceptual hash.
        tagger: Send the analysis image back for the driver's tagger.
        max_pixels: Refuse images with more pixels.
    """

    path: str
    kind: Kind
    quality: bool
    tagger: bool
    max_pixels: int

    def decode(self, size: tuple[int, int], *, reduce: bool) -> tuple[
            NDArray[np.uint8], tuple[int, int], Any]:
        """Analyse the photo, decoding no smaller than ``size`` allows (with ``reduce``).

        Raises:
            UnreadableError: The file cannot be read or decoded (the message says why).
        """
        clock = PhaseClock()
        try:
            analysis, decoded = analyse_still(
                self.path, self.kind, quality=self.quality, min_side=max(size) if reduce else 0,
                max_pixels=self.max_pixels, clock=clock)
        except UndecodableError as exc:
            raise UnreadableError(str(exc)) from exc
        small = analysis_image(decoded.rgb) if self.tagger else None
        found = RemoteAnalysis(analysis, decoded.width, decoded.height, small,
                               dict(clock.seconds), dict(clock.counts))
        return decoded.rgb, (decoded.height, decoded.width), found
