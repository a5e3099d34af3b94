"""``active select``: score a pool, pick the next images to label, write them for the tools.

Steps: read the pool (:mod:`~detforge.active.pool`: hashes, unreadable files, near
duplicates), leave out near duplicates of the labelled dataset (``exclude``), run the model
(:mod:`~detforge.active.scoring`), let the strategy choose (:mod:`~detforge.active.strategies`)
and write the selection folder, all of it or nothing (it is staged beside ``out`` and renamed
into place)::

    out/
      selection.json      every pick with its scores, the options, model and pool, skips
      selection.csv       the same, one row per pick
      images.txt          the picked files, one absolute path per line (a list source)
      report.html         the picks with their pre-annotations, for a look before labelling
      cvat/annotations.xml            CVAT for images 1.1 (upload as "CVAT 1.1")
      cvat/coco/annotations/instances_default.json, cvat/coco.zip   (upload as "COCO 1.0")
      cvat/labels.json                the task's labels for CVAT's raw label editor
      labelstudio/label_config.xml, labelstudio/tasks.json          (import the tasks)

Pre-annotations are the model's boxes scoring at least ``preannotate_conf``.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detforge.active.diversity import NEAR_DUPLICATE_BITS, normalise_rows, phash_vectors
from detforge.active.labels import ImageLabels
from detforge.active.labelstudio import LOCAL_FILES_PREFIX, write_labelstudio
from detforge.active.pool import Pool, PoolImage, Skipped, scan_pool
from detforge.active.scoring import ImageScore, score_images
from detforge.active.strategies import Candidates, StrategyOptions, get_strategy
from detforge.active.uncertainty import DEFAULT_FLOOR, UNCERTAINTY_METHODS, check_method
from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import ConfigError

__all__ = ["SELECTION_FORMAT", "ChooseOptions", "Choice", "Picked", "SelectionResult", "choose",
           "select"]

SELECTION_FORMAT = "detforge-selection/1"
"""``format`` value of ``selection.json``."""


@dataclass(frozen=True)
class Picked:
    """One selected image.

    Attributes:
        rank: 1 for the first pick.
        image: The pool image.
        value: The strategy's value for it (None for ``random``).
        score: The model's scores for it.
        labels: Its pre-annotations.
    """

    rank: int
    image: PoolImage
    value: float | None
    score: ImageScore
    labels: ImageLabels

    def to_dict(self) -> dict[str, Any]:
        """The ``selection.json`` entry."""
        u = self.score.uncertainty
        return {"rank": self.rank, "key": self.image.key, "path": str(self.image.path),
                "width": self.image.width, "height": self.image.height,
                "sha256": self.image.sha256, "value": _round(self.value),
                "entropy": _round(u.get("entropy")), "margin": _round(u.get("margin")),
                "least_confidence": _round(u.get("least-confidence")),
                "disagreement": _round(self.score.disagreement),
                "boxes": len(self.labels)}


@dataclass
class SelectionResult:
    """What ``select`` chose and where it wrote it.

    Attributes:
        out: The selection folder.
        strategy: Strategy name.
        picked: The picks, best first.
        pool: The pool (images, skips, duplicates).
        embedding: What diversity measured (``onnx:<tensor>``, ``phash``) or None.
        skipped: Pool files left out (unreadable, videos, not decodable by the runtime).
        files: Written files by role.
    """

    out: Path
    strategy: str
    picked: list[Picked]
    pool: Pool
    embedding: str | None
    skipped: list[Skipped] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output exists and is not an empty folder; choose a new "
                          "folder for the selection (detforge never overwrites one)")


def _preannotations(img: PoolImage, score: ImageScore, classes: tuple[str, ...],
                    conf: float) -> ImageLabels:
    d = score.detections
    keep = d.scores >= conf
    xyxy = np.clip(d.xyxy[keep].astype(np.float64), 0, [img.width, img.height] * 2)
    return ImageLabels(img.key, img.width, img.height, xyxy,
                       tuple(classes[int(c)] for c in d.class_ids[keep]), d.scores[keep])


@dataclass(frozen=True)
class ChooseOptions:
    """How :func:`choose` scores and picks (see :func:`select` for each field)."""

    strategy: str = "hybrid"
    second_model: str | Path | None = None
    tta: bool = False
    uncertainty: str = "entropy"
    aggregate: str = "max"
    hybrid_factor: int = 3
    floor: float = DEFAULT_FLOOR
    preannotate_conf: float = 0.25
    seed: int = 0
    imgsz: tuple[int, int] | None = None
    device: str = "auto"
    batch: int = 8

    def check(self) -> None:
        """Raise :class:`ConfigError` for an unknown strategy or measure, or a bad number."""
        get_strategy(self.strategy)
        check_method(self.uncertainty)
        if not 0.0 <= self.floor < 1.0 or not 0.0 <= self.preannotate_conf <= 1.0:
            raise ConfigError(f"floor ({self.floor}) and preannotate conf "
                              f"({self.preannotate_conf}) must lie in [0, 1)")


@dataclass
class Choice:
    """What :func:`choose` picked.

    Attributes:
        picked: The picks, best first.
        classes: The model's classes.
        embedding: What diversity measured, or None.
        undecodable: Pool keys the runtime could not decode, with the reason.
    """

    picked: list[Picked]
    classes: tuple[str, ...]
    embedding: str | None
    undecodable: list[Skipped]


def choose(model: str | Path, pool: Pool, budget: int, options: ChooseOptions, *,
           progress: bool = True) -> Choice:
    """Score the pool's candidates with ``model`` and let the strategy pick ``budget``.

    Args:
        model: The detector (file, directory or stem).
        pool: The pool, near duplicates already marked.
        budget: How many to pick.
        options: Strategy and scoring options.
        progress: Show progress bars.

    Returns:
        The picks with their scores and pre-annotations.

    Raises:
        ConfigError: A bad option, or ``budget`` exceeds the selectable images.
        BackendError: A model cannot be loaded or run.
    """
    o = options
    o.check()
    strat = get_strategy(o.strategy)
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    rows = pool.candidates
    _check_budget(budget, len(rows), pool)
    embed = "embedding" in strat.needs
    tta = o.tta or (strat.name == "disagreement" and o.second_model is None)
    m, tap = _load(model, embed=embed, imgsz=o.imgsz, device=o.device)
    second = None
    try:
        if o.second_model is not None:
            from detforge.runtime import load_model

            second = load_model(o.second_model, device=o.device, imgsz=o.imgsz)
        scored = score_images(m, [pool.images[r].path for r in rows], second=second, tta=tta,
                              embedding_output=tap is not None, floor=o.floor,
                              aggregate=o.aggregate, batch=o.batch, progress=progress)
        labelled = None
        if embed and tap is not None and pool.labelled:
            labelled = score_images(m, [p for p, _ in pool.labelled], embedding_output=True,
                                    floor=o.floor, batch=o.batch, progress=progress)
    finally:
        m.close()
        if second is not None:
            second.close()
    undecodable = [Skipped(pool.images[rows[i]].key, f"the runtime cannot decode it: {why}")
                   for i, why in scored.skipped]
    ok = [i for i, s in enumerate(scored.scores) if s is not None]
    _check_budget(budget, len(ok), pool, undecodable=len(undecodable))
    scores = [s for s in scored.scores if s is not None]
    cands = _candidates(scores, [pool.images[rows[i]] for i in ok], pool, embed=embed,
                        tap=tap is not None, labelled=labelled)
    picks = strat.choose(cands, budget, StrategyOptions(o.uncertainty, o.hybrid_factor, o.seed))
    picked = []
    for rank, (i, value) in enumerate(zip(picks.rows, picks.values, strict=True), start=1):
        img = pool.images[rows[ok[i]]]
        picked.append(Picked(rank, img, value, scores[i],
                             _preannotations(img, scores[i], m.classes, o.preannotate_conf)))
    embedding = None if not embed else (f"onnx:{tap.tensor}" if tap is not None else "phash")
    return Choice(picked, m.classes, embedding, undecodable)


def select(model: str | Path, pool: str | Path, *, budget: int, out: str | Path,
           strategy: str = "hybrid", second_model: str | Path | None = None, tta: bool = False,
           exclude: str | Path | None = None, uncertainty: str = "entropy",
           aggregate: str = "max", hybrid_factor: int = 3, floor: float = DEFAULT_FLOOR,
           preannotate_conf: float = 0.25, seed: int = 0, imgsz: tuple[int, int] | None = None,
           device: str = "auto", batch: int = 8, url_prefix: str = LOCAL_FILES_PREFIX,
           max_bits: int = NEAR_DUPLICATE_BITS, progress: bool = True) -> SelectionResult:
    """Choose the ``budget`` pool images to label next and write them for CVAT / Label Studio.

    Args:
        model: The detector (``.onnx``, ``.pt``, engine or directory; see
            :func:`detforge.runtime.load_model`). An ONNX model also gives the embeddings.
        pool: Unlabelled images: a folder, glob or list file.
        budget: How many images to pick.
        out: New folder for the selection (must not exist, or be empty).
        strategy: A name from :data:`~detforge.active.strategies.STRATEGIES`.
        second_model: A second detector for ``disagreement``.
        tta: Disagreement with the mirrored image (the default for ``disagreement`` without
            a second model).
        exclude: The labelled dataset: its near duplicates are not picked, and its images
            count as covered for ``diversity`` / ``hybrid``.
        uncertainty: The measure ``hybrid`` ranks by.
        aggregate: Box-to-image aggregation: ``max``, ``mean`` or ``sum``.
        hybrid_factor: ``hybrid`` takes the ``factor * budget`` most uncertain first.
        floor: Candidate boxes scoring at most this are background.
        preannotate_conf: Smallest score of a pre-annotated box.
        seed: Seed of ``random``.
        imgsz: Input ``(height, width)`` for models with a dynamic input.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        batch: Images per inference call.
        url_prefix: Label Studio image URL prefix.
        max_bits: Perceptual-hash distance of near duplicates (-1: exact copies only).
        progress: Show progress bars.

    Returns:
        The selection.

    Raises:
        ConfigError: Unknown strategy or option, ``out`` not empty, or a budget larger than
            the selectable pool (the message says how many there are and why).
        DatasetError: The ``exclude`` dataset cannot be read.
        BackendError: A model cannot be loaded or run.

    Example:
        >>> res = select("best.onnx", "unlabelled/", budget=50, out="round1")  # doctest: +SKIP
    """
    options = ChooseOptions(strategy, second_model, tta, uncertainty, aggregate, hybrid_factor,
                            floor, preannotate_conf, seed, imgsz, device, batch)
    options.check()
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    out = Path(out)
    _check_out(out)
    the_pool = scan_pool(pool, max_bits=max_bits, progress=progress)
    if exclude is not None:
        from detforge.data.formats import read_dataset

        the_pool.exclude(read_dataset(exclude), max_bits=max_bits, progress=progress)
    choice = choose(model, the_pool, budget, options, progress=progress)
    result = SelectionResult(out, options.strategy, choice.picked, the_pool, choice.embedding,
                             list(the_pool.skipped) + choice.undecodable)
    meta = {"strategy": options.strategy, "budget": budget,
            "model": _model_info(model, choice.classes),
            "second_model": None if second_model is None else str(Path(second_model).resolve()),
            "embedding": choice.embedding,
            "options": {"uncertainty": uncertainty, "aggregate": aggregate, "floor": floor,
                        "hybrid_factor": hybrid_factor, "preannotate_conf": preannotate_conf,
                        "seed": seed, "tta": tta or options.strategy == "disagreement",
                        "near_duplicate_bits": max_bits},
            "exclude": None if exclude is None else str(Path(exclude).resolve())}
    _write(result, choice.classes, meta, url_prefix=url_prefix)
    return result


def _check_budget(budget: int, available: int, pool: Pool, *, undecodable: int = 0) -> None:
    if budget <= available:
        return
    parts = [f"{len(pool.images) + len(pool.skipped)} files",
             f"{len(pool.skipped)} unreadable or not images",
             f"{len(pool.duplicate_of)} near duplicates of other pool images",
             f"{len(pool.labelled_duplicate_of)} near duplicates of labelled images"]
    if undecodable:
        parts.append(f"{undecodable} the runtime could not decode")
    raise ConfigError(f"--budget {budget} is larger than the {available} selectable images of "
                      f"pool {pool.spec} ({', '.join(parts)}); lower --budget or add images")


def _load(model: str | Path, *, embed: bool, imgsz: tuple[int, int] | None,
          device: str) -> tuple[Any, Any]:
    from detforge.runtime import load_model, resolve_model_path

    path = resolve_model_path(model, device=device)
    if embed and path.suffix == ".onnx":
        from detforge.active.embedding import load_with_embedding

        return load_with_embedding(path, device=device, imgsz=imgsz)
    return load_model(path, device=device, imgsz=imgsz), None


def _candidates(scores: list[ImageScore], images: list[PoolImage], pool: Pool, *, embed: bool,
                tap: bool, labelled: Any) -> Candidates:
    unc = {m: np.array([s.uncertainty[m] for s in scores]) for m in UNCERTAINTY_METHODS}
    dis = None
    if all(s.disagreement is not None for s in scores) and scores:
        dis = np.array([s.disagreement for s in scores], np.float64)
    emb = lab = None
    if embed and tap:
        emb = normalise_rows(np.stack([s.embedding for s in scores if s.embedding is not None]))
        if labelled is not None:
            vecs = [s.embedding for s in labelled.scores if s is not None and s.embedding
                    is not None]
            lab = normalise_rows(np.stack(vecs)) if vecs else None
    elif embed:
        emb = phash_vectors([im.phash for im in images])
        lab = phash_vectors([h for _, h in pool.labelled]) if pool.labelled else None
    return Candidates(len(scores), unc, dis, emb, lab)


def _model_info(model: str | Path, classes: tuple[str, ...]) -> dict[str, Any]:
    from detforge.data.version import file_sha256
    from detforge.runtime import resolve_model_path

    path = resolve_model_path(model)
    return {"path": str(path.resolve()), "sha256": file_sha256(path), "classes": list(classes)}


def _write(result: SelectionResult, classes: tuple[str, ...], meta: dict[str, Any], *,
           url_prefix: str) -> None:
    from detforge import __version__
    from detforge.active.cvat import write_cvat_coco, write_cvat_labels, write_cvat_xml
    from detforge.active.report import write_selection_report

    out = result.out
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    pool = result.pool
    try:
        doc = {"format": SELECTION_FORMAT, "detforge_version": __version__,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta,
               "pool": {"spec": pool.spec, "root": str(pool.root.resolve()),
                        "images": len(pool.images), "candidates": len(pool.candidates),
                        "skipped": [{"key": s.key, "reason": s.reason} for s in result.skipped],
                        "duplicates": [{"key": pool.images[i].key,
                                        "duplicate_of": pool.images[j].key}
                                       for i, j in pool.duplicate_of.items()],
                        "labelled_duplicates": [{"key": pool.images[i].key, "labelled": ref}
                                                for i, ref in
                                                pool.labelled_duplicate_of.items()]},
               "selected": [p.to_dict() for p in result.picked]}
        files = {"selection": stage / "selection.json", "csv": stage / "selection.csv",
                 "list": stage / "images.txt", "report": stage / "report.html",
                 "cvat_xml": stage / "cvat" / "annotations.xml",
                 "cvat_labels": stage / "cvat" / "labels.json",
                 "labelstudio_tasks": stage / "labelstudio" / "tasks.json",
                 "labelstudio_config": stage / "labelstudio" / "label_config.xml"}
        atomic_write_json(files["selection"], doc)
        atomic_write_text(files["csv"], _csv(doc["selected"]))
        atomic_write_text(files["list"], "".join(f"{p.image.path.resolve()}\n"
                                                 for p in result.picked))
        labels = [p.labels for p in result.picked]
        write_cvat_xml(files["cvat_xml"], labels, classes, task_name=f"detforge {out.name}")
        write_cvat_labels(files["cvat_labels"], classes)
        files["cvat_coco"] = write_cvat_coco(stage / "cvat" / "coco", labels, classes)
        write_labelstudio(stage / "labelstudio", labels, classes, url_prefix=url_prefix,
                          values=[p.value for p in result.picked],
                          model_version=Path(meta["model"]["path"]).name)
        write_selection_report(files["report"], result, classes)
        if out.exists():
            out.rmdir()
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    result.files = {k: out / v.relative_to(stage) for k, v in files.items()}


def _csv(rows: list[dict[str, Any]]) -> str:
    cols = ["rank", "key", "value", "entropy", "margin", "least_confidence", "disagreement",
            "boxes", "path"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
