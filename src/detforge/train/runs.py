"""Versioned run directories with lineage.

Layout of one run::

    <out>/<name>/v<N>/
        config.yaml      the resolved TrainConfig (reload it with load_train_config)
        run.json         lineage: dataset version, git commit, packages, hardware, results
        metrics.csv      one row per epoch (losses, mAP, lr, images/s), rewritten each epoch
        metrics.json     the same rows as JSON
        weights/         last.pt (every epoch) and best.pt
        data/            the YOLO copy of the dataset the run trained on
        run.lock         held (flock) by the process training the run, for as long as it runs
        *.png, results.csv, args.yaml   Ultralytics' own plots and logs

Versions count up from ``v1``; a new run never reuses a directory.

``run.json`` ``status`` goes ``running`` -> ``trained`` (weights final, validated) ->
``finished`` (tracked and registered), or ``failed``. A process killed outright (``kill -9``,
a power cut) cannot write anything, so the live process holds ``run.lock`` instead: the
kernel releases it however the process ends. :func:`read_run_json` reports a ``running`` run
whose lock nobody holds as ``died``, and :func:`reap_dead_runs` writes that down.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import socket
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import ConfigError

__all__ = ["LOCK_FILE", "MetricsLog", "RunLock", "environment_info", "git_info",
           "latest_run_dir", "new_run_dir", "reap_dead_runs", "read_run_json", "run_alive",
           "update_run_json"]

LOCK_FILE = "run.lock"
_LOCK_WAIT_S = 10.0  # a reader's probe holds the lock for microseconds

_VERSION = re.compile(r"^v(\d+)$")
_PACKAGES = ("detforge", "ultralytics", "torch", "torchvision", "numpy", "mlflow",
             "onnx", "onnxruntime", "pydantic")


def _versions(parent: Path) -> list[int]:
    if not parent.is_dir():
        return []
    return sorted(int(m[1]) for p in parent.iterdir()
                  if p.is_dir() and (m := _VERSION.match(p.name)))


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create and return ``<out>/<name>/v<N+1>`` (race-free: ``mkdir`` fails on a clash).

    Args:
        out: Runs root.
        name: Run name.

    Returns:
        The new, empty run directory.
    """
    parent = Path(out) / name
    parent.mkdir(parents=True, exist_ok=True)
    version = (_versions(parent) or [0])[-1] + 1
    while True:
        path = parent / f"v{version}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            version += 1


def latest_run_dir(out: str | Path, name: str) -> Path:
    """The highest version of run ``name`` under ``out``.

    Raises:
        ConfigError: No run of that name exists; the message lists the runs that do.
    """
    parent = Path(out) / name
    versions = _versions(parent)
    if not versions:
        known = sorted(p.name for p in Path(out).iterdir() if p.is_dir()) \
            if Path(out).is_dir() else []
        raise ConfigError(f"{parent}: no run named {name!r} to resume; runs under {out}: "
                          f"{known}. Pass --name and --out of the interrupted run")
    return parent / f"v{versions[-1]}"


class MetricsLog:
    """Per-epoch metrics, kept as ``metrics.csv`` and ``metrics.json`` in the run directory.

    Both files are rewritten atomically after every epoch, so a killed run keeps every
    finished epoch. Reopening a run's log (on resume) keeps the epochs already recorded
    before the resume point.

    Example:
        >>> log = MetricsLog(Path("runs/x/v1"))  # doctest: +SKIP
        >>> log.append(1, {"mAP50": 0.4})  # doctest: +SKIP
    """

    def __init__(self, run_dir: Path):
        self.csv_path = run_dir / "metrics.csv"
        self.json_path = run_dir / "metrics.json"
        self.rows: list[dict[str, float]] = []
        if self.json_path.is_file():
            self.rows = list(json.loads(self.json_path.read_text(encoding="utf-8")))

    def append(self, epoch: int, metrics: dict[str, float]) -> None:
        """Record ``epoch`` (1-based), replacing a row of the same or a later epoch."""
        self.rows = [r for r in self.rows if r["epoch"] < epoch]
        self.rows.append({"epoch": epoch, **metrics})
        atomic_write_json(self.json_path, self.rows)
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv_path, buf.getvalue())


def git_info(path: str | Path = ".") -> dict[str, Any]:
    """Commit, dirty flag and root of the git work tree containing ``path`` (None outside)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    root = git("rev-parse", "--show-toplevel") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None,
            "repo": root}


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(threads: int) -> dict[str, Any]:
    """Packages, Python and hardware of this process (GPU only if torch is loaded)."""
    import sys

    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    gpus: list[str] = []
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    from detforge.train.threads import allowed_cores

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "hardware": {"cpu": _cpu_model(), "cores_allowed": allowed_cores(),
                     "cores_total": os.cpu_count(), "threads_used": threads,
                     "memory_gb": _memory_gb(), "gpus": gpus},
    }


class RunLock:
    """The lock the process training a run holds for as long as it runs (``run.lock``).

    It is an advisory ``flock``: the kernel releases it when the process ends, however it
    ends, so a run whose lock is free is not being trained. Hand-written on ``fcntl`` rather
    than taken from ``filelock``: readers must test the lock without taking it from its
    owner, and the file must never be deleted under a waiting owner.

    Args:
        run_dir: The run directory.
        wait_s: How long :meth:`acquire` retries while another process holds the lock.

    Raises:
        ConfigError: Another live process holds the lock (the run is being trained).
    """

    def __init__(self, run_dir: str | Path, *, wait_s: float = _LOCK_WAIT_S) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.wait_s = wait_s
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock (waiting briefly for a reader's probe), or raise."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    owner = read_run_json(self.path.parent)
                    raise ConfigError(
                        f"{self.path.parent}: this run is being trained by another process "
                        f"(pid {owner.get('pid')} on {owner.get('host')}); wait for it or stop "
                        f"it first") from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (closing the descriptor releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def run_alive(run_dir: str | Path) -> bool | None:
    """Whether a process holds the run's lock: True, False, or None when the run has no lock
    file (made by an older detforge; then a recorded pid on this host is checked)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _pid_alive(_read_raw(Path(run_dir)))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the shared lock when it was taken
    return False


def _pid_alive(record: dict[str, Any]) -> bool | None:
    pid, host = record.get("pid"), record.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_raw(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of ``run_dir`` ({} when absent).

    A ``running`` run that no live process holds (killed outright) is reported with
    ``status`` ``died`` (the file is not changed; :func:`reap_dead_runs` does that).
    """
    data = _read_raw(Path(run_dir))
    if data.get("status") == "running" and run_alive(run_dir) is False:
        data["status"] = "died"
    return data


def reap_dead_runs(out: str | Path, name: str) -> list[tuple[Path, dict[str, Any]]]:
    """Write ``status: died`` into every run of ``name`` under ``out`` that says ``running``
    but whose process is gone.

    Returns:
        The runs marked, with their records (the caller ends their MLflow runs).
    """
    marked = []
    for version in _versions(Path(out) / name):
        run_dir = Path(out) / name / f"v{version}"
        if _read_raw(run_dir).get("status") == "running" and run_alive(run_dir) is False:
            marked.append((run_dir, update_run_json(run_dir, status="died",
                                                    died_noticed=_now())))
    return marked


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def update_run_json(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (atomically) and return the whole record."""
    data = _read_raw(Path(run_dir))
    data.update(fields)
    data["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(Path(run_dir) / "run.json", data)
    return data
