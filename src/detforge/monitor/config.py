"""``monitor.yaml``: the drift window and thresholds, the alert to watch, and the retrain
cycle (train, evaluate against production on a fixed held-out set, register, promote).

Loaded like the training config (:func:`detforge.core.config.load_config`): unknown keys are
errors naming the valid ones, and ``key.sub=value`` overrides apply on top. Relative paths
are read from the file's folder. Example::

    reference: ref.json
    window: {images: 500, min_images: 50}
    thresholds: {psi: 0.2, signals: {score: 0.15}}
    trigger:
      prometheus: http://127.0.0.1:9090
      alert: DetforgeDrift
      poll_s: 15
      every_hours: 168          # also retrain weekly, drift or not
      cooldown_s: 3600          # at most one cycle an hour
    retrain:
      data: datasets/ppe-latest
      model: production         # fine-tune the production weights (or a model YAML)
      epochs: 30
      imgsz: 640
    evaluate:
      data: datasets/ppe-holdout
      split: test
      metric: mAP50-95
      min_delta: 0.005          # promote only when better by more than this
    registry: {name: ppe, out: runs}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from detforge.core.config import StrictModel, load_config
from detforge.core.errors import ConfigError
from detforge.monitor.signals import SIGNALS
from detforge.monitor.window import DEFAULT_PSI_THRESHOLD, Thresholds

__all__ = ["EvaluateConfig", "MonitorConfig", "RegistryConfig", "RetrainConfig",
           "ThresholdsConfig", "TriggerConfig", "WindowConfig", "load_monitor_config"]

METRICS = ("mAP50-95", "mAP50", "mAP75")


class WindowConfig(StrictModel):
    """The live window: images kept and images needed before drift is judged."""

    images: PositiveInt = 500
    min_images: PositiveInt = 50


class ThresholdsConfig(StrictModel):
    """PSI threshold for every signal, per-signal PSI overrides and optional KS thresholds."""

    psi: float = Field(DEFAULT_PSI_THRESHOLD, gt=0)
    signals: dict[str, float] = Field(default_factory=dict)
    ks: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ThresholdsConfig:
        unknown = sorted((set(self.signals) | set(self.ks)) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signals {unknown}; signals: {list(SIGNALS)}")
        if any(v <= 0 for v in [*self.signals.values(), *self.ks.values()]):
            raise ValueError("thresholds must be positive")
        return self

    def to_thresholds(self) -> Thresholds:
        """The runtime form."""
        return Thresholds(self.psi, dict(self.signals), dict(self.ks))


class TriggerConfig(StrictModel):
    """What starts a retrain cycle: a firing Prometheus alert, a schedule, or both."""

    prometheus: str | None = "http://127.0.0.1:9090"
    alert: str = "DetforgeDrift"
    poll_s: float = Field(15.0, gt=0)
    every_hours: float | None = Field(None, gt=0)
    cooldown_s: float = Field(3600.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _something(self) -> TriggerConfig:
        if self.prometheus is None and self.every_hours is None:
            raise ValueError("trigger needs prometheus (an alert to watch) or every_hours "
                             "(a schedule), or both")
        if self.prometheus is not None and not self.prometheus.startswith(("http://",
                                                                           "https://")):
            raise ValueError(f"trigger.prometheus {self.prometheus!r} must be an http(s):// "
                             f"URL, e.g. http://127.0.0.1:9090")
        return self


class RetrainConfig(StrictModel):
    """The training run of a cycle (the training config's keys, plus ``config``/``set``).

    ``model: production`` fine-tunes the weights now in production; anything else is what
    ``detforge train --model`` takes.
    """

    data: Path
    model: str = "production"
    config: Path | None = None
    epochs: PositiveInt = 30
    imgsz: PositiveInt = 640
    batch: PositiveInt = 16
    device: str = "cpu"
    set: list[str] = Field(default_factory=list)
    """Extra ``key.sub=value`` overrides of the training config."""


class EvaluateConfig(StrictModel):
    """The fixed held-out set both models are scored on, and the promotion rule."""

    data: Path
    split: str | None = "test"
    metric: Literal["mAP50-95", "mAP50", "mAP75"] = "mAP50-95"
    min_delta: float = Field(0.0, ge=0.0)
    """Promote only when the candidate beats production by more than this."""
    imgsz: PositiveInt | None = None
    conf: float = Field(0.001, ge=0.0, le=1.0)


class RegistryConfig(StrictModel):
    """Where candidates are registered and production lives (MLflow)."""

    name: str
    tracking_uri: str | None = None
    out: Path = Path("runs")
    experiment: str = "detforge-monitor"


class MonitorConfig(StrictModel):
    """Everything ``detforge monitor watch`` and ``serve --monitor-config`` read."""

    reference: Path | None = None
    window: WindowConfig = Field(default_factory=WindowConfig)
    thresholds: ThresholdsConfig = Field(default_factory=ThresholdsConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    retrain: RetrainConfig | None = None
    evaluate: EvaluateConfig | None = None
    registry: RegistryConfig | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _cycle(self) -> MonitorConfig:
        parts = {"retrain": self.retrain, "evaluate": self.evaluate, "registry": self.registry}
        given = [k for k, v in parts.items() if v is not None]
        if given and len(given) != len(parts):
            missing = [k for k in parts if k not in given]
            raise ValueError(f"a retrain cycle needs retrain, evaluate and registry; "
                             f"{missing} missing")
        return self

    @property
    def can_retrain(self) -> bool:
        """retrain, evaluate and registry are all set."""
        return self.retrain is not None


def _resolve(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths of the file, made relative to its folder."""
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute() \
                and "://" not in value:
            return str(base / value)
        return value

    out = dict(data)
    if "reference" in out:
        out["reference"] = fix(out["reference"])
    for section, keys in (("retrain", ("data", "config")), ("evaluate", ("data",)),
                          ("registry", ("out",))):
        if isinstance(out.get(section), dict):
            sec = dict(out[section])
            for key in keys:
                if key in sec:
                    sec[key] = fix(sec[key])
            if section == "retrain" and isinstance(sec.get("model"), str) and (
                    sec["model"].endswith(".pt") or "/" in sec["model"]):
                sec["model"] = fix(sec["model"])
            out[section] = sec
    return out


def load_monitor_config(path: str | Path | None = None, overrides: list[str] | None = None
                        ) -> MonitorConfig:
    """Read ``monitor.yaml`` (paths relative to its folder) with ``key.sub=value`` overrides.

    Raises:
        ConfigError: One line naming the file, the key and the fix (unknown keys list the
            valid ones).

    Example:
        >>> load_monitor_config(None, ["window.images=100"]).window.images
        100
    """
    import yaml

    base: dict[str, Any] = {}
    where = ""
    if path is not None:
        path = Path(path)
        where = f"{path}: "
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{where}cannot read the monitor config: {first}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}a monitor config must be a mapping of keys, got "
                              f"{type(loaded).__name__}")
        base = _resolve(loaded, path.parent)
    try:
        return load_config(MonitorConfig, None, overrides or [], base=base)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from exc
