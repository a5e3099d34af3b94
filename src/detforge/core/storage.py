"""Disk-full and permission failures as one line: the path, the free space, the space needed.

``OSError`` with ``ENOSPC`` (or a quota, a read-only file system, a file-size limit, a
permission) deep inside a writer becomes a :class:`~detforge.core.errors.StorageError`:

    StorageError: out/coco: no space left on device (1.0 MiB free on /mnt/small; about
    18.4 MiB needed). Free space there or write to another disk

The CLI turns any such ``OSError`` that reaches it into this message (without the estimate);
commands that can estimate what they need wrap their work in :func:`storage_errors`.

Example:
    >>> with storage_errors(out, needed=lambda: tree_size(src)):  # doctest: +SKIP
    ...     convert(src, out, to="coco")
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from detforge.core.errors import StorageError

__all__ = ["STORAGE_ERRNOS", "format_bytes", "free_bytes", "storage_error", "storage_errors",
           "tree_size"]

_SPACE = {errno.ENOSPC: "no space left on device",
          errno.EDQUOT: "disk quota exceeded",
          errno.EFBIG: "file too large for the file system or the process's size limit"}
_ACCESS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
           errno.EROFS: "read-only file system"}
STORAGE_ERRNOS = frozenset(_SPACE) | frozenset(_ACCESS)
"""The ``errno`` values turned into :class:`StorageError`."""

Needed = int | Callable[[], int | None] | None


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def free_bytes(path: str | Path) -> tuple[int, Path] | None:
    """Free bytes (for this user) on the file system holding ``path``, and that mount point.

    ``path`` need not exist: its nearest existing parent is measured.
    """
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return None
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return free, mount


def tree_size(path: str | Path) -> int:
    """Bytes of the regular files under ``path`` (or of the file itself); links not followed."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                total += st.st_size if not os.path.islink(os.path.join(root, name)) else 0
    return total


def storage_error(exc: OSError, path: str | Path | None = None, *,
                  needed: Needed = None) -> StorageError | None:
    """The one-line error for a disk-full or permission ``exc``, or None for other errors.

    Args:
        exc: The error raised by a write.
        path: The output the user named (default: the file in ``exc``).
        needed: Bytes the operation needs, or a function computing them (called only here).
    """
    code = exc.errno
    if code not in STORAGE_ERRNOS:
        return None
    where = Path(path) if path is not None else Path(exc.filename) if exc.filename else None
    if where is None:
        room = None
        where_text = "writing the output"
    else:
        room = free_bytes(where)
        where_text = str(where)
    if code in _ACCESS:
        detail = f" ({exc.filename})" if exc.filename and Path(exc.filename) != where else ""
        return StorageError(f"{where_text}: {_ACCESS[code]}{detail}; write to a folder you "
                            f"can write to, or fix its permissions")
    space = f"{format_bytes(room[0])} free on {room[1]}" if room else "free space unknown"
    amount = needed() if callable(needed) else needed
    if amount:
        space += f"; about {format_bytes(amount)} needed"
    return StorageError(f"{where_text}: {_SPACE[code]} ({space}). Free space there or write "
                        f"to another disk")


@contextlib.contextmanager
def storage_errors(path: str | Path, *, needed: Needed = None) -> Iterator[None]:
    """Turn disk-full and permission ``OSError`` raised in the block into :class:`StorageError`.

    Args:
        path: The output the block writes (named in the message).
        needed: Bytes the block needs to write, or a function computing them on failure.

    Raises:
        StorageError: For ``ENOSPC``, ``EDQUOT``, ``EFBIG``, ``EACCES``, ``EPERM`` and
            ``EROFS``; other errors pass through unchanged.
    """
    try:
        yield
    except OSError as exc:
        translated = storage_error(exc, path, needed=needed)
        if translated is None:
            raise
        raise translated from exc
