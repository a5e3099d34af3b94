"""kill -9 at random points of a real ``detforge library index``, then a re-run.

Every kill lands while the process is still running (the test waits for a random number of
committed rows, then a random pause, then SIGKILL). After the final run: one row per file,
no path twice, every content once, and the detections equal those of an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from detforge.library import index_library
from detforge.library.synth import save_image
from detforge.testing import random_image

KILLS = 5


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM files").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or the schema is being written
        return 0


def _snapshot(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        return {
            "files": sorted(con.execute("SELECT path, hash, error IS NOT NULL FROM files")),
            "dets": sorted(con.execute("SELECT hash, frame, label, round(score, 4), "
                                       "round(x1, 1), round(y1, 1) FROM detections")),
            "contents": sorted(con.execute("SELECT hash, phases FROM contents")),
            "integrity": con.execute("PRAGMA integrity_check").fetchone()[0],
            "stale_copy_flags": con.execute(  # files.dup, kept by triggers (store.py)
                "SELECT count(*) FROM files f WHERE f.dup != EXISTS (SELECT 1 FROM files g "
                "WHERE g.hash = f.hash AND g.id < f.id AND g.error IS NULL)").fetchone()[0],
        }
    finally:
        con.close()


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun(library: tuple[Path, dict[str, Any]],
                                            tiny_model: Path, tmp_path: Path) -> None:
    root, m = library
    for i in range(120):  # enough files that a run lasts through several commits
        save_image(root / "bulk" / f"img_{i:03d}.jpg", random_image(48, 64, seed=100 + i),
                   "JPEG", date=f"2024:0{1 + i % 9}:1{i % 10} 10:00:00")
    n_files = sum(1 for f in root.rglob("*") if f.is_file() and ".thumbnails" not in f.parts)
    db = tmp_path / "killed.sqlite"
    cmd = [sys.executable, "-c", "from detforge.cli import main; main()", "library", "index",
           str(root), "--db", str(db), "--model", str(tiny_model), "--commit-every", "2",
           "--workers", "2", "--batch", "2", "--video-every", "0.5", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(1234)
    kills = 0
    for attempt in range(KILLS * 3):
        if kills == KILLS:
            break
        start = _count(db)
        target = start + rng.randint(1, 5)
        log = tmp_path / f"run{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _count(db) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        else:
            assert proc.returncode == 0, log.read_text()
            break
    assert kills == KILLS, f"only {kills} runs were still going when killed"
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    reference = tmp_path / "reference.sqlite"
    index_library(root, db=reference, model=tiny_model, progress=False, video_every_s=0.5,
                  batch=2, workers=2)
    got, want = _snapshot(db), _snapshot(reference)
    assert got["integrity"] == "ok" and got["stale_copy_flags"] == 0
    assert len(got["files"]) == n_files == len({f[0] for f in got["files"]})
    assert got["files"] == want["files"]
    assert got["contents"] == want["contents"]
    assert got["dets"] == want["dets"]  # nothing lost, nothing stored twice
