"""Deterministic, stratified, group-aware train/val(/test) splitting.

``split_dataset`` assigns every image to a split so that

* the same seed gives the same split whatever order the files were listed in,
* every class appears in every split when it has enough groups of images to do so, and
  class frequencies follow the requested ratios (iterative stratification),
* images of one group (the video a frame came from, the same scene...) never cross splits,
* images without boxes are distributed too, to keep the image ratios.

Example::

    result = split_dataset(ds, ratios=(0.8, 0.2), seed=0, group_by=r"^(vid\\d+)_")
    print(format_split_report(result.report))
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import Dataset
from detforge.data.formats.policy import WriteOptions
from detforge.data.images import image_key
from detforge.data.report import text_table

__all__ = ["SPLIT_NAMES", "SplitReport", "SplitResult", "check_ratios", "format_split_report",
           "image_groups", "image_keys", "parse_ratios", "sorted_unique", "split_dataset",
           "split_dataset_files"]

SPLIT_NAMES = ("train", "val", "test")
_TOL = 1e-6
_RATIOS_HINT = "give 2 or 3 fractions summing to 1 for train,val(,test), e.g. 0.8,0.1,0.1"


def parse_ratios(text: str) -> tuple[float, ...]:
    """Parse ``"0.8,0.1,0.1"`` into validated ratios.

    Args:
        text: Comma-separated fractions for train, val and optionally test.

    Returns:
        The ratios, checked by :func:`check_ratios`.

    Raises:
        ConfigError: A value is not a number, or the ratios are invalid.
    """
    values = []
    for part in text.split(","):
        try:
            values.append(float(part.strip()))
        except ValueError:
            raise ConfigError(f"ratios {text!r}: {part.strip()!r} is not a number; "
                              f"{_RATIOS_HINT}") from None
    return check_ratios(values)


def check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """Check that ``ratios`` are 2 or 3 positive fractions summing to 1 (within 1e-6).

    Args:
        ratios: Fractions for train, val and optionally test.

    Returns:
        The ratios as a tuple of floats.

    Raises:
        ConfigError: Wrong count, a non-finite or non-positive value, or a sum other than 1.
    """
    values = tuple(float(r) for r in ratios)
    if len(values) not in (2, 3):
        raise ConfigError(f"ratios {list(values)}: {len(values)} values; {_RATIOS_HINT}")
    bad = [v for v in values if not math.isfinite(v) or v <= 0]
    if bad:
        raise ConfigError(f"ratios {list(values)}: {bad[0]} is not a positive fraction; "
                          f"{_RATIOS_HINT} (use 2 values for no test split)")
    total = sum(values)
    if abs(total - 1.0) > _TOL:
        hint = " (percentages? divide by 100)" if abs(total - 100.0) < 1e-3 else ""
        raise ConfigError(f"ratios {list(values)} sum to {total:g}, not 1{hint}; {_RATIOS_HINT}")
    return values


@dataclass(frozen=True, eq=False)
class SplitReport:
    """What a split achieved, per split and per class.

    Attributes:
        names: Split names, ``("train", "val")`` or ``("train", "val", "test")``.
        target: Requested image ratio of each split.
        seed: Seed used for tie-breaking.
        group_by: The group regex, or None when the ``group`` column was used.
        classes: Class names.
        images: ``[S]`` images per split.
        boxes: ``[S]`` object boxes per split (ignore regions excluded).
        groups: ``[S]`` groups per split.
        class_images: ``[S, K]`` images containing each class, per split.
        class_boxes: ``[S, K]`` boxes of each class, per split.
        class_groups: ``[K]`` groups containing each class (a class can reach at most this
            many splits).
    """

    names: tuple[str, ...]
    target: tuple[float, ...]
    seed: int
    group_by: str | None
    classes: tuple[str, ...]
    images: NDArray[np.int64]
    boxes: NDArray[np.int64]
    groups: NDArray[np.int64]
    class_images: NDArray[np.int64]
    class_boxes: NDArray[np.int64]
    class_groups: NDArray[np.int64]

    @property
    def achieved(self) -> NDArray[np.float64]:
        """``[S]`` achieved image ratio of each split."""
        total = max(int(self.images.sum()), 1)
        return np.asarray(self.images / total, np.float64)

    def class_ratios(self) -> NDArray[np.float64]:
        """``[S, K]`` share of each class's images that went to each split (0 if none)."""
        totals = self.class_images.sum(axis=0, keepdims=True)
        out = np.zeros(self.class_images.shape, np.float64)
        np.divide(self.class_images, totals, out=out, where=totals > 0)
        return out

    def missing(self) -> list[tuple[str, str]]:
        """(class, split) pairs where a class with enough groups is absent from a split."""
        enough = self.class_groups >= len(self.names)
        return [(self.classes[k], self.names[s]) for s, k in np.argwhere(
            (self.class_images == 0) & enough[None, :])]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary."""
        return {
            "seed": self.seed, "group_by": self.group_by,
            "splits": {name: {"target": self.target[s], "achieved": float(self.achieved[s]),
                              "images": int(self.images[s]), "boxes": int(self.boxes[s]),
                              "groups": int(self.groups[s]),
                              "class_images": dict(zip(self.classes,
                                                       self.class_images[s].tolist(),
                                                       strict=True)),
                              "class_boxes": dict(zip(self.classes, self.class_boxes[s].tolist(),
                                                      strict=True))}
                       for s, name in enumerate(self.names)},
            "missing": [list(p) for p in self.missing()],
        }


@dataclass(frozen=True, eq=False)
class SplitResult:
    """A split dataset and its report.

    Attributes:
        dataset: A copy of the input with the ``split`` column set (and ``group`` set from
            the regex when one was given).
        report: Achieved ratios per split and per class.
    """

    dataset: Dataset
    report: SplitReport


def image_groups(dataset: Dataset, group_by: str | None = None) -> NDArray[np.object_]:
    """The group key of every image (never empty).

    With ``group_by``, the regex is searched in each image's :func:`image_key`; the group is
    match group 1 when the pattern has one and it matched, else the whole match. Without it,
    the ``group`` column is used. An image with no group (no match, an empty match, or an
    empty ``group``) is a group of its own, keyed by its image key, so rows that are the same
    image under two layout folders stay together.

    Args:
        dataset: The dataset.
        group_by: A regular expression, or None to use the ``group`` column.

    Returns:
        ``[N]`` object array of strings: ``"g:<group>"`` or ``"i:<image key>"``.

    Raises:
        ConfigError: ``group_by`` is not a valid regular expression.
    """
    keys = image_keys(dataset.images.file.tolist())
    if group_by is None:
        names = [str(g) for g in dataset.images.group]
    else:
        try:
            rx = re.compile(group_by)
        except re.error as exc:
            raise ConfigError(f"--group-by {group_by!r} is not a valid regular expression "
                              f"({exc}); e.g. '^(vid\\d+)_' groups vid12_0001.jpg as vid12"
                              ) from exc
        names = []
        for key in keys:
            m = rx.search(key)
            names.append("" if m is None else (m.group(1) if rx.groups and m.group(1)
                                               else m.group(0)))
    out = np.empty(len(keys), dtype=object)
    out[:] = [f"g:{n}" if n else f"i:{k}" for n, k in zip(names, keys, strict=True)]
    return out


def image_keys(files: Sequence[str]) -> list[str]:
    """:func:`~detforge.data.images.image_key` of many files, computed once per folder.

    ``image_key`` only strips leading layout folders, so the key of ``<dir>/<name>`` is the
    key of ``<dir>`` plus ``/<name>``; caching per folder makes 120k keys take milliseconds
    instead of seconds. Unusual names (empty, ``.``, ``..``) take the direct path.

    Args:
        files: Image paths relative to the dataset root.

    Returns:
        The keys, in order.
    """
    prefixes: dict[str, str] = {}
    out = []
    for f in files:
        head, sep, name = str(f).rpartition("/")
        if not sep or name in ("", ".", ".."):
            out.append(image_key(str(f)))
            continue
        prefix = prefixes.get(head)
        if prefix is None:
            prefix = prefixes[head] = image_key(f"{head}/\x00")[:-1]
        out.append(prefix + name)
    return out


def split_dataset(dataset: Dataset, *, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0, group_by: str | None = None) -> SplitResult:
    """Split images into train/val(/test), stratified by class and respecting groups.

    Algorithm (iterative stratification, Sechidis et al. 2011, over groups):

    1. Images are grouped (see :func:`image_groups`); groups are sorted by key, so the
       result does not depend on the order of rows, then shuffled with ``seed`` and stably
       ordered largest first (big groups are placed while there is room for them).
    2. Each split ``s`` needs ``ratio_s * N`` images, and ``ratio_s * N_c`` images of each
       class ``c`` (``N_c`` = images containing ``c``).
    3. While some class has unassigned images, take the class with the fewest unassigned
       images (the rarest); assign each of its unassigned groups to the split with the
       largest remaining need for that class, ties going to the largest remaining image
       need, then to a seeded random choice. Coverage rule: when the class's unassigned
       groups are no more than the splits still lacking the class, only those splits are
       candidates, so a class with at least as many groups as splits reaches every split.
       Assigning a group subtracts all its images and class counts from that split's needs.
    4. Groups without any class (empty images) go, largest first, to the split with the
       largest remaining image need.

    The existing ``split`` column is replaced.

    Args:
        dataset: The dataset to split (not modified).
        ratios: Image fractions for train, val and optionally test, summing to 1.
        seed: Seed of the tie-breaking shuffle.
        group_by: Regex over image keys defining groups; None uses the ``group`` column.

    Returns:
        The dataset with its split column set, and the report of achieved ratios.

    Raises:
        ConfigError: Invalid ratios or regex.
        DatasetError: The dataset has no images.

    Example::

        res = split_dataset(ds, ratios=(0.8, 0.1, 0.1), seed=0)
        print(res.report.achieved)  # e.g. [0.8 0.1 0.1]
    """
    target = check_ratios(ratios)
    if dataset.num_images == 0:
        raise DatasetError("the dataset has no images, so there is nothing to split; "
                           "check the dataset path and format")
    names = SPLIT_NAMES[:len(target)]
    groups = image_groups(dataset, group_by)
    keys, inverse = np.unique(groups.astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    k = len(dataset.classes)
    img, cls = _image_class_pairs(dataset)
    pair_keys, pair_counts = sorted_unique(inverse[img].astype(np.int64) * max(k, 1) + cls)
    pairs = (pair_keys // max(k, 1), pair_keys % max(k, 1), pair_counts)
    sizes = np.bincount(inverse, minlength=len(keys)).astype(np.int64)

    assigned = _stratify(pairs, sizes, k, target, np.random.default_rng(seed))
    image_split = assigned[inverse]
    split_col = np.empty(dataset.num_images, dtype=object)
    split_col[:] = [names[s] for s in image_split]
    out = dataset.with_split(split_col)
    if group_by is not None:
        group_col = np.empty(dataset.num_images, dtype=object)
        group_col[:] = [g[2:] if g.startswith("g:") else "" for g in groups]
        out = replace(out, images=replace(out.images, group=group_col))
    class_groups = np.bincount(pairs[1], minlength=k).astype(np.int64)
    report = _report(dataset, image_split, assigned, class_groups, names, target, seed,
                     group_by, img, cls)
    return SplitResult(out, report)


def sorted_unique(values: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sorted unique values and their counts (a sort, faster than numpy 2's hashing unique).

    Args:
        values: Integers.

    Returns:
        ``(unique values, counts)``.
    """
    v = np.sort(np.asarray(values, np.int64))
    if len(v) == 0:
        return v, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
    return v[starts], np.diff(np.append(starts, len(v))).astype(np.int64)


