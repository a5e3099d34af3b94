"""A seeded generator of small synthetic detection datasets (no download ever needed).

Each image is a textured background (noise, gradient or stripes in muted colours) with
1-8 saturated, outlined shapes. A class is a *shape* (circle, square, triangle, star,
cross, ring, diamond, hexagon, frame, half disc); with more classes than shapes, classes
sharing a shape are told apart by disjoint hue bands. Objects range from about 12 px to
half the image side, so COCO small, medium and large areas all occur, and later shapes
may partly cover earlier ones (each box is the full extent of its object, the usual
convention). About ``empty_fraction`` of the images hold no object.

Generation is deterministic: image ``i`` is drawn from ``numpy.random.default_rng([seed,
i])`` and encoded as JPEG at a fixed quality, so the same seed gives byte-identical
images and labels. Boxes have integer pixel coordinates, so every format round trip is
exact.

Example:
    >>> from detforge.data.synth import synthesize
    >>> ds = synthesize("demo-ds", images=64, classes=3, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from tqdm import tqdm

from detforge.core.classes import ClassMap
from detforge.core.errors import ConfigError
from detforge.data.dataset import BoxTable, Dataset, ImageTable

__all__ = ["MAX_CLASSES", "SHAPES", "SPLIT_NAMES", "class_names", "generate", "parse_ratios",
           "parse_size", "synthesize"]

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon",
          "frame", "half_disc")
"""Shape of class ``k`` is ``SHAPES[k % len(SHAPES)]``."""

MAX_HUE_BANDS = 6
MAX_CLASSES = len(SHAPES) * MAX_HUE_BANDS
SPLIT_NAMES = ("train", "val", "test")
JPEG_QUALITY = 90
_MIN_SIDE_320 = 14.0  # smallest object size at 320 px; its shorter side is ~12 px
_MAX_COVER = 0.4  # a new shape may cover at most this fraction of an earlier box
_ROTATING = frozenset({"triangle", "star", "cross", "hexagon", "half_disc"})

Rng = np.random.Generator


def _unit_polygon(shape: str) -> NDArray[np.float64]:
    """Vertices of ``shape`` in the unit square [-1, 1]^2 (not for circle/ring/frame)."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    if shape == "diamond":
        return np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], np.float64)
    if shape == "triangle":
        return np.array([[0, -1], [1, 1], [-1, 1]], np.float64)
    if shape == "cross":
        a = 0.33
        return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                         [-a, a], [-1, a], [-1, -a], [-a, -a]], np.float64)
    if shape in ("star", "hexagon", "half_disc"):
        if shape == "star":
            t = -np.pi / 2 + np.arange(10) * np.pi / 5
            r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        elif shape == "hexagon":
            t, r = np.arange(6) * np.pi / 3, np.ones(6)
        else:
            t, r = np.linspace(np.pi, 2 * np.pi, 17), np.ones(17)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        if shape == "half_disc":  # flat side down, stretched to fill the unit square
            pts[:, 1] = pts[:, 1] * 2 + 1
        return pts
    raise ConfigError(f"no polygon for shape {shape!r}; valid shapes: {list(SHAPES)}")


_POLYGONS = {s: _unit_polygon(s) for s in SHAPES if s not in ("circle", "ring", "frame")}


@dataclass(frozen=True)
class _Palette:
    """Colour rules: hue band per class when several classes share a shape."""

    num_classes: int

    @property
    def bands(self) -> int:
        return max(1, math.ceil(self.num_classes / len(SHAPES)))

    def colour(self, rng: Rng, class_id: int) -> tuple[int, int, int]:
        if self.bands == 1:
            hue = rng.random()
        else:
            band = class_id // len(SHAPES)
            hue = (band + 0.15 + 0.7 * rng.random()) / self.bands
        return _hsv(hue, 0.6 + 0.4 * rng.random(), 0.6 + 0.4 * rng.random())


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def class_names(num_classes: int) -> list[str]:
    """Class names for ``num_classes`` classes: shapes, then shapes with a hue-band suffix."""
    names = []
    for k in range(num_classes):
        band = k // len(SHAPES)
        names.append(SHAPES[k % len(SHAPES)] + ("" if band == 0 else str(band + 1)))
    return names


