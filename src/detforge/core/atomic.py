"""Atomic file writes: write to a temporary file beside the target, then rename.

Temporary files and staging folders are named ``.<target>.<pid>@<host>.<random>.tmp`` (or
``.partial``), so a later write into the same folder can tell the leftovers of a killed
process (its pid is gone on this host) from the work of one still running, and removes them
(:func:`sweep_leftovers`, once per folder and process).

Files and folders end with the modes an ordinary ``open`` or ``mkdir`` would give them
(0644 and 0755 under the usual umask 022), not the 0600 / 0700 of ``mkstemp`` and
``mkdtemp``: a bundle, report or dataset is read by other users' services (DeepStream,
Triton, a web server), and the process umask stays the one place that narrows access.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_open", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "current_umask", "link_or_copy", "publish_modes", "stage_dir",
           "sweep_leftovers"]


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def publish_modes(root: str | Path) -> None:
    """Give ``root`` and every folder below it 0777 & ~umask, every file 0666 & ~umask
    (executables keep their execute bits, also under the umask). Symbolic links are left
    alone."""
    mask = current_umask()
    root = Path(root)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o777 & ~mask)
        else:
            exe = path.stat().st_mode & 0o111
            path.chmod((0o666 | (0o111 if exe else 0)) & ~mask)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _owner() -> str:
    return f"{os.getpid()}@{_host()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


_SWEPT: set[Path] = set()


def sweep_leftovers(folder: str | Path, *, again: bool = False) -> list[Path]:
    """Remove the temporary files and staging folders in ``folder`` whose writer died.

    Only names this module gives, for this host, are touched, and only when their process is
    gone: a live writer's work is kept. Each folder is swept once per process unless
    ``again``.

    Returns:
        What was removed.
    """
    folder = Path(folder)
    key = folder.resolve()
    if (key in _SWEPT and not again) or not folder.is_dir():
        return []
    _SWEPT.add(key)
    pattern = re.compile(r"^\..+\.(\d+)@" + re.escape(_host()) + r"\.[^.]+\.(tmp|partial)$")
    removed = []
    for entry in folder.iterdir():
        m = pattern.match(entry.name)
        if m is None or _alive(int(m[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def stage_dir(out: str | Path) -> Path:
    """A new hidden staging folder beside ``out`` (``.<name>.<owner>.<random>.partial``),
    after removing the ones killed runs left there. It has a plain folder's mode
    (0777 & ~umask), so renaming it into place publishes a folder others can read."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out.parent)
    path = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{_owner()}.",
                                 suffix=".partial"))
    path.chmod(0o777 & ~current_umask())
    return path


class AtomicFile:
    """A temporary file beside ``path``: :meth:`commit` renames it into place, :meth:`discard`
    removes it. Leftovers of killed writers in that folder are removed first.

    Args:
        path: The target file.
        mode: ``"w"`` or ``"wb"`` (and other write modes).
        encoding: Text encoding (text modes).
    """

    def __init__(self, path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(self.path.parent)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.{_owner()}.",
                                   suffix=".tmp")
        self.tmp = Path(tmp)
        self.file: IO[Any] = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)

    def commit(self, dest: str | Path | None = None) -> Path:
        """Flush, sync and rename the file to ``dest`` (default: the target).

        On failure (disk full at the flush, say) the temporary file is removed and the error
        raised.
        """
        target = Path(dest) if dest is not None else self.path
        try:
            self.file.flush()
            os.fchmod(self.file.fileno(), 0o666 & ~current_umask())
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, target)
        except BaseException as exc:
            self.discard()
            _name(exc, target)
            raise
        return target

    def discard(self) -> None:
        """Close and remove the temporary file."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w",
                encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only if the block completes."""
    target = AtomicFile(path, mode, encoding)
    try:
        yield target.file
    except BaseException as exc:
        target.discard()
        _name(exc, target.path)
        raise
    target.commit()


def _name(exc: BaseException, path: Path) -> None:
    """Give an ``OSError`` from writing a file (``write``/``fsync`` set none) its target's
    name, so that the message says which output failed."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        exc.filename = str(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system) or copy it; never touches ``src``."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
