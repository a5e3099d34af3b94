"""The Detections type: boxes, scores and classes for one image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import InvalidDetectionsError

__all__ = ["Detections"]


@dataclass(frozen=True, eq=False, slots=True)
class Detections:
    """Detections for one image, in original-image pixel coordinates.

    Attributes:
        xyxy: ``[N, 4]`` float32 boxes (x1, y1, x2, y2) in pixels of the original image.
        scores: ``[N]`` float32 confidences in [0, 1].
        class_ids: ``[N]`` int32 class indices into the model's class list.
        track_ids: ``[N]`` int64 track ids, or None when not tracked.

    Example:
        >>> d = Detections.empty()
        >>> len(d)
        0
    """

    xyxy: NDArray[np.float32]
    scores: NDArray[np.float32]
    class_ids: NDArray[np.int32]
    track_ids: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape != (n, 4):
            raise InvalidDetectionsError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("scores", "class_ids"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise InvalidDetectionsError(f"{name} must have shape ({n},), got {arr.shape}")
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise InvalidDetectionsError(
                f"track_ids must have shape ({n},), got {self.track_ids.shape}")
        if self.xyxy.dtype != np.float32:
            raise InvalidDetectionsError(f"xyxy must be float32, got {self.xyxy.dtype}")
        if self.scores.dtype != np.float32:
            raise InvalidDetectionsError(f"scores must be float32, got {self.scores.dtype}")
        if self.class_ids.dtype != np.int32:
            raise InvalidDetectionsError(f"class_ids must be int32, got {self.class_ids.dtype}")

    @classmethod
    def from_arrays(cls, xyxy: Any, scores: Any, class_ids: Any,
                    track_ids: Any | None = None) -> Detections:
        """Build from array-likes, converting dtypes."""
        box = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        return cls(box, np.asarray(scores, dtype=np.float32).reshape(-1),
                   np.asarray(class_ids, dtype=np.int32).reshape(-1),
                   None if track_ids is None else np.asarray(track_ids, np.int64).reshape(-1))

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def concat(cls, items: Sequence[Detections]) -> Detections:
        """Concatenate detections; track ids are kept only if every item has them."""
        if not items:
            return cls.empty()
        tracks = None
        if all(d.track_ids is not None for d in items):
            tracks = np.concatenate([d.track_ids for d in items if d.track_ids is not None])
        return cls(np.concatenate([d.xyxy for d in items]),
                   np.concatenate([d.scores for d in items]),
                   np.concatenate([d.class_ids for d in items]), tracks)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | NDArray[Any] | Sequence[int]) -> Detections:
        """Select by boolean mask, integer indices or slice; returns a new Detections.

        An integer selects one detection (negative counts from the end) and keeps the
        result a Detections of length 1.

        Raises:
            IndexError: An integer index (or one of the indices) is out of range, or a
                boolean mask does not have one entry per detection.

        Example:
            >>> d = Detections.from_arrays([[0, 0, 2, 2], [1, 1, 3, 3]], [0.9, 0.5], [0, 1])
            >>> len(d[-1]), float(d[-1].scores[0])
            (1, 0.5)
        """
        if isinstance(index, int | np.integer) and not isinstance(index, bool):
            n = len(self)
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"detection index {i} is out of range for {n} detections")
            index = slice(i % n, i % n + 1)
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index],
                          None if self.track_ids is None else self.track_ids[index])

    def equals(self, other: Detections, *, atol: float = 0.0) -> bool:
        """True when both hold the same detections, boxes within ``atol``."""
        if len(self) != len(other):
            return False
        if (self.track_ids is None) != (other.track_ids is None):
            return False
        same = (np.allclose(self.xyxy, other.xyxy, atol=atol, rtol=0)
                and np.allclose(self.scores, other.scores, atol=atol, rtol=0)
                and np.array_equal(self.class_ids, other.class_ids))
        if self.track_ids is not None and other.track_ids is not None:
            same = same and np.array_equal(self.track_ids, other.track_ids)
        return bool(same)
