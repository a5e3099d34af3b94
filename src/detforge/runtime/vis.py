"""Annotated output: boxes drawn on images (one file per image) and videos (one per source)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_bytes
from detforge.core.detections import Detections

if TYPE_CHECKING:
    from detforge.runtime.sinks import Prediction

__all__ = ["VisSink", "draw_detections"]


def _colour(class_id: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(class_id * 7919 + 17)
    r, g, b = (int(v) for v in rng.integers(64, 256, 3))
    return r, g, b


def draw_detections(image: NDArray[np.uint8], detections: Detections,
                    classes: Sequence[str]) -> NDArray[np.uint8]:
    """A copy of the RGB ``image`` with boxes and ``class score`` labels drawn.

    Args:
        image: RGB ``[H, W, 3]`` uint8.
        detections: In the image's pixels.
        classes: Class names.

    Returns:
        The annotated RGB image.
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    thick = max(1, round(min(out.shape[:2]) / 300))
    for i in range(len(detections)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.xyxy[i])
        cid = int(detections.class_ids[i])
        colour = _colour(cid)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = f"{classes[cid] if 0 <= cid < len(classes) else cid} "
        label += f"{float(detections.scores[i]):.2f}"
        if detections.track_ids is not None:
            label = f"#{int(detections.track_ids[i])} " + label
        cv2.putText(out, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, colour, thick, cv2.LINE_AA)
    return out


class VisSink:
    """Writes annotated images (``DIR/<name>.jpg``) and videos (``DIR/<video stem>.mp4``).

    Args:
        out_dir: Output folder (created).
        classes: Class names.
        fps: Frame rate of annotated videos (default: the source's, else 10).
    """

    needs_image = True

    def __init__(self, out_dir: str | Path, classes: Sequence[str], *,
                 fps: float | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.classes = tuple(classes)
        self.fps = fps
        self._videos: dict[str, Any] = {}
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, n = name, 1
        while candidate in self._names:
            candidate = f"{stem}_{n}{suffix}"
            n += 1
        self._names.add(candidate)
        return candidate

    def write(self, prediction: Prediction) -> None:
        """Draw and write one image, or append one frame to its source's video."""
        import cv2

        if prediction.image is None:
            return
        bgr = draw_detections(prediction.image, prediction.detections, self.classes)[..., ::-1]
        bgr = np.ascontiguousarray(bgr)
        if prediction.frame is None:
            ok, buf = cv2.imencode(".jpg", bgr)
            if ok:
                name = self._unique(Path(prediction.source).stem + ".jpg")
                atomic_write_bytes(self.out_dir / name, buf.tobytes())
            return
        writer = self._videos.get(prediction.source)
        if writer is None:
            fps = self.fps or _source_fps(prediction.source) or 10.0
            name = self._unique(Path(prediction.source).stem + ".mp4")
            writer = cv2.VideoWriter(str(self.out_dir / name), cv2.VideoWriter.fourcc(*"mp4v"),
                                     fps, (prediction.width, prediction.height))
            self._videos[prediction.source] = writer
        writer.write(bgr)

    def close(self) -> None:
        """Finish every video."""
        for writer in self._videos.values():
            writer.release()
        self._videos.clear()

    def abort(self) -> None:
        """Finish every video (annotated files are per image: what was drawn stays)."""
        self.close()


def _source_fps(source: str) -> float | None:
    import cv2

    cap = cv2.VideoCapture(source)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if fps > 0 else None