def _background(rng: Rng, width: int, height: int) -> Image.Image:
    """A muted textured background: blotchy noise, a gradient or stripes."""
    base = np.array(_hsv(rng.random(), 0.3 * rng.random(), 0.3 + 0.5 * rng.random()),
                    np.float32)
    kind = int(rng.integers(3))
    if kind == 0:  # blotches: coarse noise blown up to the image size
        coarse = rng.random((max(2, height // 16), max(2, width // 16)), dtype=np.float32)
        field = np.asarray(Image.fromarray(coarse * 2 - 1, "F").resize(
            (width, height), Image.Resampling.NEAREST))
        delta = rng.uniform(15, 40, 3).astype(np.float32)
    else:  # a linear ramp along a random direction, used as a gradient or as stripes
        angle = rng.random() * np.pi
        xs = np.arange(width, dtype=np.float32) * np.float32(math.cos(angle))
        ys = np.arange(height, dtype=np.float32) * np.float32(math.sin(angle))
        proj = ys[:, None] + xs[None, :]
        if kind == 1:
            lo, hi = float(proj.min()), float(proj.max())
            field = (proj - np.float32(lo)) * np.float32(1 / max(hi - lo, 1.0))
            other = np.array(_hsv(rng.random(), 0.3 * rng.random(), 0.3 + 0.5 * rng.random()),
                             np.float32)
            delta = other - base
        else:
            period = float(rng.uniform(8, 40)) * max(width, height) / 320
            field = np.sin(proj * np.float32(2 * np.pi / period))
            delta = np.full(3, rng.uniform(15, 35), np.float32)
    noise = rng.random((height, width), dtype=np.float32) * np.float32(16) - np.float32(8)
    bands = []
    for c in range(3):  # per channel: (H, W) arithmetic is far faster than (H, W, 3)
        chan = field * delta[c] + noise + base[c]
        np.clip(chan, 0, 255, out=chan)
        bands.append(Image.fromarray(chan.astype(np.uint8), "L"))
    return Image.merge("RGB", bands)


def _draw(draw: ImageDraw.ImageDraw, rng: Rng, shape: str, box: NDArray[np.int64],
          fill: tuple[int, int, int]) -> NDArray[np.int64]:
    """Draw ``shape`` inside ``box`` (x1, y1, x2, y2 inclusive); return its extent box."""
    x1, y1, x2, y2 = (int(v) for v in box)
    edge = tuple(c // 2 for c in fill)
    w, h = x2 - x1, y2 - y1
    width = max(1, round(0.22 * min(w, h)))
    if shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=fill, outline=edge)
    elif shape == "ring":
        draw.ellipse((x1, y1, x2, y2), outline=fill, width=width)
    elif shape == "frame":
        draw.rectangle((x1, y1, x2, y2), outline=fill, width=width)
    else:
        pts = _POLYGONS[shape].copy()
        if shape in _ROTATING:
            a = math.radians(float(rng.uniform(-15, 15)))
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            pts = pts @ rot.T
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            pts = (pts - lo) / (hi - lo) * 2 - 1  # stretch back to fill the box
        xy = (pts + 1) / 2 * np.array([w, h]) + np.array([x1, y1])
        xy = np.rint(xy)
        draw.polygon([tuple(p) for p in xy.tolist()], fill=fill, outline=edge)
        x1, y1 = (int(v) for v in xy.min(axis=0))
        x2, y2 = (int(v) for v in xy.max(axis=0))
    return np.array([x1, y1, x2 + 1, y2 + 1], np.int64)


def _place(rng: Rng, width: int, height: int, placed: list[NDArray[np.int64]]
           ) -> NDArray[np.int64] | None:
    """A random box that covers at most ``_MAX_COVER`` of any earlier box, or None."""
    scale = min(width, height) / 320
    lo, hi = math.log(_MIN_SIDE_320 * scale), math.log(0.55 * min(width, height))
    for _ in range(20):
        side = math.exp(rng.uniform(lo, hi))
        aspect = math.sqrt(float(rng.uniform(0.75, 1.33)))
        w, h = max(2, round(side * aspect)), max(2, round(side / aspect))
        if w >= width or h >= height:
            continue
        x1, y1 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = np.array([x1, y1, x1 + w - 1, y1 + h - 1], np.int64)
        if all(_covered(p, box) <= _MAX_COVER for p in placed):
            return box
    return None


def _covered(old: NDArray[np.int64], new: NDArray[np.int64]) -> float:
    iw = min(old[2], new[2]) - max(old[0], new[0])
    ih = min(old[3], new[3]) - max(old[1], new[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih) / float((old[2] - old[0]) * (old[3] - old[1]))


def _render(seed: int, index: int, size: tuple[int, int], num_classes: int, empty: bool
            ) -> tuple[bytes, NDArray[np.int64], NDArray[np.int32]]:
    """JPEG bytes, boxes [n, 4] and class ids of image ``index``."""
    rng = np.random.default_rng([seed, index])
    width, height = size
    img = _background(rng, width, height)
    draw = ImageDraw.Draw(img)
    palette = _Palette(num_classes)
    boxes: list[NDArray[np.int64]] = []
    classes: list[int] = []
    placed: list[NDArray[np.int64]] = []
    for _ in range(0 if empty else int(rng.integers(1, 9))):
        box = _place(rng, width, height, placed)
        if box is None:
            continue
        placed.append(box)
        k = int(rng.integers(num_classes))
        boxes.append(_draw(draw, rng, SHAPES[k % len(SHAPES)], box, palette.colour(rng, k)))
        classes.append(k)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    xyxy = np.array(boxes, np.int64).reshape(-1, 4)
    return buf.getvalue(), xyxy, np.array(classes, np.int32)


def _assign(n: int, rng: Rng, ratios: Sequence[float]) -> list[str]:
    """Split names for ``n`` images: exact counts from ``ratios``, seeded order."""
    counts = [int(math.floor(r * n + 0.5)) for r in ratios]
    counts[0] = n - sum(counts[1:])
    labels = np.repeat(np.array(SPLIT_NAMES[:len(ratios)], dtype=object), counts)
    return [str(s) for s in labels[rng.permutation(n)]]


def _check(images: int, classes: int, size: tuple[int, int], empty_fraction: float,
           splits: Sequence[float] | None) -> None:
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    if not 1 <= classes <= MAX_CLASSES:
        raise ConfigError(f"--classes must be between 1 and {MAX_CLASSES}, got {classes}")
    if min(size) < 64:
        raise ConfigError(f"--size must be at least 64,64 so shapes fit, got {size}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise ConfigError(f"empty_fraction must be in [0, 1], got {empty_fraction}")
    if splits is not None:
        if not 1 <= len(splits) <= 3 or min(splits) < 0 or abs(sum(splits) - 1) > 1e-6:
            raise ConfigError(f"split ratios {list(splits)} must be 1-3 non-negative numbers "
                              "(train,val[,test]) that sum to 1, e.g. 0.8,0.2")


def generate(root: str | Path, *, images: int = 100, classes: int = 3, seed: int = 0,
             size: tuple[int, int] = (320, 320), empty_fraction: float = 0.05,
             splits: Sequence[float] | None = (0.8, 0.2)) -> Dataset:
    """Render images into ``root`` (flat, ``synth_000000.jpg``...) and return the dataset.

    This writes only the images; :func:`synthesize` also writes labels in a format.

    Args:
        root: Folder for the JPEG files (created).
        images: Number of images.
        classes: Number of classes (1 to ``MAX_CLASSES``).
        seed: Seed; the same seed gives identical images and boxes.
        size: Image (width, height) in pixels.
        empty_fraction: Fraction of images without objects (rounded to a count).
        splits: Train/val[/test] ratios, or None to leave images unassigned.

    Returns:
        The in-memory dataset, ``root`` set to ``root``.

    Raises:
        ConfigError: An argument is out of range.
    """
    _check(images, classes, size, empty_fraction, splits)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, 2**32 - 1]).permutation(images)
    empty = np.zeros(images, bool)
    empty[order[:int(math.floor(empty_fraction * images + 0.5))]] = True
    files, tables = [], []
    for i in tqdm(range(images), desc="synth", unit="img", disable=None, leave=False):
        data, xyxy, cls = _render(seed, i, size, classes, bool(empty[i]))
        files.append(f"synth_{i:06d}.jpg")
        with open(root / files[-1], "wb") as fh:
            fh.write(data)
        tables.append(BoxTable.build(np.full(len(cls), i), xyxy, cls))
    split = (None if splits is None else
             _assign(images, np.random.default_rng([seed, 2**32 - 2]), splits))
    table = ImageTable.build(files, np.full(images, size[0]), np.full(images, size[1]),
                             split=split)
    info = {"name": "synth", "licence": "CC0-1.0",
            "source": f"detforge synth --images {images} --classes {classes} --seed {seed} "
                      f"--size {size[0]},{size[1]}"}
    return Dataset(ClassMap.from_names(class_names(classes)), table, BoxTable.concat(tables),
                   root=root, info=info)


def synthesize(out: str | Path, *, images: int = 100, classes: int = 3, seed: int = 0,
               size: tuple[int, int] = (320, 320), fmt: str = "yolo",
               empty_fraction: float = 0.05,
               splits: Sequence[float] | None = (0.8, 0.2)) -> Dataset:
    """Generate a synthetic dataset and write it to ``out`` in format ``fmt``.

    Images are rendered into a hidden sibling folder and linked into ``out`` by the
    format writer; if anything fails, ``out`` is removed again (it was empty before).

    Args:
        out: Output folder; must not exist or be empty.
        images: Number of images.
        classes: Number of classes (1 to ``MAX_CLASSES``).
        seed: Seed; the same seed gives byte-identical images and label files.
        size: Image (width, height) in pixels.
        fmt: Output format: ``yolo``, ``coco``, ``voc`` or ``kitti``.
        empty_fraction: Fraction of images without objects.
        splits: Train/val[/test] ratios (default 0.8/0.2), or None for no splits. With no
            val images, a YOLO ``data.yaml``'s ``val:`` names the training images.

    Returns:
        The dataset as read back from ``out``.

    Raises:
        ConfigError: An argument is out of range, the format is unknown, or ``out``
            exists and is not empty.

    Example:
        >>> ds = synthesize("ds", images=32, classes=3, seed=1, fmt="coco")  # doctest: +SKIP
    """
    from detforge.data.formats import WriteOptions, get_format, read_dataset, write_dataset

    out = Path(out)
    get_format(fmt)  # fail on an unknown format before rendering anything
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not empty; choose a new folder or "
                          "delete it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        staged = generate(tmp, images=images, classes=classes, seed=seed, size=size,
                          empty_fraction=empty_fraction, splits=splits)
        # Written in place (not renamed) because formats such as YOLO record their path.
        # With no val images (no splits, or too few images), a YOLO data.yaml validates on
        # the training images (documented).
        write_dataset(staged, out, fmt, options=WriteOptions(val_split="train"))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ds = read_dataset(out, fmt)
    ds.info.update({k: v for k, v in staged.info.items() if k not in ds.info})
    return ds


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"W,H"`` (or ``"WxH"``, or one number for a square) into (width, height).

    Raises:
        ConfigError: The text is not one or two positive integers.
    """
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise ConfigError(f"size {text!r} must be W,H in pixels, e.g. 320,320")
    return (values[0], values[-1])


def parse_ratios(text: str) -> tuple[float, ...]:
    """Parse ``"0.8,0.2"`` or ``"0.8,0.1,0.1"`` into split ratios (train, val[, test]).

    Raises:
        ConfigError: The text is not 1-3 non-negative numbers summing to 1.
    """
    try:
        ratios = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(f"split ratios {text!r} must be numbers, e.g. 0.8,0.2") from None
    _check(1, 1, (64, 64), 0.0, ratios)
    return ratios
