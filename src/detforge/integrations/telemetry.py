"""Telemetry of the libraries detforge runs, turned off before they are imported.

detforge promises runs that make no network attempt. Each library below phones home
unless told not to; :func:`disable_telemetry` sets its switch (when the user has not set it
already), and the modules that import these libraries call it first.

===================  ==========================================  ===========================
library              what it would send                          switch (where it is read)
===================  ==========================================  ===========================
MLflow >= 3          usage events; a DNS lookup and HTTPS fetch  ``MLFLOW_DISABLE_TELEMETRY``
                     of ``config.mlflow-telemetry.io`` when      (``mlflow/telemetry/utils.py``
                     ``mlflow`` is imported                      ``is_telemetry_disabled``,
                                                                 checked by
                                                                 ``set_telemetry_client`` in
                                                                 ``mlflow/__init__.py``)
Ultralytics          analytics events, Sentry, Platform sync,    settings and flags set by
                     font and weight downloads, pip installs     ``integrations.ultralytics``
Ray (``scale``)      cluster usage statistics                    ``RAY_USAGE_STATS_ENABLED=0``
                                                                 (``ray/_private/usage/
                                                                 usage_lib.py``)
Hugging Face Hub     library telemetry (pulled in by some        ``HF_HUB_DISABLE_TELEMETRY``
                     exporters)                                  (``huggingface_hub/
                                                                 constants.py``)
===================  ==========================================  ===========================
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["TELEMETRY_SWITCHES", "disable_telemetry"]

TELEMETRY_SWITCHES: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
"""Environment variables that turn each library's telemetry off, and their values."""


def disable_telemetry() -> None:
    """Turn off the telemetry of every library in :data:`TELEMETRY_SWITCHES`.

    A variable the user has set is left as it is. When MLflow was imported before this
    call, its telemetry client (created at import) is re-evaluated and dropped.

    Example:
        >>> disable_telemetry()
        >>> os.environ["MLFLOW_DISABLE_TELEMETRY"]
        'true'
    """
    for name, value in TELEMETRY_SWITCHES.items():
        os.environ.setdefault(name, value)
    client: Any = sys.modules.get("mlflow.telemetry.client")
    if client is not None and client.get_telemetry_client() is not None:
        client.set_telemetry_client()
