"""Run fuzzed inputs through the readers, ``validate`` and the writers, one child each.

Each input runs in its own child process, forked from a fork server that has imported
(and run once, on the valid seeds) every module the children use: the code under test is
the same in-process code, the child only fences it. Limits, set in the child before the
input is touched:

* CPU time (``RLIMIT_CPU``): a child still busy after ``cpu_seconds`` is a **hang** (CPU
  time, not wall time, so a loaded machine does not turn slow inputs into hangs; a wall
  clock limit ten times larger catches a child that sleeps or blocks);
* memory: a child whose peak resident memory grew by more than ``memory_mb`` is a
  **blow-up**; ``RLIMIT_AS`` (the child's address space plus 4 GiB) stops one before it
  can hurt the machine (a ``MemoryError``, also a blow-up);
* file size (``RLIMIT_FSIZE``, 64 MiB): a writer that runs away is a blow-up.

The child reads the dataset, validates it (images included), writes it in another
format (every loss allowed, so writers go as far as they can) and reads the copy back.
Outcomes: ``clean``; ``error`` (one :class:`~detforge.core.errors.DetforgeError` line,
the wanted result for bad input); ``traceback`` (any other exception, or an error message
over several lines or longer than :data:`MAX_MESSAGE`); ``hang``; ``blowup``;
``bad-output`` (a copy the readers refuse: the writer wrote something invalid).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detforge.data.fuzz.mutate import FuzzInput, make_input

__all__ = ["FAILURES", "MAX_MESSAGE", "BadOutput", "Campaign", "Outcome", "materialise",
           "probe", "process_input", "run_batch", "run_campaign", "run_in_child", "warm_up"]

MAX_MESSAGE = 2000
"""Longest acceptable error message (characters)."""

FAILURES = ("traceback", "hang", "blowup", "bad-output")
"""Outcomes that are bugs."""

_NEXT = {"coco": "voc", "yolo": "coco", "voc": "kitti", "kitti": "yolo"}


@dataclass(frozen=True)
class Outcome:
    """How one input ended.

    Attributes:
        kind: ``clean``, ``error``, ``traceback``, ``hang``, ``blowup`` or ``bad-output``.
        detail: The error line, the exception, or what was exceeded.
        seconds: Wall seconds in the child.
        peak_mb: Growth of the child's peak resident memory over the parent's (MiB).
    """

    kind: str
    detail: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0


@dataclass
class Campaign:
    """Counts of one format's run.

    Attributes:
        format: Format name.
        inputs: Inputs run.
        counts: Outcome kind -> count.
        failures: ``(index, mutator, outcome)`` of every failing input.
        max_seconds: Slowest input (wall seconds).
        max_peak_mb: Largest memory growth of one input (MiB).
    """

    format: str
    inputs: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str, Outcome]] = field(default_factory=list)
    max_seconds: float = 0.0
    max_peak_mb: float = 0.0

    def failed(self) -> int:
        """Inputs that ended in a failure outcome."""
        return sum(self.counts[k] for k in FAILURES)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (failures listed with index, mutator, kind and detail)."""
        return {"format": self.format, "inputs": self.inputs,
                "counts": {k: self.counts.get(k, 0) for k in ("clean", "error", *FAILURES)},
                "max_seconds": round(self.max_seconds, 3),
                "max_peak_mb": round(self.max_peak_mb, 1),
                "failures": [{"index": i, "mutator": m, "kind": o.kind, "detail": o.detail}
                             for i, m, o in self.failures]}


def materialise(inp: FuzzInput, root: Path) -> None:
    """Write the files and links of ``inp`` under ``root`` (names the OS refuses are
    skipped: they are inputs no one could hand over)."""
    for rel, data in inp.files.items():
        p = root / rel
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        except (OSError, ValueError):
            continue
    for rel, target in inp.links.items():
        p = root / rel
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, p)
        except (OSError, ValueError):
            continue


