"""Monitoring files checked by their consumers: promtool (config, rules, rule unit tests,
every dashboard query) and Grafana's dashboard rules encoded from its source."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import ConfigError
from detforge.monitor.assets import ALERTS, AssetOptions, write_assets
from detforge.monitor.dashboard import dashboard, panel_queries
from detforge.monitor.grafana_rules import check_dashboard

from .conftest import image_files

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (make system-deps)")


@pytest.fixture()
def assets(tmp_path: Path) -> Path:
    write_assets(tmp_path / "mon", AssetOptions(targets=("127.0.0.1:8000",)))
    return tmp_path / "mon"


@needs_promtool
def test_cli_writes_files_that_promtool_accepts(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["monitor", "assets", "--out", str(tmp_path / "m"),
                                   "--target", "10.0.0.5:8000", "--check"])
    assert res.exit_code == 0, res.output
    for check in ("check config prometheus.yml", "check rules alert_rules.yml",
                  "test rules alert_rules_test.yml", "dashboard queries parse"):
        assert f"promtool: {check}: ok" in res.output
    cfg = yaml.safe_load((tmp_path / "m" / "prometheus.yml").read_text())
    assert cfg["scrape_configs"][0]["static_configs"][0]["targets"] == ["10.0.0.5:8000"]


def test_rules_hold_every_alert(assets: Path) -> None:
    rules = yaml.safe_load((assets / "alert_rules.yml").read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == list(ALERTS)


@needs_promtool
@pytest.mark.parametrize("mutation", ["threshold", "for"])
def test_rule_unit_tests_catch_a_changed_alert(assets: Path, mutation: str) -> None:
    from detforge.monitor.promtool import _run

    path = assets / "alert_rules.yml"
    doc = yaml.safe_load(path.read_text())
    drift = next(r for r in doc["groups"][0]["rules"] if r["alert"] == "DetforgeDrift")
    if mutation == "threshold":  # compare with a constant above the series' PSI
        drift["expr"] = 'detforge_drift_psi{job="detforge"} > 0.9'
    else:  # fires too early
        drift["for"] = "0m"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match="DetforgeDrift"):
        _run("test", "rules", "alert_rules_test.yml", cwd=assets)


@needs_promtool
def test_a_typo_in_a_dashboard_query_fails(assets: Path) -> None:
    from detforge.monitor.promtool import check_expressions

    queries = panel_queries(dashboard())
    check_expressions(queries)
    broken = [*queries[:-1], (queries[-1][0], queries[-1][1].replace(")", "", 1))]
    with pytest.raises(ConfigError, match="check rules"):
        check_expressions(broken)


def test_dashboard_follows_grafana_rules() -> None:
    board = dashboard()
    assert check_dashboard(board) == []
    titles = {p["title"] for p in board["panels"]}
    for needed in ("Throughput", "Latency percentiles (/v1/detect)", "Batch size", "Queue",
                   "Drift per signal (PSI)", "Class mix (detections/s)", "GPU memory"):
        assert needed in titles
    # the provisioned file is the same dashboard
    assert board == json.loads(json.dumps(board))


def _mutate(board: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(board)
    node: Any = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return out


@pytest.mark.parametrize("path,value,expect", [
    ("graphTooltip", 5, "graphTooltip"),
    ("schemaVersion", "39", "schemaVersion"),
    ("panels.1.gridPos.w", 25, "gridPos.w"),
    ("panels.1.gridPos.x", 22, "past the 24 grid columns"),
    ("panels.2.gridPos.y", 0, "overlaps"),
    ("panels.2.id", 2, "duplicate panel id"),
    ("panels.2.type", "", "non-empty"),
    ("panels.2.type", "fancy-plugin", "not a core panel"),
    ("panels.2.fieldConfig", KeyError, "fieldConfig: required"),
    ("panels.1.fieldConfig.defaults.thresholds.steps.0.value", 0, "-Infinity"),
    ("panels.4.targets.1.refId", "A", "refIds"),
    ("templating.list.1.type", "dropdown", "templating.list[1].type"),
    ("bogus", 1, "not a dashboard field"),
], ids=["tooltip", "schema", "width", "columns", "overlap", "dup-id", "type", "plugin",
        "fieldconfig", "thresholds", "refid", "variable", "field"])
def test_grafana_rules_catch_each_violation(path: str, value: Any, expect: str) -> None:
    errors = check_dashboard(_mutate(dashboard(), path, value))
    assert any(expect in e for e in errors), errors


def test_compose_wires_the_files_it_mounts(assets: Path) -> None:
    doc = yaml.safe_load((assets / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"serve", "prometheus", "grafana", "mlflow", "watch"}
    for name, svc in services.items():
        assert isinstance(svc.get("image"), str), name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("./"):  # a bind mount of a file written here
                assert (assets / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith(("$", "/", "..")):
                assert source in doc["volumes"], f"{name}: undeclared volume {source}"
    prom = yaml.safe_load((assets / "prometheus.yml").read_text())
    assert (assets / prom["rule_files"][0]).is_file()
    # Grafana provisioning points at the folder compose mounts the dashboard into
    prov = yaml.safe_load((assets / "grafana/provisioning/dashboards/detforge.yml").read_text())
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert prov["providers"][0]["options"]["path"] in mounted
    ds = yaml.safe_load((assets / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"


def test_bundle_reference_that_cannot_be_built_is_a_note(tiny_model: Path, known_data: Path,
                                                         tmp_path: Path) -> None:
    """A bundle's model that detects nothing at its --conf gets no reference.json, and the
    bundle's notes say why (the bundle itself is still written)."""
    from detforge.monitor.bundle import MonitorFiles

    black = tmp_path / "black"
    shutil.copytree(known_data, black)
    for image in image_files(black):  # the tiny model's scores follow brightness
        with Image.open(image) as im:
            size = im.size
        Image.new("RGB", size).save(image)
    files = MonitorFiles(lambda folder, onnx: ["inner"], data=black, conf=0.25, iou=0.7)
    notes = files(tmp_path, tiny_model)
    assert notes[0] == "inner"
    assert notes[1].startswith("monitor/reference.json not written: no detection on the ")
    assert (tmp_path / "monitor" / "prometheus.yml").is_file()
    assert not (tmp_path / "monitor" / "reference.json").exists()
    ok = MonitorFiles(lambda folder, onnx: [], data=known_data, conf=0.25, iou=0.7)
    assert ok(tmp_path / "b", tiny_model) == []
    assert (tmp_path / "b" / "monitor" / "reference.json").is_file()
