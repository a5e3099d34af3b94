"""Label Studio: a labelling config, tasks with predictions (pre-annotations), reading exports.

Written (the layout Label Studio's own COCO / YOLO importers in ``label-studio-converter``
produce, ``imports/coco.py``, and its "Import pre-annotated data" guide describes):

* ``label_config.xml``: ``<Image name="image" value="$image"/>`` and one
  ``<RectangleLabels name="label" toName="image">`` with a ``<Label>`` per class;
* ``tasks.json``: one task per image, ``data.image`` its URL (a prefix + the pool key;
  the default ``/data/local-files/?d=`` serves files under Label Studio's
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``), ``data.detforge_key`` / ``detforge_rank`` /
  ``detforge_score`` (so the Data Manager can sort by the selection), and one prediction
  whose ``result`` holds a ``rectanglelabels`` region per box: ``x``, ``y``, ``width``,
  ``height`` in percent of ``original_width`` / ``original_height``, ``rotation`` 0,
  ``score`` the model's confidence; the prediction's ``score`` is the mean box confidence.

Read (``active merge``): the project's JSON export. Per task, the annotation updated last
among those not skipped (``was_cancelled``) counts, as the converter's own export does;
tasks without one are listed as not annotated. The image is known by ``data.detforge_key``
when present, else by the file named in ``data.image``. Regions other than
``rectanglelabels`` and rotated rectangles (kept as their enclosing box; Label Studio
rotates about the top-left corner) are counted as lossy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from detforge.active.labels import ImageLabels, LabelledExport, rotated_extent
from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import DatasetError

__all__ = ["FROM_NAME", "LOCAL_FILES_PREFIX", "TO_NAME", "label_config", "read_labelstudio",
           "task", "write_labelstudio"]

FROM_NAME = "label"
"""Name of the ``RectangleLabels`` control tag."""
TO_NAME = "image"
"""Name of the ``Image`` object tag (and the task data key)."""
LOCAL_FILES_PREFIX = "/data/local-files/?d="
"""URL prefix of files served from Label Studio's local-files document root."""


def label_config(classes: Sequence[str]) -> str:
    """The labelling interface: an image and one rectangle label per class."""
    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{TO_NAME}" value="${TO_NAME}"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n'
            f'  </RectangleLabels>\n</View>\n')


def _pct(v: float, side: int) -> float:
    return round(100.0 * v / side, 6) if side else 0.0


def task(item: ImageLabels, *, url_prefix: str = LOCAL_FILES_PREFIX, rank: int | None = None,
         value: float | None = None, model_version: str = "detforge") -> dict[str, Any]:
    """One Label Studio task with the item's boxes as a prediction.

    Args:
        item: The image and its pre-annotations.
        url_prefix: Prepended to the URL-quoted key to make ``data.image``.
        rank: Selection rank (1 = picked first), stored in ``data.detforge_rank``.
        value: The strategy's value for the image, stored in ``data.detforge_score``.
        model_version: Shown by Label Studio next to the prediction.
    """
    result = []
    for i, (b, label) in enumerate(zip(item.xyxy.tolist(), item.labels, strict=True)):
        region: dict[str, Any] = {
            "id": f"r{i}", "type": "rectanglelabels", "from_name": FROM_NAME,
            "to_name": TO_NAME, "original_width": item.width,
            "original_height": item.height, "image_rotation": 0,
            "value": {"x": _pct(b[0], item.width), "y": _pct(b[1], item.height),
                      "width": _pct(b[2] - b[0], item.width),
                      "height": _pct(b[3] - b[1], item.height), "rotation": 0,
                      "rectanglelabels": [label]}}
        if item.scores is not None:
            region["score"] = round(float(item.scores[i]), 6)
        result.append(region)
    scores = item.scores if item.scores is not None else np.zeros(0, np.float32)
    data: dict[str, Any] = {TO_NAME: url_prefix + quote(item.key, safe="/"),
                            "detforge_key": item.key}
    if rank is not None:
        data["detforge_rank"] = rank
    if value is not None:
        data["detforge_score"] = round(float(value), 6)
    return {"data": data, "predictions": [{
        "model_version": model_version,
        "score": round(float(scores.mean()), 6) if len(scores) else 0.0,
        "result": result}]}


