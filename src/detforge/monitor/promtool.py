"""Run promtool (Prometheus' own checker) on the monitoring files.

``promtool`` ships with Prometheus (Debian: ``apt-get install prometheus``; ``make
system-deps`` installs it). :func:`check_assets` runs ``check config``, ``check rules`` and
``test rules`` on a folder written by :func:`~detforge.monitor.assets.write_assets`, and
parses every dashboard query with ``check rules`` (each becomes a recording rule, so a typo
in any expression fails). Grafana's variables are replaced by values Prometheus parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from detforge.core.errors import ConfigError, MissingExtraError
from detforge.monitor.dashboard import panel_queries

__all__ = ["GRAFANA_VARIABLES", "check_assets", "check_expressions", "promtool"]

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                     "${datasource}": "prometheus", "$job": "detforge"}
"""Grafana variables and the values used in their place when promtool parses a query."""


def promtool() -> str:
    """The promtool executable.

    Raises:
        MissingExtraError: It is not installed; the message says how to install it.
    """
    found = shutil.which("promtool")
    if found is None:
        raise MissingExtraError("promtool is not installed; `apt-get install prometheus` "
                                "(Debian/Ubuntu) or `make system-deps` provides it")
    return found


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        text = (proc.stdout + proc.stderr).strip()
        raise ConfigError(f"promtool {' '.join(args)} failed in {cwd}: "
                          f"{' / '.join(text.splitlines()[-6:])}")


def check_expressions(queries: list[tuple[str, str]]) -> None:
    """Parse each ``(name, PromQL)`` with ``promtool check rules``.

    Raises:
        ConfigError: A query does not parse (promtool's message names it).
    """
    rules = []
    for i, (_, expr) in enumerate(queries):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"detforge:dashboard:q{i}", "expr": expr})
    with tempfile.TemporaryDirectory(prefix="detforge-promql-") as tmp:
        path = Path(tmp) / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        _run("check", "rules", path.name, cwd=Path(tmp))


def check_assets(folder: str | Path) -> list[str]:
    """Check a monitoring folder with promtool; returns the checks that passed.

    Raises:
        MissingExtraError: promtool is not installed.
        ConfigError: A check failed (promtool's output in the message).
    """
    folder = Path(folder)
    _run("check", "config", "prometheus.yml", cwd=folder)
    _run("check", "rules", "alert_rules.yml", cwd=folder)
    _run("test", "rules", "alert_rules_test.yml", cwd=folder)
    board = json.loads((folder / "grafana" / "dashboards" / "detforge.json").read_text())
    check_expressions(panel_queries(board))
    return ["check config prometheus.yml", "check rules alert_rules.yml",
            "test rules alert_rules_test.yml", "dashboard queries parse"]
