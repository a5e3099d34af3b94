"""``predict --ray``: the same records, in the same order, as the local pipeline."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.runtime.predict import predict
from detforge.scale import ClusterProgress, predict_on_cluster

runner = CliRunner()


def _local(model: Path, source: Path, out: Path, **options: object) -> bytes:
    predict(model, source, out=out, progress=False, **options)  # type: ignore[arg-type]
    return out.read_bytes()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cli_predict_ray_equals_local(ray_cluster: object, tiny_model: Path, photos: Path,
                                      tmp_path: Path, fmt: str) -> None:
    local = _local(tiny_model, photos, tmp_path / f"local.{fmt}", fmt=fmt)
    out = tmp_path / f"ray.{fmt}"
    result = runner.invoke(app, ["predict", str(tiny_model), str(photos), "--out", str(out),
                                 "--format", fmt, "--ray", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == local
    assert "skipped: 1" in result.output  # the corrupt file, counted as locally
    assert "inference actor(s)" in result.output


@pytest.mark.parametrize("options", [{"fast_decode": True, "track": True},
                                     {"save_vis": "vis"}], ids=["fast-decode-track", "vis"])
def test_small_chunks_equal_local(ray_cluster: object, tiny_model: Path, photos: Path,
                                  tmp_path: Path, options: dict[str, Any]) -> None:
    if "save_vis" in options:
        local_vis, ray_vis = tmp_path / "local_vis", tmp_path / "ray_vis"
        local = _local(tiny_model, photos, tmp_path / "local.jsonl", save_vis=local_vis)
        options = {"save_vis": ray_vis}
    else:
        pytest.importorskip("ultralytics")  # ByteTrack
        local = _local(tiny_model, photos, tmp_path / "local.jsonl", **options)
    stats = predict_on_cluster(tiny_model, photos, out=tmp_path / "ray.jsonl", progress=False,
                               chunk_size=3, **options)
    assert (tmp_path / "ray.jsonl").read_bytes() == local
    assert stats.chunks == -(-(36 + 1 + 8) // 3)  # images, the corrupt file, video frames
    assert (stats.images, stats.skipped, stats.retried) == (36 + 8, 1, 0)
    if "save_vis" in options:  # the same pictures, drawn here from the images sent back
        drawn = sorted(p.relative_to(local_vis) for p in local_vis.rglob("*") if p.is_file())
        assert drawn and drawn == sorted(p.relative_to(ray_vis) for p in ray_vis.rglob("*")
                                         if p.is_file())
        assert all((local_vis / p).read_bytes() == (ray_vis / p).read_bytes()
                   for p in drawn)


def test_killed_actors_lose_and_duplicate_nothing(ray_cluster: object, tiny_model: Path,
                                                  photos: Path, tmp_path: Path) -> None:
    import ray

    local = _local(tiny_model, photos, tmp_path / "local.jsonl")
    killed: list[int] = []

    def kill_every_actor(progress: ClusterProgress) -> None:
        if killed:
            return
        for name in progress.actor_names:  # the next chunks are in flight on them
            pid = ray.get(ray.get_actor(name).info.remote()).pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        while any(_alive(pid) for pid in killed):  # dead before the next chunk goes out
            time.sleep(0.01)

    stats = predict_on_cluster(tiny_model, photos, out=tmp_path / "ray.jsonl", progress=False,
                               chunk_size=2, on_chunk=kill_every_actor)
    assert len(killed) == 2
    assert stats.retried >= 1
    assert (tmp_path / "ray.jsonl").read_bytes() == local
    assert stats.images == 36 + 8


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_interrupted_run_keeps_a_prefix_and_commits_nothing(ray_cluster: object,
                                                            tiny_model: Path, photos: Path,
                                                            tmp_path: Path) -> None:
    local = _local(tiny_model, photos, tmp_path / "local.jsonl").splitlines(keepends=True)

    def interrupt(progress: ClusterProgress) -> None:
        if progress.chunks == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the driver

    out = tmp_path / "ray.jsonl"
    stats = predict_on_cluster(tiny_model, photos, out=out, progress=False, chunk_size=4,
                               partial=True, on_chunk=interrupt)
    assert stats.interrupted and not out.exists()
    kept = (tmp_path / "ray.partial.jsonl").read_bytes().splitlines(keepends=True)
    assert len(kept) == 8 and kept == local[:8]  # the two chunks of 4 written before
