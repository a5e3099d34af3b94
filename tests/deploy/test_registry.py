"""Model cards and the MLflow model registry on a local SQLite store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from detforge.core.errors import BackendError
from detforge.deploy.model_card import card_markdown, collect_card, key_metrics
from detforge.deploy.registry import PREVIOUS, PRODUCTION, Registry, RegistryError, open_registry
from detforge.runtime.metadata import ModelMeta, embed_meta
from detforge.testing import tiny_onnx_model

from .conftest import copy_store

METRICS = {"mAP50-95": 0.412, "mAP50": 0.63, "precision": 0.7, "recall": 0.55}


def make_onnx(path: Path, **lineage: Any) -> Path:
    """The tiny test detector with lineage (dataset version, run id, metrics) in its metadata."""
    tiny_onnx_model(path, classes=("helmet", "vest"))
    model = onnx.load(str(path))
    embed_meta(model, ModelMeta(classes=("helmet", "vest"), imgsz=(64, 64), dynamic_batch=True,
                                **lineage))
    onnx.save(model, str(path))
    return path


def make_bundle(root: Path, targets: dict[str, Any]) -> Path:
    """A bundle folder with one ``<target>/manifest.json`` (and one file) per target."""
    for folder, manifest in targets.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "labels.txt").write_text("helmet\nvest\n")
        (root / folder / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx(tmp_path_factory.mktemp("model") / "best.onnx",
                     dataset_version="ds-1a2b3c", run_id="ppe/v3", metrics=METRICS)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Registry:
    """One store for the module (a copy of the session's migrated one); tests use own names."""
    return open_registry(copy_store(mlflow_db_template, tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def known(registry: Registry, onnx_model: Path) -> Registry:
    """The store with model ``known`` v1 registered and nothing promoted."""
    registry.register(onnx_model, name="known")
    return registry


def test_card_from_onnx_metadata(onnx_model: Path) -> None:
    card = collect_card(onnx_model, name="ppe")
    assert card.format == "onnx" and card.classes == ("helmet", "vest")
    assert card.imgsz == (64, 64) and card.layout == "raw" and card.precision == "fp32"
    assert card.dataset_version == "ds-1a2b3c" and card.training_run == "ppe/v3"
    assert card.metrics == METRICS and len(card.sha256) == 64 and card.version is None
    assert card.tags()["metric.mAP50-95"] == "0.412"


def test_card_from_pt_reads_run_json(tmp_path: Path) -> None:
    weights = tmp_path / "ppe" / "v3" / "weights" / "best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not loaded: the card reads run.json only")
    (weights.parent.parent / "run.json").write_text(json.dumps({
        "name": "ppe", "version": "v3", "final_metrics": {"mAP50-95": 0.3},
        "dataset": {"version": "ds-9", "classes": ["a", "b"]},
        "mlflow": {"run_id": "abc123"}}))
    card = collect_card(weights, name="ppe")
    assert (card.format, card.dataset_version, card.training_run) == ("pt", "ds-9", "abc123")
    assert card.classes == ("a", "b") and card.metrics == {"mAP50-95": 0.3}


def test_card_from_pt_without_run_is_unknown(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    card = collect_card(weights, name="m")
    assert card.dataset_version is None and card.training_run is None and card.metrics == {}
    assert "unknown" in card_markdown(card) and "No metrics" in card_markdown(card)


@pytest.mark.parametrize(("manifests", "bundle_sub", "expected"), [
    ({"t4": {"target": "t4", "precision": "int8", "files": {"model.onnx": "ab" * 32}}},
     "t4", {"t4": "int8"}),
    ({"t4": {"target": "t4", "precision": "fp16", "files": {}},
      "orin": {"target": {"name": "orin-nano"}, "files": {"labels.txt": "cd" * 32}}},
     "", {"orin-nano": None, "t4": "fp16"}),
    ({"jetson-nano": {"files": ["not", "a", "map"]}}, "", {"jetson-nano": None}),
], ids=["one-target-folder", "multi-target-parent", "sparse-manifest"])
def test_card_reads_bundle_manifests(onnx_model: Path, tmp_path: Path,
                                     manifests: dict[str, Any], bundle_sub: str,
                                     expected: dict[str, str | None]) -> None:
    bundle = make_bundle(tmp_path / "bundle", manifests)
    card = collect_card(onnx_model, name="ppe", bundle=bundle / bundle_sub)
    assert {t: info["precision"] for t, info in card.bundle.items()} == expected
    assert sorted(card.targets) == sorted(expected)
    assert all(len(info["manifest_sha256"]) == 64 for info in card.bundle.values())
    assert all((d / "manifest.json").is_file() for d in card.bundle_dirs)
    text = card_markdown(card)
    for info in card.bundle.values():
        assert info["manifest_sha256"] in text
        assert all(f"`{h}`" in text for h in info["files"].values())


@pytest.mark.parametrize(("setup", "error", "message"), [
    (lambda p: (p / "missing.onnx", None), RegistryError, "no such model file"),
    (lambda p: (p / "model.engine", None), RegistryError, "cannot register a .engine file"),
    (lambda p: (p / "best.onnx", p / "nobundle"), RegistryError, "no such folder"),
    (lambda p: (p / "best.onnx", p / "empty"), RegistryError, "no manifest.json"),
    (lambda p: (p / "best.onnx", p / "bad"), RegistryError, "not readable JSON"),
    (lambda p: (p / "plain.onnx", None), BackendError, "no model metadata"),
], ids=["missing-model", "wrong-suffix", "missing-bundle", "bundle-without-manifest",
        "corrupt-manifest", "onnx-without-metadata"])
def test_card_errors_name_the_file_and_fix(
        tmp_path: Path, setup: Callable[[Path], tuple[Path, Path | None]],
        error: type[Exception], message: str) -> None:
    make_onnx(tmp_path / "best.onnx")
    (tmp_path / "model.engine").write_bytes(b"plan")
    (tmp_path / "bad").mkdir()
    (tmp_path / "empty" / "t4").mkdir(parents=True)
    (tmp_path / "bad" / "manifest.json").write_text("{oops")
    plain = onnx.load(str(tmp_path / "best.onnx"))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    model, bundle = setup(tmp_path)
    with pytest.raises(error, match=message) as info:
        collect_card(model, name="m", bundle=bundle)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(("metrics", "expected"), [
    ({"recall": 0.5, "mAP50": 0.6, "mAP50-95": 0.4, "precision": 0.7},
     ["mAP50-95", "mAP50", "precision"]),
    ({"loss": 1.0, "val": {"map_small": 0.2}, "flag": True, "nan": float("nan")},
     ["val.map_small", "loss"]),
    ({}, []),
], ids=["known-names-first", "nested-and-non-numeric", "empty"])
def test_key_metrics(metrics: dict[str, Any], expected: list[str]) -> None:
    assert list(key_metrics(metrics)) == expected


def test_promote_rollback_round_trip(registry: Registry, onnx_model: Path) -> None:
    versions = [registry.register(onnx_model, name="round").version for _ in range(3)]
    assert versions == [1, 2, 3]

    def aliases() -> dict[str, int]:
        return {a: int(v) for a, v in registry.client.get_registered_model("round")
                .aliases.items()}

    first = registry.promote("round", 1, to=PRODUCTION)
    assert (first.version, first.replaced, first.previous) == (1, None, None)
    registry.promote("round", 2, to="staging")
    registry.promote("round", "staging", to=PRODUCTION)
    registry.promote("round", 3, to=PRODUCTION)
    assert aliases() == {PRODUCTION: 3, PREVIOUS: 2, "staging": 2}

    back = registry.rollback("round")
    assert (back.version, back.replaced, back.previous) == (2, 3, 1)
    assert aliases() == {PRODUCTION: 2, PREVIOUS: 1, "staging": 2}
    back = registry.rollback("round")
    assert (back.version, back.replaced, back.previous) == (1, 2, None)
    assert aliases() == {PRODUCTION: 1, "staging": 2}
    with pytest.raises(RegistryError, match="no 'previous-production' version.*promote round"):
        registry.rollback("round")

    again = registry.promote("round", 3, to=PRODUCTION)
    assert (again.replaced, again.previous) == (1, 1)
    assert registry.show("round")["version"] == 3


def test_register_card_is_stored_and_listed(registry: Registry, onnx_model: Path,
                                            tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", {"t4": {"target": "t4", "precision": "int8",
                                                  "files": {"labels.txt": "ef" * 32}}})
    card = registry.register(onnx_model, name="carded", bundle=bundle)
    shown = registry.show("carded", card.version)
    assert shown["dataset_version"] == "ds-1a2b3c" and shown["metrics"] == METRICS
    assert shown["targets"] == ["t4"] and shown["bundle"]["t4"]["files"] == {
        "labels.txt": "ef" * 32}
    assert shown["aliases"] == [] and shown["source"].endswith("/model/best.onnx")
    assert "# carded v1" in shown["description"]
    assert "| mAP50-95 | 0.4120 |" in shown["description"]
    version = registry.client.get_model_version("carded", "1")
    assert version.tags["dataset_version"] == "ds-1a2b3c" and version.tags["targets"] == "t4"
    run_id = shown["mlflow_run_id"]
    artifacts = {f.path for f in registry.client.list_artifacts(run_id, "bundle/t4")}
    assert artifacts == {"bundle/t4/labels.txt", "bundle/t4/manifest.json"}
    run = registry.client.get_run(run_id)
    assert run.data.metrics["mAP50-95"] == pytest.approx(0.412) and run.info.status == "FINISHED"

    listed = {m.name: m for m in registry.list_models()}["carded"]
    assert [v.version for v in listed.versions] == [1]
    assert listed.versions[0].metrics == {"mAP50-95": 0.412, "mAP50": 0.63, "precision": 0.7}
    assert listed.versions[0].targets == ("t4",)


@pytest.mark.parametrize(("call", "message"), [
    (lambda r: r.show("ghost"), "no registered model 'ghost'.*registered models: .*known"),
    (lambda r: r.show("known", 7), "'known' has no version 7.*versions: 1"),
    (lambda r: r.show("known", "staging"), "'known' has no alias 'staging'"),
    (lambda r: r.promote("known", 9, to=PRODUCTION), "has no version 9"),
    (lambda r: r.promote("known", 1, to="prod"), "cannot promote to 'prod'.*--to production"),
    (lambda r: r.promote("ghost", 1, to=PRODUCTION), "no registered model 'ghost'"),
    (lambda r: r.rollback("known"), "nothing is in production.*promote known"),
], ids=["show-unknown-model", "show-unknown-version", "show-unknown-alias",
        "promote-unknown-version", "promote-bad-alias", "promote-unknown-model",
        "rollback-nothing"])
def test_registry_errors_say_the_fix(known: Registry, call: Callable[[Registry], object],
                                     message: str) -> None:
    with pytest.raises(RegistryError, match=message) as info:
        call(known)
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "`detforge registry" in text or "--to production" in text


def test_card_of_a_real_bundle(onnx_model: Path, tmp_path: Path) -> None:
    from detforge.deploy.bundle import bundle_model

    bundle_model(onnx_model, targets=["jetson-nano", "t4"], out=tmp_path / "b",
                 reference_images=1)
    card = collect_card(onnx_model, name="ppe", bundle=tmp_path / "b")
    assert card.targets == ("jetson-nano", "t4")
    for target in card.targets:
        manifest = json.loads((tmp_path / "b" / target / "manifest.json").read_text())
        info = card.bundle[target]
        assert info["files"] == manifest["files"] and len(info["files"]) > 5
        assert info["precision"] == manifest["target"]["precision"]
        assert info["model_sha256"] == manifest["model"]["sha256"]
    assert card.bundle["jetson-nano"]["precision"] == "fp16"
    text = card_markdown(card)
    assert all(f"bundle model sha256 `{card.bundle[t]['model_sha256']}`" in text
               for t in card.targets)


def test_card_takes_missing_lineage_from_the_bundle(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    bundle = make_bundle(tmp_path / "b", {"t4": {
        "target": {"name": "t4", "precision": "int8"}, "files": {},
        "lineage": {"dataset_version": "ds-7", "run_id": "r-7", "metrics": {"mAP50": 0.5}},
        "fidelity": [{"kind": "int8", "map50_95_before": 0.41, "map50_95_after": 0.4}]}})
    card = collect_card(weights, name="m", bundle=bundle)
    assert (card.dataset_version, card.training_run, card.metrics) == ("ds-7", "r-7",
                                                                        {"mAP50": 0.5})
    assert card.bundle["t4"]["precision"] == "int8"
    assert "- fidelity: kind=int8, map50_95_before=0.41, map50_95_after=0.4" in card_markdown(card)


def test_versions_registered_by_training_show_run_metrics(registry: Registry,
                                                          tmp_path: Path) -> None:
    from detforge.train.tracking import Tracker

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    tracker = Tracker(registry.uri, "detforge", artifact_root=tmp_path / "mlartifacts")
    tracker.start("trained-v1", params={"epochs": "1"}, tags={"dataset_version": "ds-tr"})
    tracker.log_epoch(2, {"final/mAP50-95": 0.25, "final/mAP50": 0.5, "train/loss": 1.0})
    tracker.log_artifacts([weights], "weights")
    assert tracker.register("trained") == "1"
    tracker.end()

    (listed,) = [m for m in registry.list_models() if m.name == "trained"]
    assert listed.versions[0].metrics == {"mAP50-95": 0.25, "mAP50": 0.5}
    assert listed.versions[0].dataset_version == "ds-tr"
    shown = registry.show("trained")
    assert shown["training_run"] == tracker.run_id and shown["version"] == 1
    assert "Registered without a detforge card" in shown["description"]
    assert "- mAP50-95: 0.2500" in shown["description"]