def process_input(fmt: str, root: str | Path, out: str | Path) -> None:
    """What each input goes through: read, validate with images, write, read back.

    Raises:
        DetforgeError: The input is refused (the expected outcome for bad input).
        BadOutput: The copy written could not be read back.
    """
    from detforge.core.errors import DetforgeError
    from detforge.data.formats import WriteOptions, read_dataset, write_dataset
    from detforge.data.validate import validate

    root, out = Path(root), Path(out)
    ds = read_dataset(root, fmt)
    validate(ds, progress=False)
    dst = _NEXT[fmt]
    write_dataset(ds, out, dst, options=WriteOptions.lossy(val_split="train"))
    try:
        read_dataset(out, dst)
    except DetforgeError as exc:
        raise BadOutput(f"{dst} copy unreadable: {exc}") from exc


class BadOutput(Exception):
    """A writer's output that the readers refuse (raised by :func:`process_input`)."""


def _clean() -> None:
    pass


def _one_line() -> None:
    from detforge.core.errors import DatasetError

    raise DatasetError("one line", path="a.json")


def _two_lines() -> None:
    from detforge.core.errors import DatasetError

    raise DatasetError("two\nlines")


def _huge() -> None:
    from detforge.core.errors import DatasetError

    raise DatasetError("x" * (MAX_MESSAGE + 1))


def _key_error() -> None:
    raise KeyError("images")


def _spin() -> None:
    while True:
        pass


