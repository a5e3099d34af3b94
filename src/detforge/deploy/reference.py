"""Reference images and detections: what the workstation saw, for the on-target smoke test.

A bundle's ``reference/`` folder holds a few images (picked from the dataset's val split,
or synthetic ones drawn with PIL when no dataset is given) and ``detections.json``, the
detections the bundled ONNX gave for them on the workstation's CPU. ``deploy verify`` runs
the same images on the target and compares, box by box (same class, IoU >= 0.9), with
:func:`compare_detections`. ``reference/device/`` holds what nvinfer feeds the network for
each image and the objects it should get back (:func:`write_device_reference`), for the
on-device check that needs no detforge.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.atomic import atomic_write_json
from detforge.core.boxes import box_iou
from detforge.core.detections import Detections
from detforge.core.errors import ConfigError

__all__ = ["DETECTIONS_FILE", "DEVICE_DIR", "Comparison", "compare_detections", "copy_images",
           "load_reference", "read_rgb", "synthetic_images", "write_device_reference",
           "write_reference"]

DETECTIONS_FILE = "detections.json"


def synthetic_images(folder: Path, n: int, *, size: tuple[int, int] = (480, 640),
                     seed: int = 0) -> list[Path]:
    """Write ``n`` seeded PNG scenes (gradient background, filled shapes) to ``folder``.

    Args:
        folder: Output folder (created).
        n: Number of images.
        size: (height, width).
        seed: Random seed; the same seed writes the same pixels.

    Returns:
        The written files, in order.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    h, w = size
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        base = rng.integers(40, 200, 3)
        ramp = np.linspace(0, 50, w, dtype=np.float32)[None, :, None]
        pixels = np.clip(base[None, None, :] + ramp + rng.normal(0, 6, (h, w, 3)), 0, 255)
        img = Image.fromarray(pixels.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            bw, bh = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 10, h // 3))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + bw, y + bh), fill=colour)
        path = folder / f"ref_{i:03d}.png"
        img.save(path, format="PNG")
        files.append(path)
    return files


def copy_images(files: Sequence[Path], folder: Path) -> list[Path]:
    """Copy dataset images into ``folder`` as ``ref_000<suffix>``..., bytes unchanged (a copy,
    never a link: the dataset is never touched through the bundle)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(files):
        dst = folder / f"ref_{i:03d}{src.suffix.lower()}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def read_rgb(path: Path) -> NDArray[np.uint8]:
    """An image file as an RGB ``[H, W, 3]`` uint8 array (EXIF orientation not applied).

    Raises:
        ConfigError: The file is missing or not an image.
    """
    from PIL import UnidentifiedImageError

    from detforge.core.imageio import open_image

    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ConfigError(f"{path}: unreadable reference image ({exc}); rebuild the bundle "
                          f"with `detforge deploy bundle`") from exc


def write_reference(folder: Path, images: Sequence[Path], detections: Sequence[Detections], *,
                    model: str, thresholds: dict[str, Any]) -> Path:
    """Write ``detections.json`` for ``images`` (names relative to ``folder``).

    Returns:
        The JSON file.
    """
    records = []
    for path, det in zip(images, detections, strict=True):
        records.append({"file": path.name,
                        "xyxy": det.xyxy.astype(float).tolist(),
                        "scores": det.scores.astype(float).tolist(),
                        "class_ids": det.class_ids.astype(int).tolist()})
    out = folder / DETECTIONS_FILE
    atomic_write_json(out, {"model": model, "thresholds": thresholds, "images": records})
    return out


def load_reference(folder: Path) -> tuple[list[Path], list[Detections], dict[str, Any]]:
    """Read ``detections.json``: image paths, detections and the thresholds used.

    Raises:
        ConfigError: The file is missing or malformed.
    """
    path = folder / DETECTIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = [folder / r["file"] for r in data["images"]]
        dets = [Detections(xyxy=np.asarray(r["xyxy"], np.float32).reshape(-1, 4),
                           scores=np.asarray(r["scores"], np.float32),
                           class_ids=np.asarray(r["class_ids"], np.int32))
                for r in data["images"]]
        thresholds = dict(data["thresholds"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: unreadable reference detections ({exc}); rebuild the "
                          f"bundle with `detforge deploy bundle`") from exc
    return images, dets, thresholds


@dataclass(frozen=True)
class Comparison:
    """How detections on the target match the reference.

    Attributes:
        reference_boxes: Reference boxes compared.
        new_boxes: Boxes found on the target.
        matched: One-to-one matches (same class, IoU >= the threshold).
        missing: Reference boxes without a match, borderline ones excepted.
        extra: New boxes without a match, borderline ones excepted.
        max_score_diff: Largest score difference over matched pairs (0 with none).
        min_iou: Smallest IoU over matched pairs (1 with none).
    """

    reference_boxes: int
    new_boxes: int
    matched: int
    missing: int
    extra: int
    max_score_diff: float
    min_iou: float

    @property
    def agreement(self) -> float:
        """``matched / (matched + missing + extra)``; 1.0 when there is nothing to match."""
        total = self.matched + self.missing + self.extra
        return 1.0 if total == 0 else self.matched / total


def compare_detections(reference: Sequence[Detections], new: Sequence[Detections], *,
                       iou: float = 0.9, borderline: float = 0.0,
                       same_px: float = 0.5) -> Comparison:
    """Match each image's boxes one to one, greedily by reference score.

    A box scoring below ``borderline`` may match, but counts neither as missing nor as
    extra when it does not: a score within the tolerance of the threshold can legitimately
    cross it on another device.

    Args:
        reference: Detections recorded in the bundle.
        new: Detections on this device, same images in the same order.
        iou: Smallest IoU for a match (same class required).
        borderline: Score under which an unmatched box is not counted.
        same_px: Boxes whose coordinates all lie within this many pixels match whatever
            their IoU (boxes clipped to zero width at the image edge have IoU 0).

    Returns:
        The :class:`Comparison`.

    Raises:
        ConfigError: The sequences differ in length.

    Example:
        >>> d = Detections(xyxy=np.array([[0, 0, 10, 10]], np.float32),
        ...                scores=np.array([0.9], np.float32), class_ids=np.array([0], np.int32))
        >>> compare_detections([d], [d]).agreement
        1.0
    """
    if len(reference) != len(new):
        raise ConfigError(f"{len(reference)} reference images but {len(new)} results")
    n_ref = n_new = matched = missing = extra = 0
    max_diff, min_iou = 0.0, 1.0
    for ref, got in zip(reference, new, strict=True):
        n_ref += len(ref)
        n_new += len(got)
        used_ref = np.zeros(len(ref), bool)
        used_new = np.zeros(len(got), bool)
        if len(ref) and len(got):
            m = box_iou(ref.xyxy, got.xyxy)
            near = np.abs(ref.xyxy[:, None, :] - got.xyxy[None, :, :]).max(-1) <= same_px
            m[near] = 1.0  # also matches boxes of zero area, whose IoU is 0 even with themselves
            m[ref.class_ids[:, None] != got.class_ids[None, :]] = 0
            for i in np.argsort(-ref.scores, kind="stable"):
                j = int(np.argmax(m[i]))
                if m[i, j] >= iou:
                    matched += 1
                    used_ref[i] = used_new[j] = True
                    max_diff = max(max_diff, abs(float(ref.scores[i]) - float(got.scores[j])))
                    min_iou = min(min_iou, float(m[i, j]))
                    m[:, j] = 0
        missing += int(np.count_nonzero(~used_ref & (ref.scores >= borderline)))
        extra += int(np.count_nonzero(~used_new & (got.scores >= borderline)))
    return Comparison(n_ref, n_new, matched, missing, extra, max_diff, min_iou)


DEVICE_DIR = "device"
DEVICE_FORMAT = "detforge-device-reference/1"


def write_device_reference(folder: Path, pixels: Sequence[NDArray[np.uint8]],
                           objects: Sequence[NDArray[np.float32]], *, sources: Sequence[Path],
                           input_name: str, output_name: str, scale: float,
                           offsets: Sequence[float], thresholds: dict[str, Any]) -> Path:
    """Write ``device/``: what nvinfer feeds the network for each reference image, and the
    objects the parser and nvinfer's clustering return on the workstation's model, for
    verify_on_device.py to compare an engine against.

    Args:
        folder: The ``reference/`` folder.
        pixels: Per image, the scaled and padded ``[H, W, 3]`` uint8 network picture, in
            the model's colour order.
        objects: Per image, ``[M, 6]`` rows of class, left, top, width, height, confidence
            in network pixels.
        sources: The reference images they came from.
        input_name: The network input's name.
        output_name: The detection output's name.
        scale: net-scale-factor.
        offsets: Per-channel offsets.
        thresholds: pre_cluster, post_cluster, nms_iou, topk, num_classes.

    Returns:
        ``device/expected.json``.
    """
    out = folder / DEVICE_DIR
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (pix, objs, src) in enumerate(zip(pixels, objects, sources, strict=True)):
        name = f"input_{i:03d}.npy"
        np.save(out / name, np.ascontiguousarray(pix, np.uint8), allow_pickle=False)
        records.append({"source": src.name, "input": name,
                        "objects": np.asarray(objs, np.float32).round(4).tolist()})
    h, w = pixels[0].shape[:2] if pixels else (0, 0)
    path = out / "expected.json"
    atomic_write_json(path, {"format": DEVICE_FORMAT,
                             "input": {"name": input_name, "shape": [3, int(h), int(w)],
                                       "net_scale_factor": scale, "offsets": list(offsets)},
                             "output": {"name": output_name, "layout": "deepstream"},
                             "thresholds": thresholds, "images": records})
    return path
