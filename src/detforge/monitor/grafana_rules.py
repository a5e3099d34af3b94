"""Grafana's dashboard rules, encoded from its source, to check a dashboard without Grafana.

Grafana does not run here, so :func:`check_dashboard` applies the rules its classic
dashboard schema states. Sources (grafana/grafana):

* ``kinds/dashboard/dashboard_kind.cue`` (commit 00139e84): the dashboard fields and their
  types (``style`` light | dark, ``graphTooltip`` 0 | 1 | 2, ``schemaVersion`` uint16,
  ``refresh`` a string or false, ``time.from``/``to`` strings); ``#Panel``: ``type`` a
  non-empty string, ``id`` uint32, ``transformations``, ``options`` and ``fieldConfig``
  (``defaults`` + ``overrides``) present; ``#GridPos``: ``h > 0``, ``0 < w <= 24``,
  ``0 <= x < 24``, ``y >= 0``; ``#RowPanel``: ``type: "row"``, ``collapsed`` bool, ``id``
  and ``panels``; ``#ThresholdsConfig``: ``mode`` absolute | percentage, ``steps`` sorted
  by value, the first one -Infinity (null in JSON); ``#FieldColorModeId``; ``#VariableModel``:
  ``type`` one of #VariableType, ``name``, ``hide`` 0 | 1 | 2; ``#AnnotationQuery``: ``name``,
  ``datasource``, ``enable``, ``iconColor``.
* ``public/app/core/constants.ts``: ``GRID_COLUMN_COUNT = 24`` (so ``x + w <= 24``).
* The dashboard grid (react-grid-layout) packs panels that overlap; a generated dashboard
  whose panels overlap would be rearranged, so overlaps are errors here.
* ``public/app/plugins/panel/``: the core panel plugins (those listed in
  :data:`CORE_PANELS`); a panel of another type needs a plugin installed.

Every query (``targets[].expr``) is checked separately by promtool
(:func:`detforge.monitor.promtool.check_expressions`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeGuard

__all__ = ["CORE_PANELS", "DASHBOARD_KEYS", "check_dashboard"]

DASHBOARD_KEYS = frozenset({
    "id", "uid", "title", "description", "revision", "gnetId", "tags", "style", "timezone",
    "editable", "graphTooltip", "time", "timepicker", "fiscalYearStartMonth", "liveNow",
    "weekStart", "refresh", "schemaVersion", "version", "panels", "templating", "annotations",
    "links", "snapshot"})
"""Fields of ``spec`` in dashboard_kind.cue."""
CORE_PANELS = frozenset({"timeseries", "stat", "gauge", "bargauge", "barchart", "table",
                         "heatmap", "histogram", "piechart", "text", "logs", "state-timeline",
                         "status-history", "row"})
VARIABLE_TYPES = frozenset({"query", "adhoc", "constant", "datasource", "interval", "textbox",
                            "custom", "system"})
COLOR_MODES = frozenset({"thresholds", "palette-classic", "palette-saturated",
                         "continuous-GrYlRd", "fixed"})
GRID_COLUMNS = 24


def _is_uint(value: Any, bits: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**bits


def check_dashboard(board: dict[str, Any]) -> list[str]:
    """Every rule ``board`` breaks, as ``"where: what"`` lines (empty: it passes).

    Example:
        >>> check_dashboard({"schemaVersion": 39, "graphTooltip": 3, "panels": []})
        ['dashboard.graphTooltip: must be 0, 1 or 2, got 3']
    """
    return list(_dashboard(board))


def _dashboard(b: dict[str, Any]) -> Iterator[str]:
    for key in sorted(set(b) - DASHBOARD_KEYS):
        yield f"dashboard.{key}: not a dashboard field (dashboard_kind.cue)"
    if "style" in b and b["style"] not in ("light", "dark"):
        yield f"dashboard.style: must be light or dark, got {b['style']!r}"
    if b.get("graphTooltip", 0) not in (0, 1, 2):
        yield f"dashboard.graphTooltip: must be 0, 1 or 2, got {b.get('graphTooltip')!r}"
    if not _is_uint(b.get("schemaVersion"), 16):
        yield f"dashboard.schemaVersion: must be a uint16, got {b.get('schemaVersion')!r}"
    if "editable" in b and not isinstance(b["editable"], bool):
        yield "dashboard.editable: must be a bool"
    if "refresh" in b and not (isinstance(b["refresh"], str) or b["refresh"] is False):
        yield "dashboard.refresh: must be an interval string or false"
    uid = b.get("uid")
    if uid is not None and not (isinstance(uid, str) and 1 <= len(uid) <= 40):
        yield f"dashboard.uid: must be a string of at most 40 characters, got {uid!r}"
    time = b.get("time")
    if time is not None and not (isinstance(time, dict) and isinstance(time.get("from"), str)
                                 and isinstance(time.get("to"), str)):
        yield "dashboard.time: needs string 'from' and 'to'"
    if "tags" in b and not all(isinstance(t, str) for t in b["tags"]):
        yield "dashboard.tags: must be strings"
    yield from _panels(b.get("panels", []))
    for i, var in enumerate((b.get("templating") or {}).get("list", [])):
        where = f"templating.list[{i}]"
        if var.get("type") not in VARIABLE_TYPES:
            yield f"{where}.type: {var.get('type')!r} is not one of {sorted(VARIABLE_TYPES)}"
        if not isinstance(var.get("name"), str) or not var.get("name"):
            yield f"{where}.name: required"
        if var.get("hide", 0) not in (0, 1, 2):
            yield f"{where}.hide: must be 0, 1 or 2"
    for i, ann in enumerate((b.get("annotations") or {}).get("list", [])):
        for key in ("name", "datasource", "enable", "iconColor"):
            if key not in ann:
                yield f"annotations.list[{i}].{key}: required (#AnnotationQuery)"


def _panels(panels: list[dict[str, Any]]) -> Iterator[str]:
    ids: set[int] = set()
    boxes: list[tuple[str, int, int, int, int]] = []
    flat = []
    for p in panels:
        flat.append(p)
        if p.get("type") == "row":
            flat.extend(p.get("panels", []))
    for p in flat:
        where = f"panel {p.get('id')!r} ({p.get('title', '')})"
        kind = p.get("type")
        if not isinstance(kind, str) or not kind:
            yield f"{where}.type: must be a non-empty string"
        elif kind not in CORE_PANELS:
            yield f"{where}.type: {kind!r} is not a core panel plugin; install it or use one " \
                  f"of {sorted(CORE_PANELS)}"
        pid = p.get("id")
        if not _is_uint(pid, 32):
            yield f"{where}.id: must be a uint32"
        elif pid in ids:
            yield f"{where}.id: duplicate panel id"
        else:
            ids.add(pid)
        if kind == "row":
            if not isinstance(p.get("collapsed"), bool):
                yield f"{where}.collapsed: a row needs a bool"
            if not isinstance(p.get("panels"), list):
                yield f"{where}.panels: a row needs a list"
        else:
            yield from _panel_body(p, where)
        pos = p.get("gridPos")
        if pos is not None:
            yield from _grid(pos, where)
            if all(isinstance(pos.get(k), int) for k in "xywh"):
                boxes.append((where, pos["x"], pos["y"], pos["w"], pos["h"]))
    for i, (wa, xa, ya, wwa, ha) in enumerate(boxes):
        for wb, xb, yb, wwb, hb in boxes[i + 1:]:
            if xa < xb + wwb and xb < xa + wwa and ya < yb + hb and yb < ya + ha:
                yield f"{wa} overlaps {wb} on the grid"


def _grid(pos: dict[str, Any], where: str) -> Iterator[str]:
    h: Any = pos.get("h")
    w: Any = pos.get("w")
    x: Any = pos.get("x")
    y: Any = pos.get("y")
    if not (_is_uint(h, 32) and h > 0):
        yield f"{where}.gridPos.h: must be > 0, got {h!r}"
    if not (_is_uint(w, 32) and 0 < w <= GRID_COLUMNS):
        yield f"{where}.gridPos.w: must be in 1..24, got {w!r}"
    if not (_is_uint(x, 32) and x < GRID_COLUMNS):
        yield f"{where}.gridPos.x: must be in 0..23, got {x!r}"
    if not _is_uint(y, 32):
        yield f"{where}.gridPos.y: must be >= 0, got {y!r}"
    if isinstance(x, int) and isinstance(w, int) and x + w > GRID_COLUMNS:
        yield f"{where}.gridPos: x + w = {x + w} is past the {GRID_COLUMNS} grid columns"


def _panel_body(p: dict[str, Any], where: str) -> Iterator[str]:
    for key, kind in (("options", dict), ("fieldConfig", dict), ("transformations", list)):
        if not isinstance(p.get(key), kind):
            yield f"{where}.{key}: required ({kind.__name__})"
    fc = p.get("fieldConfig")
    if isinstance(fc, dict):
        if not isinstance(fc.get("defaults"), dict) or not isinstance(fc.get("overrides"), list):
            yield f"{where}.fieldConfig: needs defaults (object) and overrides (list)"
        defaults = fc.get("defaults") or {}
        color = defaults.get("color")
        if color is not None and color.get("mode") not in COLOR_MODES:
            yield f"{where}.fieldConfig.defaults.color.mode: {color.get('mode')!r} unknown"
        th = defaults.get("thresholds")
        if th is not None:
            if th.get("mode") not in ("absolute", "percentage"):
                yield f"{where}.thresholds.mode: must be absolute or percentage"
            steps = th.get("steps", [])
            if not steps or steps[0].get("value") is not None:
                yield f"{where}.thresholds.steps: the first step's value must be null " \
                      f"(-Infinity)"
            values = [s.get("value") for s in steps[1:]]
            if any(v is None for v in values) or values != sorted(values):
                yield f"{where}.thresholds.steps: values must be sorted"
            if any("color" not in s for s in steps):
                yield f"{where}.thresholds.steps: every step needs a color"
    refs = [t.get("refId") for t in p.get("targets", [])]
    if len(refs) != len(set(refs)) or any(not r for r in refs):
        yield f"{where}.targets: refIds must be present and unique, got {refs}"
