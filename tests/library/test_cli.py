"""``detforge library``: index, search --json, duplicates, stats, and one-line errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from detforge.cli import app
from detforge.library.store import SCHEMA_VERSION

runner = CliRunner()


def test_index_search_duplicates_stats(library: tuple[Path, dict[str, Any]], tmp_path: Path,
                                       tiny_model: Path) -> None:
    root, m = library
    p = m["paths"]
    db = tmp_path / "cli.sqlite"
    res = runner.invoke(app, ["library", "index", str(root), "--db", str(db), "--model",
                              str(tiny_model), "--no-progress", "--video-every", "0.5"])
    assert res.exit_code == 0, res.output
    assert f"{m['files']} files in" in res.output and "12 analysed" in res.output
    assert "1 unreadable, 1 unsupported" in res.output
    res = runner.invoke(app, ["library", "search", "--db", str(db), "--json"])
    records = json.loads(res.stdout)
    assert len(records) == 13 and all("path" in r and "date" in r for r in records)
    res = runner.invoke(app, ["library", "search", "--db", str(db), "--object", "dog",
                              "--after", "2024-01-01", "--camera", "iPhone",
                              "--min-sharpness", "100", "--json"])
    assert {r["path"] for r in json.loads(res.stdout)} == {p["dog24"], p["heic"], p["near"]}
    res = runner.invoke(app, ["library", "search", "--db", str(db), "dog 2023"])
    assert res.exit_code == 0 and "2 file(s)" in res.output and p["copy"] in res.output
    res = runner.invoke(app, ["library", "search", "--db", str(db), "--near-duplicates-of",
                              p["dog24"], "--json"])
    assert [r["path"] for r in json.loads(res.stdout)] == [p["near"]]
    res = runner.invoke(app, ["library", "duplicates", "--db", str(db), "--json"])
    groups = json.loads(res.stdout)
    assert sorted((g["kind"], g["keep"]) for g in groups) == [("exact", p["dog23"]),
                                                              ("near", p["dog24"])]
    assert all({"path", "distance"} <= set(x) for g in groups for x in g["members"])
    res = runner.invoke(app, ["library", "duplicates", "--db", str(db)])
    assert "2 group(s); 2 file(s) could go" in res.output
    res = runner.invoke(app, ["library", "stats", "--db", str(db), "--json"])
    stats = json.loads(res.stdout)
    assert stats["files"] == m["files"] and stats["errors"] == 1 and stats["unsupported"] == 1
    assert stats["by_kind"] == {"image": 12, "other": 1, "video": 2}
    res = runner.invoke(app, ["library", "index", str(root), "--db", str(db), "--model",
                              str(tiny_model), "--no-progress", "--video-every", "0.5"])
    assert f"0 analysed, {m['files']} unchanged" in res.output


def test_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    root = tmp_path / "lib"
    root.mkdir()
    assert runner.invoke(app, ["library", "index", str(root), "--db", str(db),
                               "--no-progress"]).exit_code == 0
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    con.commit()
    con.close()
    for args in (["index", str(root)], ["search"], ["stats"], ["duplicates"]):
        res = runner.invoke(app, ["library", *args, "--db", str(db)])
        assert res.exit_code == 2, args
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("LibraryDatabaseError:")
        assert "newer detforge" in lines[0] and "Traceback" not in res.output
    res = runner.invoke(app, ["library", "index", str(tmp_path / "nope"), "--db", str(db)])
    assert res.exit_code == 2 and "ConfigError" in res.output
    res = runner.invoke(app, ["library", "index", str(root), "--db", str(tmp_path / "x.sqlite"),
                              "--tagger", str(tmp_path / "not-a-model.bin"), "--no-progress"])
    assert res.exit_code == 2 and res.output.startswith("TaggerError:")
    res = runner.invoke(app, ["library", "search", "--db", str(tmp_path / "x.sqlite"),
                              "colour:red"])
    assert res.exit_code == 2 and "unknown key" in res.output


def test_public_api_and_light_import() -> None:
    import inspect
    import subprocess
    import sys

    import detforge.library as lib

    public = {n for n in dir(lib) if not n.startswith("_")
              and not inspect.ismodule(getattr(lib, n))}
    assert set(lib.__all__) == public
    code = ("import sys, detforge.library, detforge.cli.library; "
            "print(sorted(m for m in ('torch', 'open_clip', 'fastapi', 'rawpy', 'pillow_heif') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pixel_cap_from_the_option_or_the_environment(tmp_path: Path,
                                                      monkeypatch: Any) -> None:
    from detforge.library.synth import save_image
    from detforge.testing import random_image

    root = tmp_path / "lib"
    save_image(root / "big.jpg", random_image(400, 600, seed=1), "JPEG")  # 240,000 px
    save_image(root / "small.jpg", random_image(100, 150, seed=2), "JPEG")  # 15,000 px

    def errors(db: Path, *extra: str) -> dict[str, str | None]:
        res = runner.invoke(app, ["library", "index", str(root), "--db", str(db),
                                  "--no-progress", *extra])
        assert res.exit_code == 0, res.output
        with sqlite3.connect(db) as con:
            return {Path(p).name: e for p, e in con.execute("SELECT path, error FROM files")}

    got = errors(tmp_path / "opt.sqlite", "--max-pixels", "100000")
    assert got["small.jpg"] is None and "600x400 pixels is over the 100,000-pixel cap" in str(
        got["big.jpg"]) and "--max-pixels or $DETFORGE_MAX_PIXELS" in str(got["big.jpg"])
    monkeypatch.setenv("DETFORGE_MAX_PIXELS", "10000")
    got = errors(tmp_path / "env.sqlite")
    assert all("pixel cap" in str(e) for e in got.values())
    monkeypatch.delenv("DETFORGE_MAX_PIXELS")
    assert set(errors(tmp_path / "default.sqlite").values()) == {None}
    res = runner.invoke(app, ["library", "index", str(root), "--db", str(tmp_path / "x.sqlite"),
                              "--max-pixels", "0"])
    assert res.exit_code == 2 and res.output.startswith("ConfigError:") and len(
        res.output.strip().splitlines()) == 1
