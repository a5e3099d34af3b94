from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app

runner = CliRunner()

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("detforge.data.formats.coco") is None
    or importlib.util.find_spec("detforge.data.formats.yolo") is None,
    reason="coco/yolo formats not written yet")


@pytest.mark.parametrize(("args", "expected"), [
    ([], "splits: train 8, val 2"),
    (["--format", "coco", "--size", "256,192"], "as coco"),
    (["--no-split"], "splits: none"),
    (["--splits", "0.6,0.2,0.2"], "splits: train 6, val 2, test 2"),
], ids=["default", "coco-size", "no-split", "three-splits"])
def test_synth_command(tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(app, ["data", "synth", str(out), "--images", "10", "--classes", "2",
                                 "--seed", "4", *args])
    assert result.exit_code == 0, result.output
    assert "wrote 10 images" in result.output and "2 classes (circle, square)" in result.output
    assert expected in result.output
    assert any(p.suffix == ".jpg" for p in out.rglob("*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--classes", "0"], "ConfigError: --classes must be between 1 and"),
    (["--size", "big"], "ConfigError: size 'big' must be W,H"),
    (["--format", "pascal"], "ConfigError: unknown dataset format 'pascal'"),
    (["--splits", "0.9,0.2"], "ConfigError: split ratios"),
], ids=["classes", "size", "format", "splits"])
def test_synth_command_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["data", "synth", str(tmp_path / "ds"), "--images", "3", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_catalog_commands(tmp_path: Path) -> None:
    cat = str(tmp_path / "catalog.sqlite")
    ds = tmp_path / "ds"
    assert runner.invoke(app, ["data", "synth", str(ds), "--images", "6", "--classes", "3",
                               "--seed", "1"]).exit_code == 0
    added = runner.invoke(app, ["data", "catalog", "add", str(ds), "--name", "shapes",
                                "--source", "synth", "--licence", "CC0-1.0", "--catalog", cat])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("shapes@") and "6 images" in added.output
    version = added.output.split("@")[1].split(":")[0]

    listed = runner.invoke(app, ["data", "catalog", "list", "--catalog", cat])
    assert listed.exit_code == 0 and "NAME" in listed.output and version in listed.output
    as_json = json.loads(runner.invoke(app, ["data", "catalog", "list", "--json",
                                             "--catalog", cat]).output)
    assert [e["version"] for e in as_json] == [version] and "findings" not in as_json[0]

    shown = runner.invoke(app, ["data", "catalog", "show", version, "--catalog", cat])
    assert shown.exit_code == 0 and "licence:   CC0-1.0" in shown.output
    full = json.loads(runner.invoke(app, ["data", "catalog", "show", "shapes", "--json",
                                          "--catalog", cat]).output)
    assert full["version"] == version and full["num_images"] == 6 and "findings" in full

    unknown = runner.invoke(app, ["data", "catalog", "show", "nope", "--catalog", cat])
    assert unknown.exit_code == 2
    assert "CatalogError: no dataset 'nope'" in unknown.output and "['shapes']" in unknown.output


def test_catalog_uses_detforge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETFORGE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["data", "catalog", "list"])
    assert result.exit_code == 0 and "the catalogue is empty" in result.output
    assert runner.invoke(app, ["data", "synth", str(tmp_path / "ds"), "--images", "2"]
                         ).exit_code == 0
    result = runner.invoke(app, ["data", "catalog", "add", str(tmp_path / "ds"), "--name", "s"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "catalog.sqlite").is_file()
