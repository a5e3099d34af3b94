"""Data for the retrain loop: a held-out set whose boxes are exactly where the tiny ONNX
detector puts its three boxes, so a model's quality there is known in advance.

``detforge.testing.tiny_onnx_model`` puts boxes at fixed places of its 64x64 input and,
with two classes, always scores class 1 highest. On 64x64 images labelled with those boxes
as class 1 (``square``), the model with classes ``(circle, square)`` scores AP near 1, and
the same network with the names swapped ``(square, circle)`` scores 0: two real models of
known, different quality, without training.
"""

from __future__ import annotations

from pathlib import Path

from detforge.testing import random_image, tiny_onnx_model, write_image

CLASSES = ("circle", "square")
BOXES = ((0.3, 0.3, 0.4, 0.4), (0.6, 0.5, 0.3, 0.5), (0.5, 0.7, 0.2, 0.3))
"""The tiny model's boxes, YOLO-normalised (cx, cy, w, h) on its 64x64 input."""


def holdout(root: Path, images: int = 8) -> Path:
    """A YOLO dataset (val split only) with the tiny model's boxes as ``square``."""
    for split in ("train", "val"):
        for i in range(images if split == "val" else 2):
            name = f"{split}_{i:03d}"
            write_image(root / "images" / split / f"{name}.png",
                        random_image(64, 64, seed=500 + i, shapes=0))
            label = root / "labels" / split / f"{name}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"1 {cx} {cy} {w} {h}\n" for cx, cy, w, h in BOXES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                                    f"names: {list(CLASSES)}\n")
    return root


def good_model(path: Path) -> Path:
    """The tiny detector named as the held-out set expects (AP near 1 there)."""
    return tiny_onnx_model(path, classes=CLASSES)


def bad_model(path: Path) -> Path:
    """The same network with its class names swapped (AP 0 there)."""
    return tiny_onnx_model(path, classes=CLASSES[::-1])
