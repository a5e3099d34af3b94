"""The Grafana dashboard of a detforge server (classic dashboard JSON, ``schemaVersion`` 39).

Rows: service (ready, throughput, requests by status, latency percentiles), batching (batch
size, inference time, queue), drift (PSI and KS per signal against the threshold, per-class
terms, class mix, score distribution) and GPU (memory used / peak / total, utilisation).
A ``datasource`` variable picks the Prometheus data source and ``job`` the servers. The
file is checked against Grafana's dashboard schema rules by
:func:`detforge.monitor.grafana_rules.check_dashboard`, and every query by promtool.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dashboard", "panel_queries"]

_DS = {"type": "prometheus", "uid": "${datasource}"}
_SEL = '{job=~"$job"}'
_RATE = "$__rate_interval"


def _target(expr: str, legend: str, ref: str, *, fmt: str = "time_series") -> dict[str, Any]:
    return {"datasource": _DS, "expr": expr, "legendFormat": legend, "refId": ref,
            "format": fmt}


def _panel(pid: int, kind: str, title: str, pos: tuple[int, int, int, int],
           targets: list[dict[str, Any]], *, unit: str = "short", description: str = "",
           thresholds: list[tuple[float | None, str]] | None = None,
           custom: dict[str, Any] | None = None,
           options: dict[str, Any] | None = None) -> dict[str, Any]:
    x, y, w, h = pos
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    return {"id": pid, "type": kind, "title": title, "description": description,
            "datasource": _DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": targets, "transformations": [], "options": options or {},
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom or {},
                                         "color": {"mode": "palette-classic"},
                                         "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []}}


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {"id": pid, "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def dashboard(job: str = "detforge") -> dict[str, Any]:
    """The dashboard JSON (``job`` is the ``job`` variable's default)."""
    lat = f"detforge_request_latency_seconds_bucket{{job=~\"$job\",status=\"200\"}}[{_RATE}]"
    panels = [
        _row(1, "Service", 0),
        _panel(2, "stat", "Model ready", (0, 1, 4, 6),
               [_target(f"min(detforge_model_ready{_SEL})", "ready", "A")],
               thresholds=[(None, "red"), (1, "green")],
               description="1 once every server's model is loaded and warm."),
        _panel(3, "timeseries", "Throughput", (4, 1, 10, 6),
               [_target(f"sum by (instance) (rate(detforge_images_total{_SEL}[{_RATE}]))",
                        "{{instance}}", "A")], unit="reqps",
               description="Images detected per second."),
        _panel(4, "timeseries", "Requests by status", (14, 1, 10, 6),
               [_target("sum by (status) (rate(detforge_requests_total{job=~\"$job\","
                        f"endpoint=\"/v1/detect\"}}[{_RATE}]))", "{{status}}", "A")],
               unit="reqps"),
        _panel(5, "timeseries", "Latency percentiles (/v1/detect)", (0, 7, 12, 8),
               [_target(f"histogram_quantile({q}, sum by (le) (rate({lat})))", f"p{p}", r)
                for q, p, r in ((0.5, 50, "A"), (0.95, 95, "B"), (0.99, 99, "C"))], unit="s"),
        _panel(6, "timeseries", "Inference time per batch", (12, 7, 12, 8),
               [_target("histogram_quantile(0.95, sum by (le) (rate("
                        f"detforge_inference_seconds_bucket{_SEL}[{_RATE}])))", "p95", "A")],
               unit="s"),
        _row(7, "Batching and queue", 15),
        _panel(8, "timeseries", "Batch size", (0, 16, 12, 7),
               [_target(f"sum(rate(detforge_batch_size_sum{_SEL}[{_RATE}])) / "
                        f"sum(rate(detforge_batch_size_count{_SEL}[{_RATE}]))", "mean", "A")],
               description="Mean images per inference batch."),
        _panel(9, "timeseries", "Queue", (12, 16, 12, 7),
               [_target(f"sum by (instance) (detforge_queue_depth{_SEL})", "{{instance}} depth",
                        "A"),
                _target(f"sum by (instance) (detforge_queue_capacity{_SEL})",
                        "{{instance}} capacity", "B")]),
        _row(10, "Drift", 23),
        _panel(11, "timeseries", "Drift per signal (PSI)", (0, 24, 12, 8),
               [_target(f"max by (signal) (detforge_drift_psi{_SEL})", "{{signal}}", "A"),
                _target(f"max(detforge_drift_threshold{_SEL})", "threshold", "B")],
               thresholds=[(None, "green"), (0.2, "red")],
               description="Population Stability Index of the live window against the "
                           "reference; over the threshold the DetforgeDrift alert pends."),
        _panel(12, "timeseries", "Drift per signal (KS)", (12, 24, 12, 8),
               [_target(f"max by (signal) (detforge_drift_ks{_SEL})", "{{signal}}", "A")]),
        _panel(13, "timeseries", "Class mix (detections/s)", (0, 32, 12, 8),
               [_target(f"sum by (class) (rate(detforge_detections_by_class_total{_SEL}"
                        f"[{_RATE}]))", "{{class}}", "A")], unit="reqps",
               custom={"stacking": {"mode": "normal", "group": "A"}}),
        _panel(14, "barchart", "Class share: live vs reference", (12, 32, 12, 8),
               [_target(f"avg by (class, source) (detforge_class_share{_SEL})",
                        "{{class}} {{source}}", "A", fmt="table")], unit="percentunit",
               options={"xField": "class"}),
        _panel(15, "timeseries", "Per-class drift (PSI term)", (0, 40, 12, 8),
               [_target(f"max by (class) (detforge_drift_class_psi{_SEL})", "{{class}}", "A")]),
        _panel(16, "heatmap", "Score distribution", (12, 40, 12, 8),
               [_target(f"sum by (le) (rate(detforge_detection_score_bucket{_SEL}[{_RATE}]))",
                        "{{le}}", "A", fmt="heatmap")],
               options={"calculate": False, "yAxis": {"unit": "short"}}),
        _row(17, "GPU", 48),
        _panel(18, "timeseries", "GPU memory", (0, 49, 12, 8),
               [_target(f"max by (instance, gpu) (detforge_gpu_memory_used_bytes{_SEL})",
                        "{{instance}} gpu{{gpu}} used", "A"),
                _target(f"max by (instance, gpu) (detforge_gpu_memory_peak_bytes{_SEL})",
                        "{{instance}} gpu{{gpu}} peak", "B"),
                _target(f"max by (instance, gpu) (detforge_gpu_memory_total_bytes{_SEL})",
                        "{{instance}} gpu{{gpu}} total", "C")], unit="bytes"),
        _panel(19, "timeseries", "GPU utilisation", (12, 49, 12, 8),
               [_target(f"max by (instance, gpu) (detforge_gpu_utilization_ratio{_SEL})",
                        "{{instance}} gpu{{gpu}}", "A")], unit="percentunit"),
    ]
    variables = [
        {"type": "datasource", "name": "datasource", "label": "Data source",
         "query": "prometheus", "hide": 0, "current": {}},
        {"type": "query", "name": "job", "label": "Job", "datasource": _DS,
         "query": {"query": "label_values(detforge_model_ready, job)", "refId": "job"},
         "definition": "label_values(detforge_model_ready, job)", "includeAll": True,
         "multi": True, "hide": 0, "refresh": 2,
         "current": {"text": job, "value": job}}]
    return {"uid": "detforge-serve", "title": "detforge: serving and drift",
            "description": "Throughput, latency, batching, queue, input drift, class mix and "
                           "GPU of detforge servers.",
            "tags": ["detforge"], "timezone": "browser", "editable": True,
            "graphTooltip": 1, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "schemaVersion": 39, "version": 1, "panels": panels,
            "templating": {"list": variables},
            "annotations": {"list": [{
                "name": "Alerts", "datasource": {"type": "datasource", "uid": "grafana"},
                "enable": True, "hide": False, "iconColor": "rgba(255, 96, 96, 1)",
                "type": "dashboard", "builtIn": 1}]},
            "links": []}


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` of every query in ``board``, rows included."""
    out = []
    stack = list(board.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for t in panel.get("targets", []):
            if "expr" in t:
                out.append((f"{panel.get('title')} / {t.get('refId')}", str(t["expr"])))
    return out
