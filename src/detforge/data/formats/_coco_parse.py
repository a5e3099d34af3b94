"""Parsing one COCO JSON file: typed columns, and everything else kept for pass-through.

Every check names the file and the entry (``images[3]``, ``annotation id 17``) and stops
at the first problem with one line. Numbers are checked for their range before they
reach a fixed-width column, so an id of 2^63 or a width of 1e300 is an error, not an
overflow.
"""

from __future__ import annotations

import json
import reprlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import DatasetError
from detforge.core.jsonfile import parse_json
from detforge.data.formats._common import as_column, first_bad

__all__ = ["ANN_KEYS", "IMAGE_KEYS", "OPTIONAL_FLAGS", "bboxes", "brief", "column",
           "int_column", "load_json", "pass_through", "records", "size_column"]

OPTIONAL_FLAGS = (("difficult", np.bool_), ("truncated", np.float32),
                  ("occluded", np.int8), ("ignore", np.bool_))
"""Non-standard per-annotation flags read and written (VOC/KITTI flags survive COCO)."""

ANN_KEYS = frozenset({"id", "image_id", "category_id", "bbox", "iscrowd", "area",
                      *(f for f, _ in OPTIONAL_FLAGS)})
"""Annotation keys with a column of their own; any other key is passed through."""

IMAGE_KEYS = frozenset({"id", "file_name", "width", "height"})
"""Image keys with a column of their own."""

_MAX_SIZE = 2**31 - 1
_brief = reprlib.Repr()
_brief.maxstring = 60
_brief.maxother = 60
_brief.maxlevel = 2
_brief.maxlist = _brief.maxdict = 4


def brief(value: Any) -> str:
    """A short, bounded repr of a parsed value (safe on huge or deeply nested values)."""
    return _brief.repr(value)


def load_json(path: Path) -> dict[str, Any]:
    """Parse a COCO JSON file and check its top level.

    Raises:
        DatasetError: Unreadable, not JSON, or not an object with an ``images`` list.
    """
    try:
        obj = parse_json(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"not valid JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}; fix the file or export it again", path=path,
                           line=exc.lineno) from exc
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise DatasetError(f"not valid JSON ({type(exc).__name__}); fix the file or export "
                           "it again", path=path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read file ({exc.strerror})", path=path) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise DatasetError('not a COCO detection file: expected a JSON object with an '
                           '"images" list (and "annotations", "categories")', path=path)
    for key in ("annotations", "categories"):
        if not isinstance(obj.get(key, []), list):
            raise DatasetError(f'"{key}" must be a list', path=path)
    return obj


def records(items: list[Any], what: str, path: Path) -> None:
    """Raise unless every item is a JSON object."""
    bad = first_bad(items, dict)
    if bad >= 0:
        raise DatasetError(f"{what}[{bad}] is not an object: {brief(items[bad])}", path=path)


def column(items: list[dict[str, Any]], key: str, kinds: str, what: str, path: Path,
           default: Any = None) -> NDArray[Any]:
    """Key ``key`` of every item as an array whose dtype kind is in ``kinds``."""
    try:
        values = [r[key] for r in items] if default is None else \
            [r.get(key, default) for r in items]
    except (KeyError, TypeError, AttributeError):
        records(items, what, path)
        missing = next((i for i, r in enumerate(items) if key not in r), 0)
        raise DatasetError(f'{what}[{missing}] has no "{key}"; add it', path=path) from None
    arr = as_column(values, kinds)
    if arr is None or arr.dtype.kind == "O":
        integer = kinds.strip("b") == "iu"
        ok: tuple[type, ...] = (int,) if integer else (int, float)
        bad = first_bad(values, ok)
        if bad < 0:  # every value has the right type: an integer beyond 64 bits
            bad = next((i for i, v in enumerate(values) if not -2**63 <= v < 2**63), 0)
            raise DatasetError(f'{what}[{bad}] "{key}" = {brief(values[bad])} is outside the '
                               "64-bit integer range; use a smaller number", path=path)
        kind = "an integer" if integer else "a number"
        raise DatasetError(f'{what}[{bad}] "{key}" must be {kind}, got {brief(values[bad])}',
                           path=path)
    return arr


def int_column(items: list[dict[str, Any]], key: str, what: str, path: Path,
               default: Any = None) -> NDArray[np.int64]:
    """An integer key of every item as int64 (range checked)."""
    arr = column(items, key, "iu", what, path, default)
    if arr.dtype.kind == "u" and len(arr) and int(arr.max()) >= 2**63:
        bad = int(np.argmax(arr))
        raise DatasetError(f'{what}[{bad}] "{key}" = {int(arr[bad])} is outside the 64-bit '
                           "integer range; use a smaller number", path=path)
    return arr.astype(np.int64)


def size_column(items: list[dict[str, Any]], key: str, path: Path) -> NDArray[np.int32]:
    """``width`` or ``height`` of every image: whole numbers in [0, 2^31) (0: unknown)."""
    arr = column(items, key, "iuf", "images", path, 0)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > _MAX_SIZE) | (arr != np.floor(arr)) \
            if arr.dtype.kind == "f" else (arr < 0) | (arr > _MAX_SIZE)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f'images[{i}] (id {brief(items[i].get("id"))}) "{key}" = '
                           f"{brief(items[i].get(key))} is not a whole number of pixels in "
                           f"[0, {_MAX_SIZE}]; write the image's {key}", path=path)
    return arr.astype(np.int32)


def bboxes(anns: list[dict[str, Any]], path: Path) -> NDArray[np.float64]:
    """``bbox`` of every annotation as ``[M, 4]`` float64 (x, y, w, h)."""
    n = len(anns)
    if not n:
        return np.zeros((0, 4))
    try:
        arr = np.asarray([a["bbox"] for a in anns])
        if arr.shape == (n, 4) and arr.dtype.kind in "iuf":
            return arr.astype(np.float64)
    except (KeyError, ValueError, TypeError, OverflowError):
        pass
    for i, a in enumerate(anns):
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or first_bad(b, (int, float)) >= 0:
            raise DatasetError(f'annotation id {brief(a.get("id", "?"))} (annotations[{i}]) '
                               f"has bbox {brief(b)}; expected [x, y, width, height] numbers",
                               path=path)
    try:
        return np.asarray([a["bbox"] for a in anns], np.float64)
    except OverflowError:
        raise DatasetError("a bbox value is too large for a 64-bit float", path=path) from None


def _has_value(v: Any) -> bool:
    return v is not None and not (isinstance(v, (list, dict, str)) and not v)


def pass_through(items: list[dict[str, Any]], known: frozenset[str]) -> NDArray[Any] | None:
    """For every item, a dict of its keys outside ``known`` that hold a value (empty
    lists, objects, strings and null are not kept), or None; None when no item has one."""
    present = set().union(*items) if items else set()
    rows: dict[int, dict[str, Any]] = {}
    for key in sorted(present - known):  # one pass per key: most keys hold nothing
        for i, value in enumerate([r.get(key) for r in items]):
            if _has_value(value):
                rows.setdefault(i, {})[key] = value
    if not rows:
        return None
    out = np.full(len(items), None, dtype=object)
    for i, values in rows.items():
        out[i] = values
    return out
