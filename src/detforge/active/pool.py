"""The unlabelled pool: its images, their hashes, what was skipped, and what is a duplicate.

A pool is any input ``detforge predict`` takes that names images: a folder (recursive), a
glob or a list file. Each image is read once (in threads) by the same probe as ``detforge
data validate``: SHA-256 of the bytes, size, 64-bit perceptual hash. Unreadable, truncated
and missing files are recorded with the reason and skipped; so are videos (sample their
frames into a folder first) and images with an EXIF orientation other than upright (the
runtime and the labelling tools' browsers show them rotated, while detforge datasets keep
the stored pixels, so boxes would land in the wrong frame). Every image is known by its
*key*: its path relative to the pool root, with ``/`` separators, which is also its name in
the exported labelling tasks.

Two kinds of images never reach a strategy:

* near duplicates of an image already labelled (``exclude``): same bytes, or perceptual
  hashes at most ``max_bits`` apart;
* all but one of each group of near duplicates inside the pool: the group's first image by
  key stands for it, so the same picture is never picked (or labelled) twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.active.diversity import NEAR_DUPLICATE_BITS, duplicate_groups, near_duplicates_of
from detforge.core.errors import ConfigError
from detforge.data.dataset import Dataset

__all__ = ["Pool", "PoolImage", "Skipped", "dataset_pool", "scan_pool"]


@dataclass(frozen=True, slots=True)
class PoolImage:
    """One readable pool image.

    Attributes:
        key: Path relative to the pool root, ``/``-separated (its name in exports).
        path: The file.
        width: Stored width in pixels.
        height: Stored height in pixels.
        sha256: SHA-256 of the bytes.
        phash: 64-bit perceptual hash.
    """

    key: str
    path: Path
    width: int
    height: int
    sha256: str
    phash: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A pool file left out, and why."""

    key: str
    reason: str


@dataclass
class Pool:
    """The images of a pool and how they relate.

    Attributes:
        spec: What the pool was opened from.
        root: Folder the keys are relative to.
        images: Readable images, sorted by key.
        skipped: Files that could not be used, with the reason.
        duplicate_of: ``{row: representative row}`` for pool images that near-duplicate an
            earlier one (by key); only representatives are scored and selected.
        labelled_duplicate_of: ``{row: labelled image}`` for pool images that near-duplicate
            an image of the ``exclude`` dataset.
        labelled: ``(path, perceptual hash)`` of each readable image of that dataset (the
            covered ground k-center starts from).
    """

    spec: str
    root: Path
    images: list[PoolImage]
    skipped: list[Skipped] = field(default_factory=list)
    duplicate_of: dict[int, int] = field(default_factory=dict)
    labelled_duplicate_of: dict[int, str] = field(default_factory=dict)
    labelled: list[tuple[Path, int]] = field(default_factory=list)

    @property
    def candidates(self) -> NDArray[np.intp]:
        """Rows a strategy may pick: representatives that duplicate nothing labelled."""
        out = [i for i in range(len(self.images))
               if i not in self.duplicate_of and i not in self.labelled_duplicate_of]
        return np.asarray(out, np.intp)

    def exclude(self, dataset: Dataset, *, max_bits: int = NEAR_DUPLICATE_BITS,
                progress: bool = True) -> None:
        """Mark pool images that near-duplicate an image of ``dataset`` (already labelled).

        Args:
            dataset: The labelled dataset; its images are read from ``dataset.root``.
            max_bits: Perceptual-hash distance that counts as a duplicate.
            progress: Show a progress bar while hashing the dataset's images.
        """
        from detforge.data.validate.images import probe_images

        probes = probe_images(dataset, progress=progress)
        self.mark_labelled(dataset, range(dataset.num_images), probes, max_bits=max_bits)

    def mark_labelled(self, dataset: Dataset, rows: Iterable[int], probes: Sequence[Any], *,
                      max_bits: int = NEAR_DUPLICATE_BITS) -> None:
        """Record ``rows`` of ``dataset`` as labelled and mark the pool's duplicates of them.

        Args:
            dataset: The labelled dataset.
            rows: Its labelled image rows.
            probes: Probes of the dataset's images (indexed by row).
            max_bits: Perceptual-hash distance that counts as a duplicate.
        """
        ok = [r for r in rows if probes[r].status == "ok"]
        by_sha = {probes[r].sha256: r for r in ok}
        found = {i: str(dataset.images.file[by_sha[im.sha256]])
                 for i, im in enumerate(self.images) if im.sha256 in by_sha}
        near = near_duplicates_of([im.phash for im in self.images],
                                  [probes[r].phash for r in ok], max_bits=max_bits)
        for i, ref in near.items():
            found.setdefault(i, str(dataset.images.file[ok[ref]]))
        self.labelled_duplicate_of = dict(sorted(found.items()))
        self.labelled = [(dataset.image_path(r), probes[r].phash) for r in ok]


