"""The production loop on loopback, with the real programs: a `detforge serve` process with a
reference, a Prometheus (Debian's) scraping it with the generated config and rules, shifted
inputs, the drift alert firing (read through Prometheus' HTTP API), and `monitor watch`
retraining on it: candidate registered, promoted only when better."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from detforge.monitor import build_reference
from detforge.monitor.assets import AssetOptions, write_assets
from detforge.testing import random_image

from ..serve.conftest import encode
from .loop_data import good_model, holdout

PROMETHEUS = shutil.which("prometheus")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (make system-deps)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Loop:
    root: Path
    model: Path
    holdout: Path
    serve_url: str
    prom_url: str
    firing: list[dict[str, Any]]


def _firing(prom_url: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{prom_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "DetforgeDrift"
            and a["state"] == "firing"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    data = holdout(root / "holdout")
    model = good_model(root / "model.onnx")
    ref = build_reference(model, data, split="val", device="cpu", min_images=1)
    ref.write(root / "ref.json")
    port, prom_port = _free_port(), _free_port()
    logs = [(root / "serve.log").open("wb"), (root / "prometheus.log").open("wb")]
    serve = subprocess.Popen(
        [sys.executable, "-c", "from detforge.cli import main; main()", "serve", str(model),
         "--port", str(port), "--device", "cpu", "--reference", str(root / "ref.json"),
         "--drift-window", "20", "--drift-min-images", "8", "--api-key-env", "",
         "--log-level", "warning"], stdout=subprocess.DEVNULL,
        stderr=logs[0])
    procs = [serve]
    try:
        serve_url = f"http://127.0.0.1:{port}"
        _wait("detforge serve ready",
              lambda: httpx.get(f"{serve_url}/ready", timeout=5).status_code == 200
              or serve.poll() is not None)
        assert serve.poll() is None, (root / "serve.log").read_text()
        mon = root / "monitoring"
        write_assets(mon, AssetOptions(targets=(f"127.0.0.1:{port}",), scrape_interval="1s",
                                       evaluation_interval="1s", drift_for="2s"))
        prom = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={mon / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
             "--log.level=warn"], stdout=subprocess.DEVNULL,
            stderr=logs[1])
        procs.append(prom)
        prom_url = f"http://127.0.0.1:{prom_port}"
        _wait("prometheus ready", lambda: httpx.get(f"{prom_url}/-/ready",
                                                    timeout=5).status_code == 200)
        for i in range(20):  # darker than anything in the reference
            dark = (random_image(64, 64, seed=900 + i, shapes=0) * 0.3).astype(np.uint8)
            r = httpx.post(f"{serve_url}/v1/detect", content=encode(dark),
                           headers={"content-type": "image/png"}, timeout=30)
            assert r.status_code == 200, r.text
        firing = _wait("the DetforgeDrift alert to fire", lambda: _firing(prom_url), 120)
        yield Loop(root, model, data, serve_url, prom_url, firing)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(30)
        for log in logs:
            log.close()


def test_prometheus_fires_the_drift_alert(loop: Loop) -> None:
    signals = {a["labels"]["signal"] for a in loop.firing}
    assert "brightness" in signals and "resolution" not in signals
    for alert in loop.firing:
        assert alert["labels"]["job"] == "detforge" and alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) > 0.2
    q = httpx.get(f"{loop.prom_url}/api/v1/query",
                  params={"query": 'detforge_drift_psi{signal="brightness"}'}).json()
    assert float(q["data"]["result"][0]["value"][1]) > 0.2
    rules = httpx.get(f"{loop.prom_url}/api/v1/rules").json()["data"]["groups"][0]["rules"]
    states = {r["name"]: r["state"] for r in rules}
    assert states["DetforgeModelNotReady"] == "inactive" and states["DetforgeDown"] == "inactive"


@pytest.mark.train
def test_watch_retrains_on_the_alert_and_promotes_only_when_better(
        loop: Loop, runs_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from detforge.data.synth import synthesize
    from detforge.deploy.registry import open_registry
    from detforge.monitor import load_monitor_config
    from detforge.monitor.watch import watch

    reg = open_registry(None, out=runs_dir)
    v1 = reg.register(loop.model, name="det").version  # what the server runs
    reg.promote("det", v1, to="production")
    train_data = tmp_path / "train"
    synthesize(train_data, images=8, classes=2, seed=5, size=(64, 64))
    cfg = load_monitor_config(None, [
        f"trigger.prometheus={loop.prom_url}", "trigger.cooldown_s=3600",
        f"retrain.data={train_data}", "retrain.model=yolo11n.yaml", "retrain.epochs=1",
        "retrain.imgsz=64", "retrain.batch=8", "retrain.set=[plots=false]",
        f"evaluate.data={loop.holdout}", "evaluate.split=val", "evaluate.metric=mAP50",
        "registry.name=det", f"registry.out={runs_dir}"])
    lines: list[str] = []
    results = watch(cfg, once=True, echo=lines.append)
    assert len(results) == 1, lines
    res = results[0]
    assert res.trigger.startswith("alert DetforgeDrift (") and "brightness" in res.trigger
    assert res.candidate_version == v1 + 1 and res.production_version == v1
    assert res.candidate_score is not None and res.production_score is not None
    assert res.promoted == (res.candidate_score > res.production_score)
    aliases = reg.list_models()[0].aliases
    expected = res.candidate_version if res.promoted else v1
    assert aliases["production"] == expected
    if not res.promoted:  # a 1-epoch model does not beat the served one: kept as challenger
        assert aliases["staging"] == res.candidate_version
    run = reg.client.get_run(res.mlflow_run_id)
    assert run.data.tags["detforge.trigger"] == res.trigger
    assert run.data.tags["decision"] == ("promoted" if res.promoted else "rejected")
    training = reg.client.get_run(run.data.tags["training_run"])
    assert training.info.status == "FINISHED"
    state = json.loads((runs_dir / "monitor-watch.json").read_text())
    assert state["result"]["candidate_version"] == res.candidate_version
    assert watch(cfg, once=True) == []  # the alert still fires, the cooldown holds
