"""Image quality measures: sharpness, exposure and noise, with their formulas.

Every measure is computed on the *analysis image*: the photo scaled (area averaging) so its
long side is :data:`ANALYSIS_SIDE` pixels (smaller photos are left as they are), turned to
8-bit luma ``L = 0.299 R + 0.587 G + 0.114 B``. A fixed size makes the numbers comparable
across cameras: the raw variance of the Laplacian grows with resolution.

``sharpness``
    Variance of the 4-neighbour Laplacian of ``L`` (kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``),
    in squared grey levels (Pech-Pacheco et al., 2000). Below about 50: blurred; above
    about 200: sharp. Flat, featureless scenes (sky, a wall) score low too.
``brightness``
    Mean of ``L`` / 255, in 0..1 (0.5 is mid-grey).
``dark_clip`` / ``bright_clip``
    Fractions of pixels with ``L <= 4`` (crushed shadows) and ``L >= 251`` (blown
    highlights).
``exposure``
    ``under`` when brightness < 0.2 or dark_clip > 0.5, ``over`` when brightness > 0.8
    or bright_clip > 0.25, else ``ok``.
``noise``
    Standard deviation of the noise in grey levels, by Immerkaer's estimator (1996):
    ``sigma = sqrt(pi/2) / (6 (W-2) (H-2)) * sum |L * N|`` with
    ``N = [[1,-2,1],[-2,4,-2],[1,-2,1]]``, which cancels edges and smooth gradients so
    what remains is mostly noise. Measured at the analysis size, so it is the noise a
    viewer sees at that size, not the sensor's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ANALYSIS_SIDE", "Quality", "analysis_image", "exposure_label", "measure"]

ANALYSIS_SIDE = 512
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass(frozen=True, slots=True)
class Quality:
    """Quality measures of one image (see the module docstring for the formulas)."""

    sharpness: float
    brightness: float
    dark_clip: float
    bright_clip: float
    noise: float

    @property
    def exposure(self) -> str:
        """``under``, ``over`` or ``ok``."""
        return exposure_label(self.brightness, self.dark_clip, self.bright_clip)

    def as_dict(self) -> dict[str, Any]:
        """The measures and the exposure label as a plain dict."""
        return {**asdict(self), "exposure": self.exposure}


def exposure_label(brightness: float, dark_clip: float, bright_clip: float) -> str:
    """``under``, ``over`` or ``ok`` from the exposure measures."""
    if brightness < 0.2 or dark_clip > 0.5:
        return "under"
    if brightness > 0.8 or bright_clip > 0.25:
        return "over"
    return "ok"


def analysis_image(rgb: NDArray[np.uint8], side: int = ANALYSIS_SIDE) -> NDArray[np.uint8]:
    """``rgb`` scaled by area averaging so its long side is at most ``side``."""
    import cv2

    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)


def measure(image: NDArray[np.uint8]) -> Quality:
    """Quality of an analysis image (RGB ``[H, W, 3]`` uint8; see :func:`analysis_image`).

    Example:
        >>> flat = np.full((64, 64, 3), 128, np.uint8)
        >>> q = measure(flat)
        >>> (q.sharpness, round(q.brightness, 2), q.noise, q.exposure)
        (0.0, 0.5, 0.0, 'ok')
    """
    import cv2

    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(luma, cv2.CV_64F, ksize=1)
    sharpness = float(lap.var())
    mean = float(luma.mean())
    n = luma.size
    dark = float(np.count_nonzero(luma <= 4)) / n
    bright = float(np.count_nonzero(luma >= 251)) / n
    h, w = luma.shape
    noise = 0.0
    if h > 2 and w > 2:
        resp = cv2.filter2D(luma.astype(np.float32), -1, _NOISE_KERNEL,
                            borderType=cv2.BORDER_REPLICATE)[1:-1, 1:-1]
        noise = float(np.abs(resp, dtype=np.float64).sum() * math.sqrt(math.pi / 2)
                      / (6.0 * (w - 2) * (h - 2)))
    return Quality(sharpness=round(sharpness, 3), brightness=round(mean / 255.0, 4),
                   dark_clip=round(dark, 4), bright_clip=round(bright, 4),
                   noise=round(noise, 3))