def _orientation(path: Path) -> int:
    """The EXIF orientation tag of an image (1, upright, when absent or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except (OSError, ValueError, SyntaxError):
        return 1


def _duplicates(images: list[PoolImage], max_bits: int) -> dict[int, int]:
    groups = duplicate_groups([im.phash for im in images], [im.sha256 for im in images],
                              max_bits=max_bits)
    return {i: int(g) for i, g in enumerate(groups.tolist()) if g != i}


def _root_of(spec: str, files: list[Path]) -> Path:
    path = Path(spec)
    if path.is_dir():
        return path
    if not files:
        return path.parent
    return Path(os.path.commonpath([str(f.parent.resolve()) for f in files]))


def _key(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def scan_pool(spec: str | Path, *, max_bits: int = NEAR_DUPLICATE_BITS, progress: bool = True,
              workers: int | None = None) -> Pool:
    """List and probe the images of a pool, and group its near duplicates.

    Args:
        spec: A folder, a glob or a list file of images.
        max_bits: Perceptual-hash distance that counts as a near duplicate (-1: exact only).
        progress: Show a progress bar.
        workers: Reading threads (default: CPU count, at most 8).

    Returns:
        The pool.

    Raises:
        ConfigError: ``spec`` names no file, or no image in it can be read.

    Example:
        >>> pool = scan_pool("unlabelled/")  # doctest: +SKIP
        >>> len(pool.images), len(pool.skipped)  # doctest: +SKIP
        (480, 3)
    """
    from tqdm import tqdm

    from detforge.data.validate.images import probe_image
    from detforge.runtime.sources import open_source

    source = open_source(spec)
    skipped = [Skipped(s.source, s.reason) for s in source.skipped]
    files = [Path(t) for kind, t in source.entries if kind == "image"]
    root = _root_of(str(spec), files)
    for kind, target in source.entries:
        if kind != "image":
            skipped.append(Skipped(_key(Path(target), root), f"a {kind}, not an image; sample "
                                   "its frames into a folder of images first"))
    keyed = sorted({_key(f, root): f for f in files}.items())
    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        probes = list(tqdm(pool.map(probe_image, [f for _, f in keyed]), total=len(keyed),
                           desc="reading pool", unit="img", disable=not progress, leave=False))
    images: list[PoolImage] = []
    for (key, path), p in zip(keyed, probes, strict=True):
        if p.status != "ok":
            skipped.append(Skipped(key, f"{p.status}: {p.error}"))
            continue
        turn = _orientation(path)
        if turn != 1:
            skipped.append(Skipped(key, f"EXIF orientation {turn}: browsers and the runtime "
                                        "show it rotated, detforge datasets keep the stored "
                                        "pixels; save it rotated first (e.g. mogrify "
                                        "-auto-orient)"))
            continue
        images.append(PoolImage(key, path.absolute(), p.width, p.height, p.sha256, p.phash))
    if not images:
        raise ConfigError(f"pool {spec}: none of its {len(keyed)} image file(s) can be read "
                          f"({len(skipped)} skipped); check the path and the files")
    return Pool(str(spec), root, images, sorted(skipped, key=lambda s: s.key),
                _duplicates(images, max_bits))


def dataset_pool(dataset: Dataset, rows: NDArray[np.intp], labelled: NDArray[np.intp], probes:
                 list[Any], *, max_bits: int = NEAR_DUPLICATE_BITS) -> Pool:
    """A pool made of some images of a labelled dataset (for simulations), the others labelled.

    Args:
        dataset: The dataset (image paths resolved against its root).
        rows: Its image rows that form the pool (labels hidden).
        labelled: Its image rows counted as labelled (near duplicates of them are excluded).
        probes: :func:`~detforge.data.validate.images.probe_images` of the whole dataset.
        max_bits: Perceptual-hash distance of near duplicates.

    Returns:
        The pool; keys are the dataset's ``file`` values, unreadable rows are skipped.
    """
    images, skipped = [], []
    for r in rows.tolist():
        p, key = probes[r], str(dataset.images.file[r])
        if p.status != "ok":
            skipped.append(Skipped(key, f"{p.status}: {p.error}"))
            continue
        images.append(PoolImage(key, dataset.image_path(r), p.width, p.height, p.sha256,
                                p.phash))
    pool = Pool(str(dataset.root), dataset.root or Path("."), images, skipped,
                _duplicates(images, max_bits))
    pool.mark_labelled(dataset, labelled.tolist(), probes, max_bits=max_bits)
    return pool
