"""Prometheus, Grafana and docker-compose files for a served model.

``detforge monitor assets --out DIR`` (and every deployment bundle, in ``monitor/``)
writes::

    prometheus.yml                       scrape config: the server's /metrics, the rules
    alert_rules.yml                      alerts: down, model not ready, latency p99, error
                                         rate, queue saturation, drift, GPU memory
    alert_rules_test.yml                 `promtool test rules` unit tests of those alerts
    grafana/dashboards/detforge.json     the dashboard (:mod:`detforge.monitor.dashboard`)
    grafana/provisioning/datasources/prometheus.yml
    grafana/provisioning/dashboards/detforge.yml
    docker-compose.yml                   serve + Prometheus + Grafana + MLflow + the watcher
    monitor.yaml                         the watcher's config, to fill in

The alert thresholds and the ``for`` durations are options (:class:`AssetOptions`); the
drift alert compares each signal's PSI with the threshold the server exports for it
(``detforge_drift_threshold``), so the server's ``--drift-psi`` and ``monitor.yaml``
thresholds are the single place to tune it. Check the files with ``promtool check config
prometheus.yml`` and ``promtool test rules alert_rules_test.yml`` (what the tests do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detforge.core.atomic import atomic_write_text

__all__ = ["ALERTS", "AssetOptions", "alert_rules", "compose", "prometheus_config",
           "rule_tests", "write_assets"]

ALERTS = ("DetforgeDown", "DetforgeModelNotReady", "DetforgeLatencyP99High",
          "DetforgeErrorRateHigh", "DetforgeQueueSaturated", "DetforgeDrift",
          "DetforgeGpuMemoryHigh")
"""Alert names, in the order of ``alert_rules.yml``."""


@dataclass(frozen=True)
class AssetOptions:
    """What the files are written for.

    Attributes:
        job: Prometheus job name of the servers.
        targets: ``host:port`` of each server.
        scrape_interval: How often Prometheus scrapes.
        evaluation_interval: How often it evaluates the rules.
        latency_p99_s: p99 latency of ``/v1/detect`` past which to alert.
        error_ratio: Share of ``/v1/detect`` answers that are 5xx past which to alert.
        queue_ratio: Queue depth / capacity past which to alert.
        drift_for: How long a signal must stay past its threshold before the alert fires.
        pending_for: ``for`` of the other alerts.
        reference: The reference file, as the server container sees it.
    """

    job: str = "detforge"
    targets: tuple[str, ...] = ("serve:8000",)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    latency_p99_s: float = 0.5
    error_ratio: float = 0.05
    queue_ratio: float = 0.8
    drift_for: str = "10m"
    pending_for: str = "5m"
    reference: str = "/models/monitor/reference.json"


def prometheus_config(opts: AssetOptions) -> dict[str, Any]:
    """``prometheus.yml``."""
    return {"global": {"scrape_interval": opts.scrape_interval,
                       "evaluation_interval": opts.evaluation_interval},
            "rule_files": ["alert_rules.yml"],
            "scrape_configs": [{"job_name": opts.job, "metrics_path": "/metrics",
                                "static_configs": [{"targets": list(opts.targets)}]}]}


def _sel(opts: AssetOptions, extra: str = "") -> str:
    return "{" + f'job="{opts.job}"' + (f",{extra}" if extra else "") + "}"


def alert_rules(opts: AssetOptions) -> dict[str, Any]:
    """``alert_rules.yml``: one group, the alerts of :data:`ALERTS`."""
    j = _sel(opts)
    detect = _sel(opts, 'endpoint="/v1/detect"')
    ok = _sel(opts, 'status="200"')
    errors = _sel(opts, 'endpoint="/v1/detect",status=~"5.."')
    rules = [
        _alert("DetforgeDown", f"up{j} == 0", "1m", "critical",
               "detforge server {{ $labels.instance }} is down",
               "Prometheus cannot scrape {{ $labels.instance }}."),
        _alert("DetforgeModelNotReady", f"detforge_model_ready{j} == 0", opts.pending_for,
               "critical", "model not ready on {{ $labels.instance }}",
               "The model is still loading or failed to load; GET /ready says why."),
        _alert("DetforgeLatencyP99High",
               f"histogram_quantile(0.99, sum by (job, instance, le) (rate("
               f"detforge_request_latency_seconds_bucket{ok}[5m]))) > {opts.latency_p99_s:g}",
               opts.pending_for, "warning",
               f"p99 latency over {opts.latency_p99_s:g} s on " + "{{ $labels.instance }}",
               'p99 of /v1/detect is {{ printf "%.3f" $value }} s.'),
        _alert("DetforgeErrorRateHigh",
               f"sum by (job, instance) (rate(detforge_requests_total{errors}[5m])) / sum by "
               f"(job, instance) (rate(detforge_requests_total{detect}[5m])) > "
               f"{opts.error_ratio:g}", opts.pending_for, "warning",
               "5xx answers on {{ $labels.instance }}",
               "{{ $value | humanizePercentage }} of /v1/detect answers are 5xx."),
        _alert("DetforgeQueueSaturated",
               f"detforge_queue_depth{j} / detforge_queue_capacity{j} > {opts.queue_ratio:g}",
               opts.pending_for, "warning", "queue nearly full on {{ $labels.instance }}",
               "The queue is {{ $value | humanizePercentage }} full; add replicas or "
               "raise --max-batch."),
        _alert("DetforgeDrift",
               f"detforge_drift_psi{j} > on (job, instance, signal) "
               f"detforge_drift_threshold{j}", opts.drift_for, "warning",
               "input drift in {{ $labels.signal }} on {{ $labels.instance }}",
               'PSI of {{ $labels.signal }} is {{ printf "%.3f" $value }}, past its '
               "threshold: the live data no longer looks like the reference."),
        _alert("DetforgeGpuMemoryHigh",
               f"detforge_gpu_memory_used_bytes{j} / detforge_gpu_memory_total_bytes{j} > 0.95",
               opts.pending_for, "warning", "GPU memory nearly full on {{ $labels.instance }}",
               "GPU {{ $labels.gpu }} memory is {{ $value | humanizePercentage }} used."),
    ]
    return {"groups": [{"name": "detforge", "rules": rules}]}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str,
           description: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": for_, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}


def rule_tests(opts: AssetOptions) -> dict[str, Any]:
    """``alert_rules_test.yml``: each alert fires on a series made for it, the drift alert
    stays quiet under the threshold and before ``drift_for`` has passed."""
    inst = "a:8000"
    lab = f'job="{opts.job}",instance="{inst}"'
    base = {"instance": inst, "job": opts.job}
    drift_min = _minutes(opts.drift_for)
    steps = drift_min + 10
    series = [
        {"series": f'detforge_drift_psi{{{lab},signal="brightness"}}',
         "values": f"0.5x{steps}"},
        {"series": f'detforge_drift_threshold{{{lab},signal="brightness"}}',
         "values": f"0.2x{steps}"},
        {"series": f'detforge_drift_psi{{{lab},signal="score"}}', "values": f"0.05x{steps}"},
        {"series": f'detforge_drift_threshold{{{lab},signal="score"}}',
         "values": f"0.2x{steps}"},
        {"series": f"detforge_model_ready{{{lab}}}", "values": f"0x{steps}"},
        {"series": f"up{{{lab}}}", "values": f"1x{steps}"},
        {"series": f"detforge_queue_depth{{{lab}}}", "values": f"60x{steps}"},
        {"series": f"detforge_queue_capacity{{{lab}}}", "values": f"64x{steps}"},
    ]
    drift = {"alertname": "DetforgeDrift", "eval_time": f"{drift_min + 2}m",
             "exp_alerts": [{"exp_labels": {**base, "signal": "brightness",
                                            "severity": "warning"},
                             "exp_annotations": {
                                 "summary": f"input drift in brightness on {inst}",
                                 "description": "PSI of brightness is 0.500, past its threshold:"
                                                " the live data no longer looks like the "
                                                "reference."}}]}
    early = {"alertname": "DetforgeDrift", "eval_time": f"{max(0, drift_min - 2)}m",
             "exp_alerts": []}
    ready = {"alertname": "DetforgeModelNotReady", "eval_time": f"{steps}m",
             "exp_alerts": [{"exp_labels": {**base, "severity": "critical"},
                             "exp_annotations": {
                                 "summary": f"model not ready on {inst}",
                                 "description": "The model is still loading or failed to "
                                                "load; GET /ready says why."}}]}
    queue = {"alertname": "DetforgeQueueSaturated", "eval_time": f"{steps}m",
             "exp_alerts": [{"exp_labels": {**base, "severity": "warning"},
                             "exp_annotations": {
                                 "summary": f"queue nearly full on {inst}",
                                 "description": "The queue is 93.75% full; add replicas or "
                                                "raise --max-batch."}}]}
    down = {"alertname": "DetforgeDown", "eval_time": f"{steps}m", "exp_alerts": []}
    return {"rule_files": ["alert_rules.yml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [early, drift, ready, queue, down]}]}


def _minutes(duration: str) -> int:
    """``"10m"`` -> 10, ``"30s"`` -> 1 (rounded up), ``"1h"`` -> 60."""
    units = {"s": 1 / 60, "m": 1, "h": 60}
    value, unit = float(duration[:-1]), duration[-1]
    if unit not in units:
        raise ValueError(f"duration {duration!r}: use s, m or h")
    return max(1, int(-(-value * units[unit] // 1)))


def compose(opts: AssetOptions, *, model_dir: str = "..") -> dict[str, Any]:
    """``docker-compose.yml``: serve + Prometheus + Grafana + MLflow + the retrain watcher."""
    port = opts.targets[0].rsplit(":", 1)[-1] if opts.targets else "8000"
    return {
        "name": "detforge-monitoring",
        "services": {
            "serve": {"image": "detforge-serve",
                      "command": ["serve", "/models", "--host", "0.0.0.0", "--port", port,
                                  "--reference", opts.reference],
                      "volumes": [f"${{DETFORGE_MODEL_DIR:-{model_dir}}}:/models:ro"],
                      "ports": [f"{port}:{port}"], "restart": "unless-stopped"},
            "prometheus": {"image": "prom/prometheus:v2.53.0",
                           "command": ["--config.file=/etc/prometheus/prometheus.yml",
                                       "--storage.tsdb.retention.time=30d"],
                           "volumes": ["./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                                       "./alert_rules.yml:/etc/prometheus/alert_rules.yml:ro",
                                       "prometheus-data:/prometheus"],
                           "ports": ["9090:9090"], "depends_on": ["serve"],
                           "restart": "unless-stopped"},
            "grafana": {"image": "grafana/grafana:11.1.0",
                        "environment": {"GF_AUTH_ANONYMOUS_ENABLED": "true",
                                        "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"},
                        "volumes": ["./grafana/provisioning:/etc/grafana/provisioning:ro",
                                    "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
                                    "grafana-data:/var/lib/grafana"],
                        "ports": ["3000:3000"], "depends_on": ["prometheus"],
                        "restart": "unless-stopped"},
            "mlflow": {"image": "ghcr.io/mlflow/mlflow:v2.14.1",
                       "command": ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
                                   "--backend-store-uri", "sqlite:////mlflow/mlflow.db",
                                   "--artifacts-destination", "/mlflow/mlartifacts"],
                       "volumes": ["mlflow-data:/mlflow"], "ports": ["5000:5000"],
                       "restart": "unless-stopped"},
            "watch": {"image": "detforge-train",
                      "command": ["monitor", "watch", "--config", "/config/monitor.yaml"],
                      "environment": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
                      "volumes": ["./monitor.yaml:/config/monitor.yaml:ro",
                                  "${DETFORGE_DATA_DIR:-./data}:/data"],
                      "depends_on": ["prometheus", "mlflow"], "restart": "unless-stopped"}},
        "volumes": {"prometheus-data": {}, "grafana-data": {}, "mlflow-data": {}}}


def _grafana_provisioning() -> dict[str, dict[str, Any]]:
    datasource = {"apiVersion": 1, "datasources": [{
        "name": "Prometheus", "type": "prometheus", "uid": "prometheus", "access": "proxy",
        "url": "http://prometheus:9090", "isDefault": True}]}
    dashboards = {"apiVersion": 1, "providers": [{
        "name": "detforge", "type": "file", "disableDeletion": False,
        "options": {"path": "/var/lib/grafana/dashboards"}}]}
    return {"grafana/provisioning/datasources/prometheus.yml": datasource,
            "grafana/provisioning/dashboards/detforge.yml": dashboards}


def _monitor_yaml(opts: AssetOptions) -> str:
    return ("# detforge monitor watch --config monitor.yaml (see detforge.monitor.config)\n"
            + yaml.safe_dump({
                "trigger": {"prometheus": "http://prometheus:9090", "alert": "DetforgeDrift",
                            "poll_s": 30, "cooldown_s": 3600},
                "retrain": {"data": "/data/train", "model": "production", "epochs": 30,
                            "imgsz": 640},
                "evaluate": {"data": "/data/holdout", "split": "test", "metric": "mAP50-95",
                             "min_delta": 0.005},
                "registry": {"name": "detector", "out": "/data/runs"}}, sort_keys=False))


def write_assets(out: str | Path, opts: AssetOptions | None = None, *,
                 model_dir: str = "..") -> list[Path]:
    """Write every file of the module docstring under ``out``.

    Args:
        out: Folder (created).
        opts: What to write them for.
        model_dir: The model folder, relative to ``out``, that compose mounts into the
            server (``..`` in a bundle: the target folder).

    Returns:
        The files written.

    Example:
        >>> opts = AssetOptions(targets=("10.0.0.5:8000",))
        >>> files = write_assets("monitoring", opts)  # doctest: +SKIP
    """
    from detforge.monitor.dashboard import dashboard

    opts = opts or AssetOptions()
    out = Path(out)
    docs: dict[str, Any] = {"prometheus.yml": prometheus_config(opts),
                            "alert_rules.yml": alert_rules(opts),
                            "alert_rules_test.yml": rule_tests(opts),
                            "docker-compose.yml": compose(opts, model_dir=model_dir),
                            **_grafana_provisioning()}
    written = []
    for rel, doc in docs.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, width=1000))
        written.append(path)
    board = out / "grafana" / "dashboards" / "detforge.json"
    board.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(board, json.dumps(dashboard(opts.job), indent=2) + "\n")
    atomic_write_text(out / "monitor.yaml", _monitor_yaml(opts))
    return [*written, board, out / "monitor.yaml"]
