"""Where a COCO dataset's JSON files and images are: layouts, split names, image folders.

Layouts read (auto-detected):

* a single JSON file (its split from its name, else from its folder's name);
* ``annotations/*.json``: the ``instances_*.json`` files when there are any, else every
  JSON except captions, image-info, panoptic and stuff files (keypoint files and files
  named ``train.json``, ``val.json`` are read);
* Roboflow's export: ``<split>/_annotations.coco.json`` with the images beside it
  (``train``, ``valid``, ``test``).

Split of a file: its name without the task prefix (``instances_``, ``person_keypoints_``,
``keypoints_``): ``train2017`` -> ``train``, ``valid`` -> ``val``; ``default`` (the
subset name CVAT and Datumaro use for "no subset") and an empty name mean unsplit. Any
other name is kept as the split name when it follows a task prefix or several files are
read (so their images stay apart), else the file is unsplit.

Image folder of a file: among ``images/<name>``, ``images/<split>``, ``<name>/``,
``<split>/``, ``images/``, the JSON's folder and the dataset root, the folder under which
most of the first file names exist (so a ``file_name`` that already holds a sub-folder,
such as ``train2017/a.jpg`` or ``images/a.jpg``, is not doubled); when none holds any,
the first of them that exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import DatasetError
from detforge.data.dataset import UNSET_SPLIT
from detforge.data.formats._common import exists_file, normalise_split

__all__ = ["ROBOFLOW_JSON", "CocoFile", "detect_layout", "find_files", "image_base",
           "split_of_name"]

ROBOFLOW_JSON = "_annotations.coco.json"
TASK_PREFIXES = ("instances_", "person_keypoints_", "keypoints_")
SKIP_PREFIXES = ("captions_", "image_info_", "panoptic_", "stuff_")
_SAMPLE = 20


@dataclass(frozen=True)
class CocoFile:
    """One annotation file.

    Attributes:
        path: The JSON file.
        raw: Its split as written (``train2017``, ``valid``) or ``""``.
        split: The canonical split (``train``, ``val``, ``test``, another name, or ``""``).
    """

    path: Path
    raw: str
    split: str


def split_of_name(stem: str, *, many: bool) -> tuple[str, str]:
    """``(raw, split)`` of an annotation file named ``stem`` (see the module docstring).

    Args:
        stem: File name without ``.json``.
        many: Whether several files are read together.

    Returns:
        The name as written and the canonical split (``""``: unsplit).
    """
    prefixed = next((p for p in TASK_PREFIXES if stem.startswith(p)), None)
    token = stem[len(prefixed):] if prefixed else stem
    split = normalise_split(token)
    if split in ("train", "val", "test"):
        return token, split
    if not token or not split or token == "instances":
        return token, UNSET_SPLIT
    return (token, token) if prefixed or many else (token, UNSET_SPLIT)


def _roboflow(path: Path) -> list[Path]:
    found = [path / ROBOFLOW_JSON] if (path / ROBOFLOW_JSON).is_file() else []
    try:
        subs = sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        subs = []
    return found + [p / ROBOFLOW_JSON for p in subs if (p / ROBOFLOW_JSON).is_file()]


def detect_layout(path: Path) -> bool:
    """True for a ``.json`` file, ``annotations/*.json`` or a Roboflow COCO export."""
    if path.is_file():
        return path.suffix.lower() == ".json"
    if not path.is_dir():
        return False
    return any((path / "annotations").glob("*.json")) or bool(_roboflow(path))


def find_files(path: Path) -> tuple[Path, list[CocoFile]]:
    """The dataset root and the annotation files to read, with their splits.

    Args:
        path: A JSON file, a folder with ``annotations/``, or a Roboflow export.

    Returns:
        ``(root, files)``; image paths are relative to ``root``.

    Raises:
        DatasetError: No annotation file found.
    """
    if path.is_file():
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
        raw, split = split_of_name(path.name.removesuffix(".json").removesuffix(".coco"),
                                   many=False)
        if not split and path.name == ROBOFLOW_JSON:
            raw, split = split_of_name(path.parent.name, many=False)
        return root, [CocoFile(path, raw, split)]
    ann = path / "annotations"
    files = sorted(ann.glob("instances*.json")) if ann.is_dir() else []
    if not files and ann.is_dir():
        files = sorted(p for p in ann.glob("*.json") if not p.name.startswith(SKIP_PREFIXES))
        keypoints = [p for p in files if p.name.startswith("person_keypoints_")]
        files = [p for p in files if p not in keypoints] or keypoints
    if files:
        many = len(files) > 1
        return path, [CocoFile(p, *split_of_name(p.stem, many=many)) for p in files]
    robo = _roboflow(path)
    if robo:
        return path, [CocoFile(p, p.parent.name if p.parent != path else "",
                               split_of_name(p.parent.name, many=True)[1]
                               if p.parent != path else UNSET_SPLIT) for p in robo]
    raise DatasetError("no COCO JSON found; expected annotations/instances_<split>.json, "
                       f"<split>/{ROBOFLOW_JSON}, or pass the JSON file itself", path=path)


def image_base(root: Path, file: CocoFile, names: list[str]) -> Path:
    """The folder the ``file_name`` values of ``file`` are relative to.

    Args:
        root: The dataset root.
        file: The annotation file.
        names: Its images' ``file_name`` values (the first few are tried).

    Returns:
        The folder (see the module docstring).
    """
    json_dir = file.path.parent
    named = [f"images/{file.raw}", f"images/{file.split}", file.raw, file.split] \
        if file.raw or file.split else []
    candidates: list[Path] = []
    for cand in [*(root / n for n in named if n), root / "images", json_dir, root]:
        if cand not in candidates:
            candidates.append(cand)
    existing = [c for c in candidates if c.is_dir()]
    sample = [n for n in names[:_SAMPLE] if n]
    best, hits = None, 0
    for cand in existing:
        n = sum(exists_file(Path(os.path.join(cand, s))) for s in sample)
        if n > hits:
            best, hits = cand, n
    if best is not None:
        return best
    return existing[0] if existing else json_dir
