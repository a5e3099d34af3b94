"""``library_stats``: what an index holds, in numbers."""

from __future__ import annotations

import sqlite3
from typing import Any

from detforge.library.store import schema_version

__all__ = ["library_stats"]


def library_stats(con: sqlite3.Connection, *, top: int = 10) -> dict[str, Any]:
    """Counts of an index: files by kind and format, errors, dates, cameras, objects, tags.

    Args:
        con: An open index.
        top: How many cameras, objects and tags to list.

    Returns:
        A JSON-ready dict.

    Example:
        >>> library_stats(con)["files"]  # doctest: +SKIP
        5372
    """

    def one(sql: str, *args: Any) -> Any:
        return con.execute(sql, args).fetchone()[0]

    def pairs(sql: str, *args: Any) -> dict[str, int]:
        return {str(k): int(v) for k, v in con.execute(sql, args)}

    return {
        "schema_version": schema_version(con),
        "files": one("SELECT count(*) FROM files"),
        "bytes": one("SELECT coalesce(sum(size), 0) FROM files"),
        "by_kind": pairs("SELECT kind, count(*) FROM files GROUP BY kind ORDER BY kind"),
        "by_format": pairs("SELECT c.format, count(*) FROM files f JOIN contents c "
                           "ON c.hash = f.hash GROUP BY c.format ORDER BY count(*) DESC"),
        "errors": one("SELECT count(*) FROM files WHERE error IS NOT NULL AND kind != 'other'"),
        "unsupported": one("SELECT count(*) FROM files WHERE kind = 'other'"),
        "contents": one("SELECT count(*) FROM contents"),
        "exact_duplicate_files": one(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM files "
            "WHERE hash IS NOT NULL AND error IS NULL GROUP BY hash)"),
        "first_date": one("SELECT min(date) FROM files WHERE error IS NULL AND kind != 'other'"),
        "last_date": one("SELECT max(date) FROM files WHERE error IS NULL AND kind != 'other'"),
        "video_seconds": round(float(one("SELECT coalesce(sum(duration_s), 0) FROM contents "
                                         "WHERE kind = 'video'")), 1),
        "cameras": pairs("SELECT trim(coalesce(c.camera_make, '') || ' ' || c.camera_model), "
                         "count(*) FROM files f JOIN contents c ON c.hash = f.hash WHERE "
                         "c.camera_model IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT ?", top),
        "objects": pairs("SELECT label, count(*) FROM objects GROUP BY label "
                         "ORDER BY 2 DESC, 1 LIMIT ?", top),
        "tags": pairs("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY 2 DESC, 1 LIMIT ?",
                      top),
        "phases": pairs("SELECT phases, count(*) FROM contents GROUP BY phases ORDER BY 2 DESC"),
    }
