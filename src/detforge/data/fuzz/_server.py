"""The fuzzer's fork server: a small, warm process that forks one child per input.

Forking the caller (a test run may hold torch, a gigabyte of pages) would make every
input pay for copying its page tables; ``multiprocessing``'s own fork server re-imports
the caller's ``__main__`` in every child. This server is started once with
``python -m detforge.data.fuzz._server``, imports and warms what the children use
(:mod:`detforge.data.fuzz._preload`), freezes its objects out of the garbage collector (so
children do not copy its pages), then reads one JSON request per line on stdin --
``{"jobs": [{"fn": "module:function", "args": [...]}, ...], "cpu": s, "wall": s}`` -- and
runs the jobs one after the other in a forked child: before each job the child gives it
a fresh CPU budget (``RLIMIT_CPU`` soft limit: CPU used so far + ``cpu``) and resets its
peak-memory mark. A child killed in a job (CPU limit, no result within ``wall`` seconds,
a crash) ends that job; a fresh child takes the rest. One JSON list of results per
request goes to stdout: ``kind``, ``detail``, ``peak_mb``, ``seconds`` and, when a child
died, the signal. A batch of jobs shares one fork, which is most of the cost of a small
input.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import math
import os
import resource
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from detforge.data.fuzz.runner import MAX_MESSAGE, BadOutput

__all__ = ["main"]

_FILE_LIMIT = 64 << 20
_EXTRA_ADDRESS_SPACE = 4 << 30


def _status_kb(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _resolve(name: str) -> Any:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _limit_address_space() -> None:
    cap = _status_kb("VmSize") * 1024 + _EXTRA_ADDRESS_SPACE
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))


def _run(job: dict[str, Any], cpu: int) -> dict[str, Any]:
    """In the child: this job's CPU budget and memory baseline, then the function."""
    with contextlib.suppress(OSError):  # reset the peak-RSS mark: this job's peak only
        Path("/proc/self/clear_refs").write_text("5")
    base = _status_kb("VmRSS")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    resource.setrlimit(resource.RLIMIT_CPU, (used + cpu, resource.RLIM_INFINITY))
    from detforge.core.errors import DetforgeError

    start = time.monotonic()
    try:
        _resolve(job["fn"])(*job.get("args", []))
        result: dict[str, Any] = {"kind": "clean"}
    except DetforgeError as exc:
        text = f"{type(exc).__name__}: {exc}"
        ok = "\n" not in text and len(text) <= MAX_MESSAGE
        result = {"kind": "error" if ok else "traceback",
                  "detail": text if ok else f"bad message ({len(text)} chars): {text[:300]!r}"}
    except BadOutput as exc:
        result = {"kind": "bad-output", "detail": str(exc)[:500]}
    except MemoryError:
        result = {"kind": "blowup", "detail": "MemoryError"}
    except BaseException as exc:  # noqa: BLE001 - every other exception is the finding
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        result = {"kind": "traceback",
                  "detail": f"{type(exc).__name__}: {str(exc)[:300]} at {where}"}
    result["peak_mb"] = max(0.0, (_status_kb("VmHWM") - base) / 1024)
    result["seconds"] = time.monotonic() - start
    return result


def _child(jobs: list[dict[str, Any]], cpu: int, w: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)  # output must not reach the protocol stream
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _limit_address_space()
    for job in jobs:
        os.write(w, (json.dumps(_run(job, cpu)) + "\n").encode()[:60_000])


def _fork_batch(jobs: list[dict[str, Any]], cpu: int, wall: float) -> list[dict[str, Any]]:
    """Run ``jobs`` one after the other in forked children; a child that dies (a signal,
    the wall limit) ends its job and a fresh child takes the rest."""
    results: list[dict[str, Any]] = []
    while len(results) < len(jobs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _child(jobs[len(results):], cpu, w)
            finally:
                os._exit(0)
        os.close(w)
        buffer = b""
        last = time.monotonic()
        killed = False
        while True:
            if time.monotonic() - last > wall:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
            ready, _, _ = select.select([r], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                results.append(json.loads(line))
                last = time.monotonic()
        os.close(r)
        _, status, _ = os.wait4(pid, 0)
        if len(results) < len(jobs):  # the child died in the middle of a job
            if killed:
                results.append({"kind": "hang", "detail": f"no result after {wall:.0f} s wall"})
            elif os.WIFSIGNALED(status):
                sig = signal.Signals(os.WTERMSIG(status))
                results.append({"kind": "signal", "signal": sig.name,
                                "detail": f"killed by {sig.name}"})
            else:
                results.append({"kind": "traceback", "detail": "the child exited without a "
                                f"result (status {status})"})
    return results


def main() -> None:
    """Serve requests from stdin until it closes."""
    import detforge.data.fuzz._preload  # noqa: F401 - imports and warms every module

    gc.collect()
    gc.freeze()  # children's collections must not touch (and so copy) the server's pages
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but results on the protocol stream
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            results = _fork_batch(request["jobs"], int(request.get("cpu", 10)),
                                  float(request.get("wall", 130)))
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            results = [{"kind": "traceback", "detail": f"fork server: {exc!r}"}
                       for _ in request["jobs"]]
        print(json.dumps(results), file=out, flush=True)


if __name__ == "__main__":
    main()
