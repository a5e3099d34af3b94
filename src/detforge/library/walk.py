"""Walk a library folder tree, lazily, in a stable order.

Hidden files and folders (names starting with ``.``) are skipped, as photo managers and
``ls`` do: they hold caches (``.thumbnails``), sidecar stores and system files
(``.DS_Store``). So is the index database itself (and its ``-wal`` / ``-shm`` files) when
it lies inside the tree. Symbolic links to folders are not followed (no cycles); links to
files are indexed under their own path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detforge.library.formats import Kind, kind_of

__all__ = ["FileEntry", "count_files", "walk"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file found under the library root.

    Attributes:
        path: Absolute path.
        size: Bytes.
        mtime_ns: Modification time, nanoseconds since the epoch.
        kind: Decoder family from the suffix (:func:`~detforge.library.formats.kind_of`).
    """

    path: str
    size: int
    mtime_ns: int
    kind: Kind


def walk(root: str | Path, *, exclude: frozenset[str] = frozenset()) -> Iterator[FileEntry]:
    """Every non-hidden regular file under ``root``, depth first, sorted by name per folder.

    Args:
        root: The library folder (or a single file).
        exclude: Absolute paths to leave out (the database and its journal files).

    Yields:
        One :class:`FileEntry` per file; files that vanish or cannot be ``stat``-ed
        while walking are left out (the next run sees them again).
    """
    root = Path(root).absolute()
    if root.is_file():
        st = root.stat()
        yield FileEntry(str(root), st.st_size, st.st_mtime_ns, kind_of(root))
        return
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                    continue
                if not entry.is_file() or entry.path in exclude:
                    continue
                st = entry.stat()
            except OSError:
                continue
            yield FileEntry(entry.path, st.st_size, st.st_mtime_ns, kind_of(entry.name))
        stack.extend(reversed(subdirs))


def count_files(root: str | Path, *, exclude: frozenset[str] = frozenset()) -> int:
    """How many files :func:`walk` will yield (for the progress bar's total)."""
    return sum(1 for _ in walk(root, exclude=exclude))