def _image_class_pairs(dataset: Dataset) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Unique (image, class) pairs of object boxes with a valid class id."""
    b = dataset.boxes
    k = len(dataset.classes)
    ok = (~b.ignore) & (b.class_id >= 0) & (b.class_id < k)
    pairs, _ = sorted_unique(b.image_index[ok].astype(np.int64) * k + b.class_id[ok])
    return (pairs // max(k, 1)).astype(np.intp), (pairs % max(k, 1)).astype(np.intp)


Pairs = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]


def _stratify(pairs: Pairs, sizes: NDArray[np.int64], k: int, target: Sequence[float],
              rng: np.random.Generator) -> NDArray[np.intp]:
    """Split index of each group (see :func:`split_dataset` for the algorithm).

    ``pairs`` = (group, class, images of the class in the group), sorted by group then
    class. The greedy loop is sequential, so its small state lives in Python lists (a
    numpy call per group costs more than the arithmetic).
    """
    pg, pc, pn = pairs
    n_groups, n_splits = len(sizes), len(target)
    perm = rng.permutation(n_groups)
    order = perm[np.argsort(-sizes[perm], kind="stable")]
    rank = np.empty(n_groups, np.intp)
    rank[order] = np.arange(n_groups)
    tie = rng.random(n_groups).tolist()  # one pre-drawn tie-breaker per group

    start = np.searchsorted(pg, np.arange(n_groups + 1)).tolist()  # group g: pairs a..b
    pc_l, pn_l = pc.tolist(), pn.tolist()
    by_class = np.lexsort((rank[pg], pc))
    class_start = np.searchsorted(pc[by_class], np.arange(k + 1)).tolist()
    pg_by_class = pg[by_class].tolist()
    total = np.bincount(pc, weights=pn, minlength=k).tolist()
    size = sizes.tolist()

    need_img = [t * float(sum(size)) for t in target]
    need_cls = [[t * total[c] for t in target] for c in range(k)]
    remaining = [int(n) for n in total]
    missing = [[True] * n_splits for _ in range(k)]
    assigned = [-1] * n_groups
    every = list(range(n_splits))

    def choose(primary: list[float], allowed: list[int], g: int) -> int:
        top = max(primary[s] for s in allowed)
        cand = [s for s in allowed if primary[s] >= top - 1e-9]
        if len(cand) > 1:
            top = max(need_img[s] for s in cand)
            cand = [s for s in cand if need_img[s] >= top - 1e-9]
        return cand[0] if len(cand) == 1 else cand[int(tie[g] * len(cand))]

    def assign(g: int, s: int) -> None:
        assigned[g] = s
        need_img[s] -= size[g]
        for j in range(start[g], start[g + 1]):
            c, n = pc_l[j], pn_l[j]
            need_cls[c][s] -= n
            remaining[c] -= n
            missing[c][s] = False

    with tqdm(total=n_groups, desc="split", unit="group", disable=None) as bar:
        live = {c for c in range(k) if remaining[c] > 0}
        while live:
            c = min(live, key=lambda x: (remaining[x], x))
            todo = [g for g in pg_by_class[class_start[c]:class_start[c + 1]]
                    if assigned[g] < 0]
            for i, g in enumerate(todo):
                lacking = [s for s in every if missing[c][s]]
                allowed = lacking if lacking and len(todo) - i <= len(lacking) else every
                assign(g, choose(need_cls[c], allowed, g))
            bar.update(len(todo))
            live = {x for x in live if remaining[x] > 0}
        rest = [int(g) for g in order if assigned[g] < 0]
        for g in rest:
            assign(g, choose(need_img, every, g))
        bar.update(len(rest))
    return np.asarray(assigned, np.intp)


def _report(dataset: Dataset, image_split: NDArray[np.intp], assigned: NDArray[np.intp],
            class_groups: NDArray[np.int64], names: tuple[str, ...], target: tuple[float, ...],
            seed: int, group_by: str | None, img: NDArray[np.intp],
            cls: NDArray[np.intp]) -> SplitReport:
    s, k = len(names), len(dataset.classes)
    b = dataset.boxes
    obj = ~b.ignore
    valid = obj & (b.class_id >= 0) & (b.class_id < k)
    class_images = np.zeros((s, k), np.int64)
    np.add.at(class_images, (image_split[img], cls), 1)
    class_boxes = np.zeros((s, k), np.int64)
    np.add.at(class_boxes, (image_split[b.image_index[valid]], b.class_id[valid]), 1)
    return SplitReport(
        names=names, target=target, seed=seed, group_by=group_by,
        classes=tuple(dataset.classes.names),
        images=np.bincount(image_split, minlength=s).astype(np.int64),
        boxes=np.bincount(image_split[b.image_index[obj]], minlength=s).astype(np.int64),
        groups=np.bincount(assigned, minlength=s).astype(np.int64),
        class_images=class_images, class_boxes=class_boxes,
        class_groups=class_groups)


def format_split_report(report: SplitReport) -> str:
    """Text tables: per split images/boxes/groups/ratio, then boxes (images) per class.

    Args:
        report: A split report.

    Returns:
        The tables, and a note for each class missing from a split.
    """
    rows: list[list[str | int | float]] = [
        [name, int(report.images[s]), int(report.boxes[s]), int(report.groups[s]),
         float(report.achieved[s]), report.target[s]] for s, name in enumerate(report.names)]
    rows.append(["total", int(report.images.sum()), int(report.boxes.sum()),
                 int(report.groups.sum()), 1.0, 1.0])
    text = text_table(["split", "images", "boxes", "groups", "ratio", "target"], rows)
    class_rows: list[list[str | int | float]] = [
        [name, *(f"{report.class_boxes[s, c]} ({report.class_images[s, c]})"
                 for s in range(len(report.names)))]
        for c, name in enumerate(report.classes)]
    text += "\n\n" + text_table(["class: boxes (images)", *report.names], class_rows)
    for cls_name, split in report.missing():
        text += f"\nnote: class {cls_name!r} has no image in {split}"
    return text


def split_dataset_files(src: str | Path, out: str | Path, *,
                        ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                        group_by: str | None = None, src_format: str | None = None,
                        out_format: str | None = None, options: WriteOptions | None = None,
                        allow_outside_root: bool = False) -> SplitResult:
    """Read a dataset, split it and write the split copy; the source is never modified.

    Args:
        src: Dataset path (format detected unless ``src_format`` is given).
        out: A new (or empty) folder for the split dataset.
        ratios: See :func:`split_dataset`.
        seed: See :func:`split_dataset`.
        group_by: See :func:`split_dataset`.
        src_format: Format of ``src`` (``coco``, ``yolo``, ``voc``, ``kitti``), or None.
        out_format: Format to write, or None for the same as the source.
        options: Losses the writer may incur (default none; see
            :mod:`detforge.data.formats.policy`).
        allow_outside_root: Let a YOLO ``data.yaml`` name folders outside the dataset.

    Returns:
        The split result.

    Raises:
        ConfigError: ``out`` is the source, inside it, or not empty; or a bad argument.
        DatasetError: The source cannot be read, or the copy would lose data that
            ``options`` does not allow.
    """
    from detforge.data.formats import get_format, read_dataset, write_dataset

    src, out = Path(src), Path(out)
    check_ratios(ratios)
    if out_format is not None:
        get_format(out_format)
    src_r = src.resolve()
    _check_output(out, src_r.parent if src_r.is_file() else src_r)
    dataset = read_dataset(src, src_format, allow_outside_root=allow_outside_root)
    if dataset.root is not None:
        _check_output(out, dataset.root.resolve())
    result = split_dataset(dataset, ratios=ratios, seed=seed, group_by=group_by)
    fmt = out_format or str(dataset.info.get("format") or src_format)
    write_dataset(result.dataset, out, fmt, options=options)
    return result


def _check_output(out: Path, source: Path) -> None:
    out_r = out.resolve()
    if out_r == source or source in out_r.parents:
        raise ConfigError(f"output {out} is the source dataset or lies inside it ({source}); "
                          f"the source is never modified, so choose a folder outside it")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise ConfigError(f"output {out} already exists and is not empty; choose a new folder "
                          f"or delete it first")
