"""The dataset catalogue: a local SQLite file recording every dataset version.

Each entry holds a dataset's name, content version (:mod:`detforge.data.version`), path,
format, source, licence, counts (images, boxes, boxes per class, images and boxes per
split) and its open validation findings (counts by severity and the findings as JSON,
from :func:`detforge.data.validate.validate`). A name can have several versions; adding
an unchanged dataset again returns the existing entry (and refreshes its path, source and
licence when given), so runs and models can point at one exact version. A version made from
another (``detforge active merge``) also records its parent version and the selection that
chose its new images (table ``lineage``).

The default file is ``$DETFORGE_HOME/catalog.sqlite`` (``DETFORGE_HOME`` defaults to
``~/.detforge``). Every write is one SQLite transaction.

Example:
    >>> cat = Catalog("catalog.sqlite")  # doctest: +SKIP
    >>> entry = cat.add("datasets/ppe", name="ppe", licence="CC-BY-4.0")  # doctest: +SKIP
    >>> cat.show("ppe").version == entry.version  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detforge.core.errors import DetforgeError
from detforge.data.dataset import UNSET_SPLIT, Dataset
from detforge.data.version import VERSION_LENGTH, dataset_digest

__all__ = ["Catalog", "CatalogError", "Entry", "default_catalog_path", "format_entries"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    path TEXT NOT NULL,
    format TEXT NOT NULL,
    source TEXT,
    licence TEXT,
    added TEXT NOT NULL,
    num_images INTEGER NOT NULL,
    num_boxes INTEGER NOT NULL,
    classes TEXT NOT NULL,
    class_counts TEXT NOT NULL,
    split_counts TEXT NOT NULL,
    findings_summary TEXT,
    findings TEXT,
    UNIQUE (name, digest)
);
CREATE INDEX IF NOT EXISTS datasets_version ON datasets (version);
"""
# Added without a schema bump: older readers ignore the table, newer ones join it.
_LINEAGE = """
CREATE TABLE IF NOT EXISTS lineage (
    name TEXT NOT NULL, digest TEXT NOT NULL, parent TEXT, selection TEXT,
    PRIMARY KEY (name, digest)
);
"""
_COLUMNS = ("name", "version", "digest", "path", "format", "source", "licence", "added",
            "num_images", "num_boxes", "classes", "class_counts", "split_counts",
            "findings_summary", "findings")
_JSON_COLUMNS = frozenset({"classes", "class_counts", "split_counts", "findings_summary",
                           "findings"})
NO_SPLIT = "unassigned"
"""Key of ``split_counts`` for images in no split."""


class CatalogError(DetforgeError):
    """A catalogue lookup failed or the catalogue file is unusable."""

    exit_code = 2


def default_catalog_path() -> Path:
    """``$DETFORGE_HOME/catalog.sqlite``, with ``DETFORGE_HOME`` defaulting to ``~/.detforge``."""
    home = os.environ.get("DETFORGE_HOME") or str(Path.home() / ".detforge")
    return Path(home).expanduser() / "catalog.sqlite"


