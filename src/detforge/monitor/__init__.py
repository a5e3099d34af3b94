"""Production monitoring: reference statistics, drift (PSI / KS), Prometheus and Grafana
assets, and the retrain -> evaluate -> promote cycle.

Importing this package imports numpy and pydantic only; the server, Prometheus client,
MLflow and training load where they are used.

Example:
    >>> from detforge.monitor import build_reference, drift_from_jsonl  # doctest: +SKIP
    >>> ref = build_reference("model.onnx", "datasets/ppe")  # doctest: +SKIP
    >>> drift_from_jsonl(ref, "dets.jsonl").drifted  # doctest: +SKIP
    ['brightness']
"""

from detforge.monitor.build import build_reference, model_identity
from detforge.monitor.config import MonitorConfig, load_monitor_config
from detforge.monitor.drift import ks_statistic, psi
from detforge.monitor.live import LiveMonitor
from detforge.monitor.reference import Reference, load_reference
from detforge.monitor.report import drift_from_jsonl, format_result, result_to_dict
from detforge.monitor.signals import SIGNALS, detection_stats, image_stats
from detforge.monitor.window import DriftResult, DriftWindow, SignalDrift, Thresholds

__all__ = ["SIGNALS", "DriftResult", "DriftWindow", "LiveMonitor", "MonitorConfig",
           "Reference", "SignalDrift", "Thresholds", "build_reference", "detection_stats",
           "drift_from_jsonl", "format_result", "image_stats", "ks_statistic",
           "load_monitor_config", "load_reference", "model_identity", "psi", "result_to_dict"]
