"""Champion / challenger on a real MLflow registry (local store) with real evaluations:
a better candidate is promoted, a worse one is kept as staging, a dry run changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from detforge.monitor import load_monitor_config
from detforge.monitor.config import MonitorConfig

from .loop_data import bad_model, good_model, holdout

pytest.importorskip("mlflow")


def _config(runs: Path, data: Path, **extra: str) -> MonitorConfig:
    overrides = [f"retrain.data={data}", "retrain.model=yolo11n.yaml",
                 f"evaluate.data={data}", "evaluate.split=val", "evaluate.metric=mAP50",
                 "registry.name=det", f"registry.out={runs}",
                 "trigger.prometheus=null", "trigger.every_hours=1",
                 *(f"{k}={v}" for k, v in extra.items())]
    return load_monitor_config(None, overrides)


def test_better_candidate_is_promoted_worse_is_kept_as_staging(tmp_path: Path,
                                                               runs_dir: Path) -> None:
    from detforge.deploy.registry import open_registry
    from detforge.monitor.retrain import challenge

    data = holdout(tmp_path / "holdout")
    cfg = _config(runs_dir, data)
    reg = open_registry(None, out=cfg.registry.out)  # type: ignore[union-attr]
    bad = reg.register(bad_model(tmp_path / "bad.onnx"), name="det").version
    reg.promote("det", bad, to="production")
    good = reg.register(good_model(tmp_path / "good.onnx"), name="det").version
    result = challenge(cfg, good, trigger="test")
    assert result.promoted and result.candidate_score is not None
    assert result.production_score == 0.0 and result.candidate_score > 0.5
    aliases = {m.name: m.aliases for m in reg.list_models()}["det"]
    assert aliases["production"] == good and aliases["previous-production"] == bad

    worse = reg.register(bad_model(tmp_path / "bad2.onnx"), name="det").version
    result = challenge(cfg, worse, trigger="test")
    assert not result.promoted and "kept as staging" in result.reason
    aliases = {m.name: m.aliases for m in reg.list_models()}["det"]
    assert aliases["production"] == good and aliases["staging"] == worse

    run = reg.client.get_run(result.mlflow_run_id)
    assert run.data.tags["decision"] == "rejected" and run.info.status == "FINISHED"
    assert run.data.metrics["production/mAP50"] > run.data.metrics["candidate/mAP50"]
    assert run.data.params["trigger"] == "test"


def test_dry_run_records_the_plan_and_changes_nothing(tmp_path: Path, runs_dir: Path) -> None:
    from detforge.deploy.registry import open_registry
    from detforge.monitor.retrain import run_cycle

    data = holdout(tmp_path / "holdout")
    cfg = _config(runs_dir, data, dry_run="true")
    reg = open_registry(None, out=cfg.registry.out)  # type: ignore[union-attr]
    v1 = reg.register(good_model(tmp_path / "good.onnx"), name="det").version
    reg.promote("det", v1, to="production")
    result = run_cycle(cfg, trigger="schedule")
    assert result.dry_run and not result.promoted and "would train" in result.reason
    assert [v.version for v in reg.list_models()[0].versions] == [v1]
    run = reg.client.get_run(result.mlflow_run_id)
    assert run.data.tags["decision"] == "dry-run"


def test_production_model_needed_to_fine_tune(tmp_path: Path, runs_dir: Path) -> None:
    from detforge.core.errors import ConfigError
    from detforge.monitor.retrain import run_cycle

    cfg = _config(runs_dir, holdout(tmp_path / "h"), **{"retrain.model": "production"})
    with pytest.raises(ConfigError, match="no production version"):
        run_cycle(cfg)
