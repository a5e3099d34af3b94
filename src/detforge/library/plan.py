"""What a run must do with each file: skip it, point it at known content, or analyse it.

A file whose path, size and modification time match its row is unchanged and skipped
without reading it (when its content has every phase asked for). Any other file is hashed
(a small thread pool reads ahead of the analysis); a hash whose content is already
analysed is *linked* (a moved, renamed, copied or touched file: no decode), otherwise the
file is analysed. Two new copies of one content in the same run are analysed once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

from detforge.library.hashing import file_sha256
from detforge.library.walk import FileEntry

__all__ = ["ALL_PHASES", "IMAGE_PHASES", "VIDEO_PHASES", "Decision", "InFlight", "Planner",
           "ordered_map"]

ALL_PHASES = ("meta", "quality", "objects", "tags", "video")
IMAGE_PHASES = frozenset({"meta", "quality", "objects", "tags"})
VIDEO_PHASES = frozenset({"meta", "video", "tags"})

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, *,
                window: int) -> Iterator[R]:
    """``map(fn, items)`` on ``pool``, in input order, with at most ``window`` in flight
    (memory stays flat however long ``items`` is)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one file.

    Attributes:
        action: ``skip`` (unchanged), ``link`` (known content), ``analyse``, ``duplicate``
            (a copy of content being analysed in this run), ``error`` (unreadable),
            ``other`` (not a supported format).
        entry: The file.
        hash: Its content hash (None for ``skip`` without reading, ``error``, ``other``).
        reason: Why, for ``error`` and ``other``.
    """

    action: Literal["skip", "link", "analyse", "duplicate", "error", "other"]
    entry: FileEntry
    hash: str | None = None
    reason: str | None = None


class InFlight:
    """Contents being analysed, and the other new copies waiting for them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[FileEntry]] = {}

    def claim(self, hash_: str) -> bool:
        """Mark ``hash_`` as being analysed; False when it already is."""
        with self._lock:
            if hash_ in self._waiting:
                return False
            self._waiting[hash_] = []
            return True

    def add_copy(self, hash_: str, entry: FileEntry) -> bool:
        """Make ``entry`` wait for the analysis of ``hash_``; False when none is running."""
        with self._lock:
            waiting = self._waiting.get(hash_)
            if waiting is None:
                return False
            waiting.append(entry)
            return True

    def release(self, hash_: str) -> list[FileEntry]:
        """The analysis of ``hash_`` is done (or failed): the copies that waited for it."""
        with self._lock:
            return self._waiting.pop(hash_, [])

    def release_into(self, hash_: str, store: Callable[[list[FileEntry]], None]) -> int:
        """Release ``hash_`` and queue its result with ``store(copies)`` in one step, so the
        planner sees the hash either in flight or queued, never neither. Returns the number
        of copies."""
        with self._lock:
            copies = self._waiting.pop(hash_, [])
            store(copies)
            return len(copies)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


class Planner:
    """Decides, file by file, what an index run does (see the module docstring).

    Args:
        con: A connection used only by the planner's thread (reads committed rows).
        phases: Phases asked for.
        objects_model: Identity of the detector (None: no detector).
        tags_model: Identity of the tagger (None: no tagger).
        retry_errors: Analyse again unchanged files that failed before.
        queued: Whether a content is stored but not yet committed (the writer's queue).
    """

    def __init__(self, con: sqlite3.Connection, *, phases: frozenset[str],
                 objects_model: str | None, tags_model: str | None,
                 retry_errors: bool = False,
                 queued: Callable[[str], bool] = lambda h: False) -> None:
        self.con = con
        self.queued = queued
        self.phases = phases
        self.objects_model = objects_model
        self.tags_model = tags_model
        self.retry_errors = retry_errors
        self.in_flight = InFlight()

    def needed(self, kind: str) -> frozenset[str]:
        """The phases a file of this kind gets in this run."""
        return self.phases & (VIDEO_PHASES if kind == "video" else IMAGE_PHASES)

    def complete(self, hash_: str, kind: str) -> bool:
        """Whether the content ``hash_`` already has every phase this run would give it."""
        row = self.con.execute("SELECT phases, objects_model, tags_model FROM contents "
                               "WHERE hash=?", (hash_,)).fetchone()
        if row is None:
            return False
        need = self.needed(kind)
        if not need <= set(row[0].split(",")):
            return False
        if ({"objects", "video"} & need) and row[1] != self.objects_model:
            return False
        return not ("tags" in need and row[2] != self.tags_model)

    def _by_stat(self, entry: FileEntry) -> Decision | tuple[FileEntry, str | None]:
        row = self.con.execute("SELECT hash, size, mtime_ns, error FROM files WHERE path=?",
                               (entry.path,)).fetchone()
        same = row is not None and row[1] == entry.size and row[2] == entry.mtime_ns
        if entry.kind == "other":
            if same:
                return Decision("skip", entry)
            return Decision("other", entry, reason=f"unsupported file type "
                            f"{entry.path.rsplit('.', 1)[-1] if '.' in entry.path else '(none)'}"
                            f"; not a photo or video format detforge reads")
        if same and row is not None:
            if row[3] is not None and not self.retry_errors:
                return Decision("skip", entry)
            if row[0] is not None and row[3] is None and self.complete(row[0], entry.kind):
                return Decision("skip", entry)
            return entry, row[0]
        return entry, None

    def decisions(self, entries: Iterable[FileEntry], pool: ThreadPoolExecutor, *,
                  window: int = 8) -> Iterator[Decision]:
        """One :class:`Decision` per entry, in order; hashing runs ahead on ``pool``."""

        def first_pass() -> Iterator[Decision | tuple[FileEntry, str | None]]:
            for entry in entries:
                yield self._by_stat(entry)

        def hashed(item: Decision | tuple[FileEntry, str | None]) -> Decision | tuple[
                FileEntry, str]:
            if isinstance(item, Decision):
                return item
            entry, known = item
            if known is not None:
                return entry, known
            try:
                return entry, file_sha256(entry.path)
            except OSError as exc:
                return Decision("error", entry, reason=f"cannot read the file "
                                f"({exc.strerror or exc})")

        for item in ordered_map(hashed, first_pass(), pool, window=window):
            if isinstance(item, Decision):
                yield item
                continue
            entry, h = item
            if self.in_flight.add_copy(h, entry):
                yield Decision("duplicate", entry, h)
            elif self.queued(h) or self.complete(h, entry.kind) or not self.in_flight.claim(h):
                yield Decision("link", entry, h)
            else:
                yield Decision("analyse", entry, h)