def _hog() -> None:
    block = bytearray(300 << 20)
    block[::4096] = b"\x01" * (len(block) // 4096)  # touch every page: 300 MiB resident


_PROBES: dict[str, Callable[[], None]] = {
    "clean": _clean, "error": _one_line, "multi-line-error": _two_lines, "huge-error": _huge,
    "traceback": _key_error, "hang": _spin, "blowup": _hog}


def probe(name: str) -> Callable[[], None]:
    """A calibration target that ends as ``name`` (``clean``, ``error``, ``traceback``,
    ``hang``, ``blowup``...): the harness is checked against these."""
    return _PROBES[name]


class _Server:
    """Client of the fork server (:mod:`detforge.data.fuzz._server`)."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "detforge.data.fuzz._server"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
            env={**os.environ, **_ONE_THREAD, "PYTHONPATH": os.pathsep.join(
                p for p in [_SRC, os.environ.get("PYTHONPATH", "")] if p)})
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            self.log.seek(0)
            raise RuntimeError("the fuzz fork server did not start: "
                               + self.log.read().decode(errors="replace")[-2000:])

    def call(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fuzz fork server stopped")
        results: list[dict[str, Any]] = json.loads(line)
        return results

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self.log.close()


_BATCH = 25  # inputs per fork: each still has its own CPU budget and memory mark
_SRC = str(Path(__file__).resolve().parents[3])
# The server forks: native thread pools (OpenBLAS, OpenMP) must not exist in it.
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
_SERVER: _Server | None = None


def _server() -> _Server:
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        _SERVER = _Server()
        atexit.register(_SERVER.close)
    return _SERVER


def _outcome(result: dict[str, Any], memory_mb: int) -> Outcome:
    seconds = float(result.get("seconds", 0.0))
    peak = float(result.get("peak_mb", 0.0))
    kind = str(result.get("kind", "traceback"))
    if kind == "signal":
        kind = {"SIGXCPU": "hang", "SIGKILL": "hang", "SIGXFSZ": "blowup"}.get(
            str(result.get("signal")), "traceback")
    detail = str(result.get("detail", ""))
    if peak > memory_mb and kind not in FAILURES:
        kind, detail = "blowup", f"peak memory grew by {peak:.0f} MiB"
    return Outcome(kind, detail, seconds, peak)


def run_batch(jobs: list[tuple[Callable[..., None], tuple[Any, ...]]], *,
              cpu_seconds: int = 10, memory_mb: int = 512) -> list[Outcome]:
    """Run each ``work(*args)`` of ``jobs`` under its own limits (module docstring), one
    after the other in children of the fork server.

    Args:
        jobs: ``(work, args)`` pairs; ``work`` is a module-level function (the child imports
            it by name) and ``args`` JSON values (paths are passed as text).
        cpu_seconds: CPU time after which a job is a hang.
        memory_mb: Peak memory growth above which a job is a blow-up.

    Returns:
        One outcome per job.
    """
    request = {"jobs": [{"fn": f"{work.__module__}:{work.__qualname__}",
                         "args": [str(a) if isinstance(a, Path) else a for a in args]}
                        for work, args in jobs],
               "cpu": cpu_seconds, "wall": cpu_seconds * 10 + 30}
    results = _server().call(request)
    return [_outcome(r, memory_mb) for r in results]


def run_in_child(work: Callable[..., None], *args: Any, cpu_seconds: int = 10,
                 memory_mb: int = 512) -> Outcome:
    """Run ``work(*args)`` in a child of the fork server (see :func:`run_batch`).

    Returns:
        The outcome.
    """
    return run_batch([(work, args)], cpu_seconds=cpu_seconds, memory_mb=memory_mb)[0]


def _scratch() -> str | None:
    """A memory-backed folder for the inputs when there is one (``/dev/shm``): thousands of
    tiny datasets need no disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def warm_up(fmt: str) -> None:
    """Run the unmutated seed of ``fmt`` in this process: it must come out clean, and
    every module a child uses is imported (the fork server does this once).

    Raises:
        DetforgeError: The seed itself is refused (the fuzzer would measure nothing).
    """
    from detforge.data.fuzz.seeds import SEEDS

    with tempfile.TemporaryDirectory(prefix="detforge-fuzz-seed-") as tmp:
        materialise(FuzzInput(fmt, -1, "seed", dict(SEEDS[fmt]().files)), Path(tmp) / "ds")
        process_input(fmt, Path(tmp) / "ds", Path(tmp) / "out")


def run_campaign(fmt: str, count: int, *, seed: int = 0, start: int = 0,
                 cpu_seconds: int = 10, memory_mb: int = 512,
                 keep_failures: Path | None = None,
                 progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
                 ) -> Campaign:
    """Run inputs ``start .. start+count-1`` of the campaign ``(fmt, seed)``.

    Args:
        fmt: ``coco``, ``yolo``, ``voc`` or ``kitti``.
        count: Number of inputs.
        seed: Campaign seed (see :func:`~detforge.data.fuzz.mutate.make_input`).
        start: First input index.
        cpu_seconds: Per-input CPU limit (hang).
        memory_mb: Per-input memory growth limit (blow-up).
        keep_failures: Folder to copy the dataset of every failing input into.
        progress: Wraps the index range (e.g. a progress bar); advanced per batch.

    Returns:
        The counts.
    """
    campaign = Campaign(fmt)
    indices = list(range(start, start + count))
    batches = [indices[k:k + _BATCH] for k in range(0, len(indices), _BATCH)]
    bar = iter(progress(indices)) if progress else None
    for batch in batches:
        inputs = [make_input(fmt, index, seed) for index in batch]
        work_dir = Path(tempfile.mkdtemp(prefix=f"detforge-fuzz-{fmt}-", dir=_scratch()))
        try:
            jobs = []
            for inp in inputs:
                root = work_dir / str(inp.index)
                materialise(inp, root / "ds")
                jobs.append((process_input, (fmt, root / "ds", root / "out")))
            outcomes = run_batch(jobs, cpu_seconds=cpu_seconds, memory_mb=memory_mb)
            for inp, outcome in zip(inputs, outcomes, strict=True):
                if outcome.kind in FAILURES:
                    campaign.failures.append((inp.index, inp.mutator, outcome))
                    if keep_failures is not None:
                        shutil.copytree(work_dir / str(inp.index) / "ds",
                                        keep_failures / f"{fmt}-{seed}-{inp.index}",
                                        symlinks=True, dirs_exist_ok=True)
                campaign.inputs += 1
                campaign.counts[outcome.kind] += 1
                campaign.max_seconds = max(campaign.max_seconds, outcome.seconds)
                campaign.max_peak_mb = max(campaign.max_peak_mb, outcome.peak_mb)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        if bar is not None:
            for _ in batch:
                next(bar, None)
    return campaign
