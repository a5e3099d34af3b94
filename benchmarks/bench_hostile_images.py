"""``detforge predict`` on hostile images: exit code, records written, skips, peak memory.

Each case is a folder of ``--good`` small JPEGs plus one hostile file (a header declaring
billions of pixels, a format whose header Pillow cannot read, a FIFO, a symlink to
``/dev/zero``). ``detforge predict`` runs on it in a fresh process (ONNX Runtime, the tiny
test detector), with and without ``--fast-decode``; the table gives the exit code, the
records written, the skips, the wall time and the process's own peak RSS (``wait4``).

Usage::

    .venv/bin/python benchmarks/bench_hostile_images.py --json benchmarks/results/hostile.json

Prints a table and writes the JSON. Not run by the tests (``tests/cli/test_predict.py``
checks the same cases for behaviour).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

_SPEC = importlib.util.spec_from_file_location(  # the very files the tests use
    "hostile_inputs", Path(__file__).resolve().parents[1] / "tests" / "hostile_inputs.py")
assert _SPEC is not None and _SPEC.loader is not None
hostile: Any = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hostile)


def _bytes(data: bytes, name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data) and None


CASES: dict[str, Callable[[Path], Any]] = {
    "jpeg 32000x32000 (700 B)": _bytes(hostile.jpeg_declaring(32000, 32000), "bomb.jpg"),
    "png 50000x50000 (57 B)": _bytes(hostile.png_header(50000, 50000), "bomb.png"),
    "pfm 40000x40000": _bytes(hostile.pfm(40000, 40000), "float.png"),
    "pam 40000x40000": _bytes(hostile.pam(40000, 40000), "pam.png"),
    "hdr 40000x40000": _bytes(hostile.hdr(40000, 40000), "hdr.jpg"),
    "fifo": lambda folder: hostile.fifo(folder / "pipe.jpg"),
    "symlink to /dev/zero": lambda folder: hostile.dev_zero_link(folder / "zero.jpg"),
}


def run_case(model: Path, folder: Path, fast: bool) -> dict[str, Any]:
    out = folder.parent / f"{folder.name}-{int(fast)}.jsonl"
    cmd = [sys.executable, "-c", "from detforge.cli import main; main()", "predict", str(model),
           str(folder), "--out", str(out), "--no-progress", "--device", "cpu",
           *(["--fast-decode"] if fast else [])]
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        text = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    records = len(out.read_text().splitlines()) if out.exists() else 0
    skipped = next((int(line.split("skipped: ")[1].split()[0]) for line in text.splitlines()
                    if "skipped: " in line and line.startswith("images:")), None)
    return {"exit": proc.returncode, "records": records, "skipped": skipped,
            "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good", type=int, default=8, help="good images per folder")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--skip", action="append", default=[],
                        help="skip the cases whose name contains this (repeatable)")
    args = parser.parse_args()
    from detforge.testing import random_image, tiny_onnx_model, write_image

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        model = tiny_onnx_model(Path(tmp) / "tiny.onnx")
        for i, (name, make) in enumerate(CASES.items()):
            if any(text in name for text in args.skip):
                continue
            folder = Path(tmp) / f"case{i}"
            for k in range(args.good):
                write_image(folder / f"good{k}.jpg", random_image(240, 320, seed=k))
            make(folder)
            for fast in (False, True):
                rows.append({"case": name, "fast_decode": fast,
                             **run_case(model, folder, fast)})
    print(f"{'case':28s} {'fast':>5s} {'exit':>5s} {'records':>8s} {'skipped':>8s} "
          f"{'wall s':>7s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['case']:28s} {str(r['fast_decode']):>5s} {r['exit']:>5d} {r['records']:>8d} "
              f"{r['skipped']!s:>8s} {r['wall_s']:>7.2f} {r['peak_rss_mb']:>12.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": date.today().isoformat(), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "good_images": args.good, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
