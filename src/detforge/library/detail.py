"""``file_detail``: everything the index holds about one file (the web page's photo view)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from detforge.library.quality import exposure_label

__all__ = ["file_detail"]

_SKIP = frozenset({"video_summary", "hash"})


def file_detail(con: sqlite3.Connection, file_id: int) -> dict[str, Any] | None:
    """The file's row, its content's fields, detections, tags, tracks and copies.

    Returns:
        A JSON-ready dict, or None when no file has this id. ``detections`` holds the
        photo's boxes (``frame`` -1) or every sampled frame's (videos), in original pixels.
    """
    con_row = con.execute("SELECT id, path, kind, size, mtime_ns, date, error, hash FROM files "
                          "WHERE id = ?", (file_id,)).fetchone()
    if con_row is None:
        return None
    keys = ("id", "path", "kind", "size", "mtime_ns", "date", "error", "hash")
    out: dict[str, Any] = dict(zip(keys, con_row, strict=True))
    h = out["hash"]
    cur = con.execute("SELECT * FROM contents WHERE hash = ?", (h,))
    row = cur.fetchone()
    out["content"] = None
    out["detections"], out["tags"], out["tracks"], out["copies"] = [], [], [], []
    if row is None:
        return out
    names = [d[0] for d in cur.description]
    content = {k: v for k, v in zip(names, row, strict=True) if k not in _SKIP}
    if content.get("brightness") is not None:
        content["exposure"] = exposure_label(content["brightness"], content["dark_clip"] or 0,
                                             content["bright_clip"] or 0)
    if content.get("phash") is not None:
        content["phash"] = f"{content['phash'] & 0xFFFFFFFFFFFFFFFF:016x}"
    out["content"] = content
    summary = dict(zip(names, row, strict=True)).get("video_summary")
    out["video_summary"] = json.loads(summary) if summary else None
    out["detections"] = [
        {"frame": f, "t": t, "label": label, "score": s, "xyxy": [x1, y1, x2, y2],
         "track_id": tid}
        for f, t, label, s, x1, y1, x2, y2, tid in con.execute(
            "SELECT frame, t, label, score, x1, y1, x2, y2, track_id FROM detections "
            "WHERE hash = ? ORDER BY frame, score DESC", (h,))]
    out["tags"] = [{"tag": t, "score": s} for t, s in con.execute(
        "SELECT tag, score FROM tags WHERE hash = ? ORDER BY score DESC", (h,))]
    out["tracks"] = [dict(zip(("track_id", "label", "first_t", "last_t", "frames", "max_score"),
                              r, strict=True)) for r in con.execute(
        "SELECT track_id, label, first_t, last_t, frames, max_score FROM tracks WHERE hash = ? "
        "ORDER BY track_id", (h,))]
    out["copies"] = [{"id": i, "path": p} for i, p in con.execute(
        "SELECT id, path FROM files WHERE hash = ? AND id != ? ORDER BY path", (h, file_id))]
    return out
