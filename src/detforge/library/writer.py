"""Batched, crash-safe writes to the index.

Every unit of work (one analysed file with its detections, tags and thumbnail; one moved
file; one error) is a closure queued here; queued units are committed together in one
transaction every ``commit_every`` units or ``max_delay_s`` seconds. A unit is complete
within its transaction, so a process killed at any instant leaves whole units or nothing:
the next run redoes what was lost. Upserts are keyed by content hash (``contents`` and its
child tables) and by path (``files``), so redoing a unit never duplicates a row.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from detforge.library.walk import FileEntry

__all__ = ["ContentRecord", "FileOutcome", "Writer", "now_iso"]

Unit = Callable[[sqlite3.Connection], None]
# The camera as search sees it: "make model", or just one of them, or NULL.
_CAMERA = "nullif(trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, '')), '')"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mtime_iso(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")


@dataclass(slots=True)
class ContentRecord:
    """The analysis of one content (photo or video), ready to store.

    Attributes:
        hash: SHA-256 of the bytes.
        kind: ``image`` or ``video``.
        columns: ``contents`` columns set by the phases that ran.
        phases: The phases that ran.
        detections: ``(frame, t, label, score, x1, y1, x2, y2, track_id)`` rows, or None
            when the objects phase did not run.
        tags: ``(tag, score)`` pairs, or None when the tags phase did not run.
        tracks: ``(track_id, label, first_t, last_t, frames, max_score)`` rows (videos).
        thumb: JPEG thumbnail.
    """

    hash: str
    kind: str
    columns: dict[str, Any]
    phases: frozenset[str]
    detections: Sequence[tuple[Any, ...]] | None = None
    tags: Sequence[tuple[str, float]] | None = None
    tracks: Sequence[tuple[Any, ...]] | None = None
    thumb: bytes | None = None


@dataclass
class FileOutcome:
    """Counters of what the writer did to ``files`` (read after :meth:`Writer.close`)."""

    added: int = 0
    updated: int = 0
    moved: int = 0


class Writer:
    """Queue units and commit them in batches (thread-safe).

    Args:
        con: The writable connection, in autocommit mode
            (:func:`~detforge.library.store.open_store`).
        commit_every: Units per transaction.
        max_delay_s: Longest a queued unit waits for its commit.
    """

    def __init__(self, con: sqlite3.Connection, *, commit_every: int = 64,
                 max_delay_s: float = 1.0) -> None:
        self.con = con
        self.commit_every = max(1, commit_every)
        self.max_delay_s = max_delay_s
        self.outcome = FileOutcome()
        self.committed = 0
        self._units: list[Unit] = []
        self._queued_contents: set[str] = set()
        self._lock = threading.Lock()
        self._last = time.monotonic()

    # -- queueing -------------------------------------------------------------------------
    def content(self, record: ContentRecord, files: Iterable[FileEntry]) -> None:
        """Store an analysed content and point ``files`` at it."""
        entries = list(files)
        with self._lock:
            self._queued_contents.add(record.hash)
        self._queue(lambda con: self._write_content(con, record, entries))

    def is_queued(self, hash_: str) -> bool:
        """Whether the content ``hash_`` is queued and not yet committed."""
        with self._lock:
            return hash_ in self._queued_contents

    def link(self, entry: FileEntry, hash_: str) -> None:
        """Point ``entry`` at an already analysed content (unchanged, moved or copied)."""
        self._queue(lambda con: self._write_file(con, entry, hash_, None))

    def error(self, entry: FileEntry, hash_: str | None, message: str) -> None:
        """Record that ``entry`` could not be analysed, and why."""
        self._queue(lambda con: self._write_file(con, entry, hash_, message))

    def flush(self) -> None:
        """Commit everything queued."""
        with self._lock:
            self._commit()

    def close(self) -> None:
        """Commit everything queued (the connection stays open)."""
        self.flush()

    def _queue(self, unit: Unit) -> None:
        with self._lock:
            self._units.append(unit)
            if (len(self._units) >= self.commit_every
                    or time.monotonic() - self._last >= self.max_delay_s):
                self._commit()

    def _commit(self) -> None:
        self._last = time.monotonic()
        if not self._units:
            return
        units, self._units = self._units, []
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            for unit in units:
                unit(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self.committed += len(units)
        self._queued_contents.clear()

    # -- units ----------------------------------------------------------------------------
    def _write_file(self, con: sqlite3.Connection, entry: FileEntry, hash_: str | None,
                    error: str | None) -> None:
        from detforge.library.formats import media_kind

        now = now_iso()
        taken_at = camera = sharpness = None
        if hash_ is not None and error is None:
            row = con.execute("SELECT taken_at, " + _CAMERA + ", sharpness FROM contents "
                              "WHERE hash=?", (hash_,)).fetchone()
            if row is not None:
                taken_at, camera, sharpness = row
        date = taken_at or _mtime_iso(entry.mtime_ns)
        values = (hash_, media_kind(entry.kind), entry.size, entry.mtime_ns, date, camera,
                  sharpness, error, now)
        sets = ("hash=?, kind=?, size=?, mtime_ns=?, date=?, camera=?, sharpness=?, error=?, "
                "updated_at=?")
        found = con.execute("SELECT id FROM files WHERE path=?", (entry.path,)).fetchone()
        if found is not None:
            con.execute(f"UPDATE files SET {sets} WHERE id=?", (*values, found[0]))
            self.outcome.updated += 1
            return
        if hash_ is not None:  # a moved file: a row with this content whose path is gone
            for row_id, old in con.execute("SELECT id, path FROM files WHERE hash=?",
                                           (hash_,)).fetchall():
                if not os.path.lexists(old):
                    con.execute(f"UPDATE files SET path=?, {sets} WHERE id=?",
                                (entry.path, *values, row_id))
                    self.outcome.moved += 1
                    return
        con.execute("INSERT INTO files (path, hash, kind, size, mtime_ns, date, camera, "
                    "sharpness, error, updated_at, first_seen) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (entry.path, *values, now))
        self.outcome.added += 1

    def _write_content(self, con: sqlite3.Connection, record: ContentRecord,
                       entries: Sequence[FileEntry]) -> None:
        h = record.hash
        old = con.execute("SELECT phases FROM contents WHERE hash=?", (h,)).fetchone()
        done = set(filter(None, old[0].split(","))) if old else set()
        cols: Mapping[str, Any] = {**record.columns, "kind": record.kind,
                                   "phases": ",".join(sorted(done | record.phases)),
                                   "analysed_at": now_iso()}
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        updates = ", ".join(f"{k}=excluded.{k}" for k in cols)
        con.execute(f"INSERT INTO contents (hash, {names}) VALUES (?, {marks}) "
                    f"ON CONFLICT(hash) DO UPDATE SET {updates}", (h, *cols.values()))
        if record.detections is not None:
            con.execute("DELETE FROM detections WHERE hash=?", (h,))
            con.execute("DELETE FROM objects WHERE hash=?", (h,))
            con.executemany("INSERT INTO detections (hash, frame, t, label, score, x1, y1, x2, "
                            "y2, track_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(h, *row) for row in record.detections])
            con.execute("INSERT INTO objects (label, hash, count, max_score) SELECT label, hash, "
                        "count(*), max(score) FROM detections WHERE hash=? GROUP BY label",
                        (h,))
        if record.tracks is not None:
            con.execute("DELETE FROM tracks WHERE hash=?", (h,))
            con.executemany("INSERT INTO tracks (hash, track_id, label, first_t, last_t, frames, "
                            "max_score) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(h, *row) for row in record.tracks])
        if record.tags is not None:
            con.execute("DELETE FROM tags WHERE hash=?", (h,))
            con.executemany("INSERT INTO tags (tag, hash, score) VALUES (?, ?, ?)",
                            [(tag, h, score) for tag, score in record.tags])
        if record.thumb is not None:
            con.execute("INSERT OR REPLACE INTO thumbnails (hash, jpeg) VALUES (?, ?)",
                        (h, record.thumb))
        # other files of this content (copies not met in this run) get its new columns
        con.execute("UPDATE files SET camera=(SELECT " + _CAMERA + " FROM contents WHERE "
                    "hash=?1), sharpness=(SELECT sharpness FROM contents WHERE hash=?1), "
                    "date=coalesce((SELECT taken_at FROM contents WHERE hash=?1), date) "
                    "WHERE hash=?1 AND error IS NULL", (h,))
        for entry in entries:
            self._write_file(con, entry, h, None)
