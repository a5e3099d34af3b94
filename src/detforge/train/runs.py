"""Versioned run directories with lineage.

Layout of one run::

    <out>/<name>/v<N>/
        config.yaml      the resolved TrainConfig (reload it with load_train_config)
        run.json         lineage: dataset version, git commit, packages, hardware, results
        metrics.csv      one row per epoch (losses, mAP, lr, images/s), rewritten each epoch
        metrics.json     the same rows as JSON
        weights/         last.pt (every epoch) and best.pt
        data/            the YOLO copy of the dataset the run trained on
        *.png, results.csv, args.yaml   Ultralytics' own plots and logs

Versions count up from ``v1``; a new run never reuses a directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import ConfigError

__all__ = ["MetricsLog", "environment_info", "git_info", "latest_run_dir", "new_run_dir",
           "read_run_json", "update_run_json"]

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


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of ``run_dir`` ({} when absent)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def update_run_json(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (atomically) and return the whole record."""
    data = read_run_json(run_dir)
    data.update(fields)
    data["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(Path(run_dir) / "run.json", data)
    return data