@dataclass(frozen=True)
class Entry:
    """One dataset version in the catalogue.

    Attributes:
        name: Catalogue name (several versions may share it).
        version: Short content version (16 hex characters).
        digest: Full SHA-256 content digest.
        path: Absolute path of the dataset when it was added.
        format: Format it was read in (coco, yolo, voc, kitti).
        source: Where it came from (free text), or None.
        licence: Its licence, or None.
        added: When it was first added (ISO 8601, UTC).
        num_images: Number of images.
        num_boxes: Number of boxes.
        classes: Class names in id order.
        class_counts: Boxes per class name.
        split_counts: ``{split: {"images": n, "boxes": m}}`` (``unassigned`` for no split).
        findings_summary: Validation findings per severity, or None when
            ``detforge.data.validate`` was not available.
        findings: The validation findings as JSON objects, or None (as above).
        parent: Version of the dataset this one was derived from (``active merge``), or None.
        selection: How the added images were chosen (``active merge``), or None.
    """

    name: str
    version: str
    digest: str
    path: str
    format: str
    source: str | None
    licence: str | None
    added: str
    num_images: int
    num_boxes: int
    classes: list[str]
    class_counts: dict[str, int]
    split_counts: dict[str, dict[str, int]]
    findings_summary: dict[str, int] | None
    findings: list[dict[str, Any]] | None
    parent: str | None = None
    selection: dict[str, Any] | None = None

    def to_dict(self, *, with_findings: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``with_findings=False`` leaves out the findings list."""
        out = asdict(self)
        if not with_findings:
            out.pop("findings")
        return out

    def to_text(self) -> str:
        """Human-readable multi-line description."""
        findings = ("not validated (detforge.data.validate unavailable)"
                    if self.findings_summary is None else
                    ", ".join(f"{n} {sev}" for sev, n in self.findings_summary.items()))
        lines = [f"name:      {self.name}", f"version:   {self.version}",
                 f"digest:    {self.digest}", f"path:      {self.path}",
                 f"format:    {self.format}", f"source:    {self.source or '-'}",
                 f"licence:   {self.licence or '-'}", f"added:     {self.added}",
                 f"parent:    {self.parent or '-'}",
                 f"images:    {self.num_images}", f"boxes:     {self.num_boxes}",
                 f"findings:  {findings}", "classes:"]
        lines += [f"  {name}: {self.class_counts.get(name, 0)}" for name in self.classes]
        lines.append("splits:")
        lines += [f"  {split}: {c['images']} images, {c['boxes']} boxes"
                  for split, c in self.split_counts.items()]
        for f in (self.findings or [])[:20]:
            where = f"{f.get('file') or ''}{':' + str(f['line']) if f.get('line') else ''}"
            lines.append(f"  [{f.get('severity')}] {f.get('check')} {where} {f.get('message')}")
        if self.findings and len(self.findings) > 20:
            lines.append(f"  ... {len(self.findings) - 20} more (use --json for all)")
        return "\n".join(lines)


def format_entries(entries: list[Entry]) -> str:
    """A text table of entries, one line each (name, version, counts, findings, path)."""
    if not entries:
        return "the catalogue is empty; add a dataset with `detforge data catalog add DS --name N`"
    rows = [("NAME", "VERSION", "FORMAT", "IMAGES", "BOXES", "CLASSES", "ERR/WARN", "PATH")]
    for e in entries:
        s = e.findings_summary
        found = "-" if s is None else f"{s.get('error', 0)}/{s.get('warning', 0)}"
        rows.append((e.name, e.version, e.format, str(e.num_images), str(e.num_boxes),
                     str(len(e.classes)), found, e.path))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]])
                     for r in rows)


def _counts(dataset: Dataset) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    per_class = dict(zip(dataset.classes.names, dataset.class_counts().tolist(), strict=True))
    splits: dict[str, dict[str, int]] = {}
    boxes_per_image = [len(rows) for rows in dataset.boxes_per_image()]
    for split, n_boxes in zip(dataset.images.split.tolist(), boxes_per_image, strict=True):
        c = splits.setdefault(NO_SPLIT if split == UNSET_SPLIT else str(split),
                              {"images": 0, "boxes": 0})
        c["images"] += 1
        c["boxes"] += n_boxes
    return per_class, splits


def _validation(dataset: Dataset) -> tuple[dict[str, int] | None, list[dict[str, Any]] | None]:
    """Findings by severity and as JSON, or (None, None) without the validate module."""
    try:
        from detforge.data.validate import validate
    except ImportError as exc:
        if exc.name and exc.name.startswith("detforge.data.validate"):
            return None, None
        raise
    report = validate(dataset, check_images=True, progress=False).to_dict()
    findings: list[dict[str, Any]] = list(report.get("findings", []))
    summary = report.get("summary", {}).get("by_severity")
    if summary is None:
        summary = {}
        for f in findings:
            summary[str(f.get("severity"))] = summary.get(str(f.get("severity")), 0) + 1
    return {str(k): int(v) for k, v in summary.items()}, findings


class Catalog:
    """A dataset catalogue stored in one SQLite file.

    Args:
        path: The SQLite file (created with its folder on first write); None for
            :func:`default_catalog_path`.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_catalog_path()

    def _require_file(self) -> None:
        if not self.path.exists():
            raise CatalogError(f"{self.path}: no catalogue here yet; add a dataset with "
                               "`detforge data catalog add DS --name NAME` or pass --catalog")

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self._require_file()
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as conn:
                conn.row_factory = sqlite3.Row
                with conn:  # one transaction: committed on success, rolled back on error
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version > _SCHEMA_VERSION:
                        raise CatalogError(
                            f"{self.path}: catalogue schema {version} is newer than this "
                            f"detforge understands ({_SCHEMA_VERSION}); upgrade detforge")
                    if write and version < _SCHEMA_VERSION:
                        conn.executescript(_SCHEMA)
                        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                    if write:
                        conn.executescript(_LINEAGE)
                    yield conn
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.path}: not a usable catalogue file ({exc}); pass "
                               "another --catalog path or move this file away") from exc

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Entry]:
        if not self.path.exists():
            return []
        with self._connect(write=False) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                return []
            joined = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                  "name = 'lineage'").fetchone() is not None
            extra = ", l.parent, l.selection" if joined else ", NULL, NULL"
            join = " LEFT JOIN lineage l USING (name, digest)" if joined else ""
            rows = conn.execute(f"SELECT {', '.join('d.' + c for c in _COLUMNS)}{extra} FROM "
                                f"datasets d{join} {where} ORDER BY d.name, d.id",
                                args).fetchall()
        return [_entry(row) for row in rows]

    def add(self, dataset_path: str | Path, *, name: str, source: str | None = None,
            licence: str | None = None, fmt: str | None = None, parent: str | None = None,
            selection: dict[str, Any] | None = None) -> Entry:
        """Read, hash and validate a dataset and record it under ``name``.

        Args:
            dataset_path: The dataset (file or folder), in any supported format.
            name: Catalogue name; several versions can share it.
            source: Where the data came from (URL, team, vendor).
            licence: Its licence (e.g. ``CC-BY-4.0``).
            fmt: Format name; detected when None.
            parent: Version of the dataset this one derives from.
            selection: JSON-ready record of how its new images were chosen.

        Returns:
            The new entry, or the existing one if this exact content is already under
            ``name`` (its path, source and licence refreshed when given).

        Raises:
            CatalogError: ``name`` is empty or the catalogue file is unusable.
            DatasetError: The dataset cannot be read or an image cannot be hashed.
        """
        from detforge.data.formats import read_dataset

        if not name.strip():
            raise CatalogError("a catalogue name must not be empty; pass --name NAME")
        dataset = read_dataset(dataset_path, fmt)
        digest = dataset_digest(dataset)
        path = str(Path(dataset_path).resolve())
        existing = self._find(name, digest)
        if existing is not None:
            with self._connect(write=True) as conn:
                conn.execute("UPDATE datasets SET path = ?, source = COALESCE(?, source), "
                             "licence = COALESCE(?, licence) WHERE name = ? AND digest = ?",
                             (path, source, licence, name, digest))
            self._link(name, digest, parent, selection)
            found = self._find(name, digest)
            return existing if found is None else found
        per_class, per_split = _counts(dataset)
        summary, findings = _validation(dataset)
        values: dict[str, Any] = {
            "name": name, "version": digest[:VERSION_LENGTH], "digest": digest, "path": path,
            "format": str(dataset.info.get("format", fmt or "")), "source": source,
            "licence": licence, "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "num_images": dataset.num_images, "num_boxes": dataset.num_boxes,
            "classes": list(dataset.classes.names), "class_counts": per_class,
            "split_counts": per_split, "findings_summary": summary, "findings": findings}
        row = tuple(json.dumps(values[c]) if c in _JSON_COLUMNS and values[c] is not None
                    else values[c] for c in _COLUMNS)
        with self._connect(write=True) as conn:
            conn.execute(f"INSERT OR IGNORE INTO datasets ({', '.join(_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(_COLUMNS))})", row)
        self._link(name, digest, parent, selection)
        entry = self._find(name, digest)
        if entry is None:  # cannot happen after a committed insert; keep mypy and users honest
            raise CatalogError(f"{self.path}: the entry for {name!r} vanished after insert")
        return entry

    def _link(self, name: str, digest: str, parent: str | None,
              selection: dict[str, Any] | None) -> None:
        if parent is None and selection is None:
            return
        with self._connect(write=True) as conn:
            conn.execute("INSERT OR REPLACE INTO lineage (name, digest, parent, selection) "
                         "VALUES (?, ?, ?, ?)", (name, digest, parent,
                                                 None if selection is None
                                                 else json.dumps(selection)))

    def _find(self, name: str, digest: str) -> Entry | None:
        rows = self._rows("WHERE d.name = ? AND d.digest = ?", (name, digest))
        return rows[0] if rows else None

    def list(self) -> list[Entry]:
        """Every entry, sorted by name then by the order they were added."""
        return self._rows()

    def show(self, name_or_version: str) -> Entry:
        """Look up an entry by name (its latest version), ``name@version`` or version.

        A version may be given as any prefix of 4 or more hex characters of the digest.

        Raises:
            CatalogError: Nothing matches (the message lists the known names), or a
                version prefix matches several datasets.
        """
        self._require_file()
        key = name_or_version.strip()
        name, _, version = key.partition("@")
        by_name = self._rows("WHERE d.name = ?", (name,))
        if by_name and not version:
            return by_name[-1]
        prefix = (version or key).lower()
        if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            matches = [e for e in (by_name if version else self.list())
                       if e.digest.startswith(prefix)]
            if len({e.digest for e in matches}) == 1:
                return matches[-1]
            if matches:
                raise CatalogError(
                    f"version {prefix!r} is ambiguous: it matches "
                    f"{sorted({f'{e.name}@{e.version}' for e in matches})}; give more digits")
        known = sorted({e.name for e in self.list()})
        raise CatalogError(
            f"no dataset {key!r} in the catalogue {self.path}; known names: {known or 'none'}. "
            "Use a name, NAME@VERSION or a version from `detforge data catalog list`.")


def _entry(row: sqlite3.Row) -> Entry:
    values = {c: (json.loads(row[i]) if c in _JSON_COLUMNS and row[i] is not None else row[i])
              for i, c in enumerate(_COLUMNS)}
    selection = row[len(_COLUMNS) + 1]
    return Entry(**values, parent=row[len(_COLUMNS)],
                 selection=None if selection is None else json.loads(selection))