def write_labelstudio(folder: str | Path, items: Sequence[ImageLabels], classes: Sequence[str],
                      *, url_prefix: str = LOCAL_FILES_PREFIX,
                      values: Sequence[float | None] | None = None,
                      model_version: str = "detforge") -> None:
    """Write ``folder/label_config.xml`` and ``folder/tasks.json`` (items in rank order).

    Args:
        folder: Output folder.
        items: Images in selection order.
        classes: Label names.
        url_prefix: Image URL prefix (see :func:`task`).
        values: The strategy's value per item.
        model_version: Prediction model version shown in Label Studio.
    """
    folder = Path(folder)
    atomic_write_text(folder / "label_config.xml", label_config(classes))
    tasks = [task(it, url_prefix=url_prefix, rank=r, model_version=model_version,
                  value=None if values is None else values[r - 1])
             for r, it in enumerate(items, start=1)]
    atomic_write_json(folder / "tasks.json", tasks)


def _key_of(data: dict[str, Any]) -> str:
    key = data.get("detforge_key")
    if isinstance(key, str) and key:
        return key
    url = str(data.get(TO_NAME, ""))
    if "?d=" in url:
        return unquote(url.split("?d=", 1)[1])
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    if url.startswith("/data/upload/") and "-" in name:
        name = name.split("-", 1)[1]  # uploads are stored as <8 hex>-<file name>
    return name


def _annotation(anns: Any) -> dict[str, Any] | None:
    if not isinstance(anns, list):
        return None
    kept = [a for a in anns if isinstance(a, dict)
            and not (a.get("was_cancelled") or a.get("skipped"))]
    if not kept:
        return None
    best: dict[str, Any] = max(kept, key=lambda a: str(a.get("updated_at")
                                                      or a.get("created_at") or ""))
    return best


def read_labelstudio(path: str | Path) -> LabelledExport:
    """Read a Label Studio JSON export (a list of tasks with annotations).

    Args:
        path: The export file.

    Returns:
        Annotated images, not-annotated task keys and lossy shapes.

    Raises:
        DatasetError: Not a Label Studio JSON export, or a region lacks its size or values.
    """
    from detforge.core.jsonfile import parse_json

    path = Path(path)
    try:
        tasks = parse_json(path.read_bytes())
    except OSError as exc:
        raise DatasetError(f"cannot read the Label Studio export ({exc.strerror})",
                           path=path) from exc
    except ValueError as exc:
        raise DatasetError(f"not valid JSON ({exc}); export the project as JSON again",
                           path=path) from exc
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise DatasetError("not a Label Studio JSON export: expected a list of tasks with "
                           "'data' (export the project as 'JSON', not 'JSON-MIN')", path=path)
    images: list[ImageLabels] = []
    unannotated: list[str] = []
    lossy: Counter[str] = Counter()
    for t in tasks:
        key = _key_of(t["data"])
        ann = _annotation(t.get("annotations"))
        if ann is None:
            unannotated.append(key)
            continue
        images.append(_image(key, ann.get("result") or [], lossy, path))
    return LabelledExport(str(path), "labelstudio", images, [], unannotated, lossy)


def _image(key: str, result: list[Any], lossy: Counter[str], path: Path) -> ImageLabels:
    boxes, labels = [], []
    width = height = 0
    for r in result:
        kind = r.get("type") if isinstance(r, dict) else None
        if kind != "rectanglelabels":
            lossy[str(kind or "unknown region")] += 1
            continue
        v = r.get("value") or {}
        try:
            width, height = int(r["original_width"]), int(r["original_height"])
            x, y = float(v["x"]) * width / 100, float(v["y"]) * height / 100
            w, h = float(v["width"]) * width / 100, float(v["height"]) * height / 100
            names = list(v["rectanglelabels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"task {key!r}: a rectangle region lacks {exc} (needs x, y, "
                               "width, height, rectanglelabels, original_width, "
                               "original_height); export the project as JSON again",
                               path=path) from exc
        if len(names) != 1:
            lossy[f"rectangle with {len(names)} labels"] += 1
            continue
        box = (x, y, x + w, y + h)
        rotation = float(v.get("rotation", 0) or 0)
        if rotation % 360:
            lossy["rotated rectangle"] += 1
            box = rotated_extent(*box, rotation, pivot="top-left")
        boxes.append(box)
        labels.append(str(names[0]))
    return ImageLabels(key, width, height, np.asarray(boxes, np.float64).reshape(-1, 4),
                       tuple(labels))

