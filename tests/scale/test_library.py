"""``library index --ray`` stores the same rows as a local index."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.library import index_library

TIMES = {"analysed_at", "first_seen", "updated_at"}
"""Columns holding timestamps; ``files.id`` follows the order files are stored in."""


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for table in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")
                    if r[1] not in TIMES | {"id"}]
            out[table] = sorted(con.execute(f"SELECT {', '.join(cols)} FROM {table}"),
                                key=repr)
        return out
    finally:
        con.close()


def test_index_on_ray_stores_the_same_rows(ray_cluster: object, tiny_model: Path,
                                           tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    pytest.importorskip("rawpy")
    pytest.importorskip("open_clip")
    from detforge.library.synth import make_library, write_tiny_clip

    root = tmp_path / "Photos"
    make_library(root)
    clip = write_tiny_clip(tmp_path / "clip")
    options: dict[str, Any] = {"model": tiny_model, "tagger": str(clip), "video_every_s": 0.5,
                               "progress": False}
    local = index_library(root, db=tmp_path / "local.sqlite", **options)
    result = CliRunner().invoke(app, [
        "library", "index", str(root), "--db", str(tmp_path / "ray.sqlite"), "--model",
        str(tiny_model), "--tagger", str(clip), "--video-every", "0.5", "--no-progress",
        "--ray"])
    assert result.exit_code == 0, result.output
    expected, got = _rows(tmp_path / "local.sqlite"), _rows(tmp_path / "ray.sqlite")
    assert got == expected
    # every kind of row is there: photos, the unreadable file, detections, tags, tracks
    assert local.errors == 1 and local.detections > 0
    assert all(expected[t] for t in ("contents", "files", "detections", "tags", "tracks"))
    assert f"{local.analysed} analysed" in result.output


def test_index_without_detector_on_ray(ray_cluster: object, tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    pytest.importorskip("rawpy")
    from detforge.library.synth import make_library

    root = tmp_path / "Photos"
    make_library(root)
    index_library(root, db=tmp_path / "local.sqlite", progress=False)
    summary = index_library(root, db=tmp_path / "ray.sqlite", progress=False, ray="local")
    assert _rows(tmp_path / "ray.sqlite") == _rows(tmp_path / "local.sqlite")
    assert summary.analysed > 0 and summary.errors == 1
