"""``detforge monitor watch``: start a retrain cycle when an alert fires or on a schedule.

Every ``trigger.poll_s`` seconds the watcher asks Prometheus for its alerts
(``GET /api/v1/alerts``, the HTTP API every Prometheus serves) and starts a cycle
(:func:`~detforge.monitor.retrain.run_cycle`) when ``trigger.alert`` is firing, or when
``trigger.every_hours`` have passed since the last cycle. ``trigger.cooldown_s`` keeps
cycles apart: an alert that stays firing while the new model is trained and rolled out
does not start a second one. The time of the last cycle is kept in
``<registry.out>/monitor-watch.json``, so a restarted watcher keeps the cooldown and the
schedule. A Prometheus that cannot be reached is logged and asked again at the next poll.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import ConfigError
from detforge.monitor.config import MonitorConfig
from detforge.monitor.retrain import CycleResult, run_cycle

__all__ = ["Trigger", "firing_alerts", "watch"]

log = logging.getLogger("detforge.monitor")


@dataclass(frozen=True)
class Trigger:
    """Why a cycle starts."""

    reason: str
    alerts: tuple[dict[str, Any], ...] = ()


def firing_alerts(prometheus: str, name: str, *, timeout_s: float = 10.0
                  ) -> list[dict[str, Any]]:
    """The alerts named ``name`` that Prometheus reports as firing.

    Raises:
        ConfigError: Prometheus cannot be reached or answers something else than its API.
    """
    url = prometheus.rstrip("/") + "/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only
            body = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read alerts from {url}: {exc}; check trigger.prometheus "
                          f"in monitor.yaml") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ConfigError(f"{url} did not answer as the Prometheus HTTP API: {str(body)[:200]}")
    alerts = (body.get("data") or {}).get("alerts") or []
    return [a for a in alerts if a.get("state") == "firing"
            and (a.get("labels") or {}).get("alertname") == name]


def _state_path(cfg: MonitorConfig) -> Path:
    assert cfg.registry is not None
    return Path(cfg.registry.out) / "monitor-watch.json"


def _last_cycle(cfg: MonitorConfig) -> float | None:
    try:
        return float(json.loads(_state_path(cfg).read_text())["last_cycle"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_trigger(cfg: MonitorConfig, *, now: float, started: float,
                  last: float | None) -> Trigger | None:
    """The trigger due now, if any (the cooldown applies to both kinds)."""
    tr = cfg.trigger
    if last is not None and now - last < tr.cooldown_s:
        return None
    if tr.prometheus is not None:
        alerts = firing_alerts(tr.prometheus, tr.alert, timeout_s=tr.timeout_s)
        if alerts:
            signals = sorted({str((a.get("labels") or {}).get("signal", "?")) for a in alerts})
            return Trigger(f"alert {tr.alert} ({', '.join(signals)})", tuple(alerts))
    if tr.every_hours is not None and now - (last if last is not None else started) >= \
            tr.every_hours * 3600:
        return Trigger(f"schedule (every {tr.every_hours:g} h)")
    return None


def watch(cfg: MonitorConfig, *, max_cycles: int | None = None, once: bool = False,
          echo: Callable[[str], None] = lambda _line: None,
          sleep: Callable[[float], None] = time.sleep) -> list[CycleResult]:
    """Poll for triggers and run cycles until interrupted (or ``max_cycles``, or ``once``).

    Args:
        cfg: The monitor config (with a retrain cycle).
        max_cycles: Stop after this many cycles.
        once: Check once, run at most one cycle, and return.
        echo: Where progress lines go.
        sleep: Waits between polls.

    Returns:
        The cycles run.

    Raises:
        ConfigError: No retrain cycle configured; with ``once``, Prometheus unreachable.
    """
    if not cfg.can_retrain:
        raise ConfigError("monitor.yaml has no retrain cycle; set retrain, evaluate and "
                          "registry")
    started = time.time()
    results: list[CycleResult] = []
    while True:
        now = time.time()
        try:
            trigger = check_trigger(cfg, now=now, started=started, last=_last_cycle(cfg))
        except ConfigError as exc:
            if once:
                raise
            log.warning("%s", exc)
            echo(f"warning: {exc}")
            trigger = None
        if trigger is not None:
            echo(f"trigger: {trigger.reason}; starting a retrain cycle"
                 + (" (dry run)" if cfg.dry_run else ""))
            result = run_cycle(cfg, trigger=trigger.reason, echo=echo)
            path = _state_path(cfg)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"last_cycle": time.time(),
                                                "result": result.to_dict()}, indent=2))
            results.append(result)
            echo(f"cycle done: {result.reason} (MLflow run {result.mlflow_run_id})")
        if once or (max_cycles is not None and len(results) >= max_cycles):
            return results
        sleep(cfg.trigger.poll_s)
