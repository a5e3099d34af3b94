"""``detforge registry`` end to end on a local SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detforge.cli import app
from detforge.testing import tiny_onnx_model

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny ONNX model, a one-target bundle and a runs folder for the default store."""
    root = tmp_path_factory.mktemp("registry")
    model = tiny_onnx_model(root / "model.onnx")
    bundle = root / "bundle" / "orin-nano"
    bundle.mkdir(parents=True)
    (bundle / "labels.txt").write_text("cat\ndog\n")
    (bundle / "manifest.json").write_text(json.dumps({
        "target": "orin-nano", "precision": "int8", "files": {"labels.txt": "12" * 32}}))
    return {"model": model, "bundle": root / "bundle", "out": root / "runs"}


def invoke(store: dict[str, Path], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["registry", *args, "--out", str(store["out"])])
    return result.exit_code, result.output


def test_register_promote_rollback_show_list(store: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out = invoke(store, "register", str(store["model"]), "--name", "cats",
                       "--bundle", str(store["bundle"]))
    assert code == 0, out
    assert "registered cats v1 (onnx" in out and "targets orin-nano" in out
    assert (store["out"] / "mlflow.db").is_file() and (store["out"] / "mlartifacts").is_dir()
    assert invoke(store, "register", str(store["model"]), "--name", "cats")[0] == 0

    code, out = invoke(store, "promote", "cats", "1", "--to", "production")
    assert (code, out.strip()) == (0, "cats: production -> v1")
    code, out = invoke(store, "promote", "cats", "2", "--to", "production")
    assert code == 0 and "production -> v2 (was v1)" in out
    assert "previous-production -> v1" in out

    code, out = invoke(store, "list", "--json")
    assert code == 0, out
    (model,) = json.loads(out)
    assert model["name"] == "cats" and model["aliases"] == {"production": 2,
                                                            "previous-production": 1}
    assert [v["targets"] for v in model["versions"]] == [[], ["orin-nano"]]

    code, out = invoke(store, "rollback", "cats")
    assert code == 0 and "production -> v1 (was v2)" in out

    code, out = invoke(store, "show", "cats")
    assert code == 0 and out.startswith("# cats v1")
    assert "### orin-nano" in out and "12" * 32 in out and "aliases: production" in out
    code, out = invoke(store, "show", "cats", "2", "--json")
    assert code == 0 and json.loads(out)["version"] == 2

    code, out = invoke(store, "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["model", "ver", "aliases"]
    assert any(line.split()[:3] == ["cats", "1", "production"] for line in out.splitlines())


@pytest.mark.parametrize(("args", "message"), [
    (["show", "ghost"], "RegistryError: no registered model 'ghost'"),
    (["promote", "ghost", "1", "--to", "staging"], "RegistryError: no registered model"),
    (["rollback", "ghost"], "RegistryError: no registered model 'ghost'"),
    (["register", "nope.onnx", "--name", "x"], "RegistryError: nope.onnx: no such model file"),
], ids=["show", "promote", "rollback", "register-missing-file"])
def test_errors_are_one_line_exit_2(store: dict[str, Path], args: list[str],
                                    message: str) -> None:
    code, out = invoke(store, *args)
    assert code == 2 and message in out and "Traceback" not in out


def test_explicit_tracking_uri_wins(store: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env' / 'env.db'}")
    uri = f"sqlite:///{store['out'] / 'mlflow.db'}"
    result = runner.invoke(app, ["registry", "list", "--tracking-uri", uri,
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "env").exists() and not (tmp_path / "runs").exists()
