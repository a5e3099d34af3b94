"""One retrain cycle: train a candidate, score it and production on a fixed held-out set,
register it, and promote it only when it is better (champion / challenger).

Steps, each recorded in one MLflow run of the ``registry.experiment`` experiment (params:
the trigger and the cycle's config; metrics: ``candidate/<metric>``, ``production/<metric>``,
``delta``; tags: the decision, both versions, the training run)::

    1. find production      the version the ``production`` alias points at, and its file
    2. train                detforge train (its own MLflow run); the run registers the
                            candidate as a new version of ``registry.name``
    3. evaluate             both models on ``evaluate.data`` / ``evaluate.split`` (COCO
                            metrics, the same evaluator for both)
    4. decide and promote   candidate > production + min_delta: the candidate becomes
                            production (the old one previous-production, so `detforge
                            registry rollback` undoes it); otherwise it is aliased staging
    5. reference            the candidate's reference statistics on the held-out set,
                            logged with the run (serve it with --reference)

``dry_run`` stops after step 1: it records the trigger and what would run, trains nothing
and changes no alias.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError
from detforge.deploy.registry import PRODUCTION, STAGING
from detforge.monitor.config import MonitorConfig

__all__ = ["CycleResult", "challenge", "run_cycle"]

_METRIC_STAT = {"mAP50-95": "AP", "mAP50": "AP50", "mAP75": "AP75"}


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did.

    Attributes:
        trigger: Why it ran (``alert DetforgeDrift``, ``schedule``, ``manual``).
        dry_run: Nothing was trained or changed.
        production_version: Production before the cycle (None: none yet).
        candidate_version: The registered candidate (None in a dry run).
        metric: The metric compared.
        candidate_score: The candidate's score on the held-out set.
        production_score: Production's score on the same set.
        promoted: The candidate is now production.
        reason: The decision in words.
        mlflow_run_id: The cycle's MLflow run.
        candidate_model: The candidate's weights.
        reference: The candidate's reference file.
    """

    trigger: str
    dry_run: bool
    production_version: int | None
    candidate_version: int | None
    metric: str
    candidate_score: float | None
    production_score: float | None
    promoted: bool
    reason: str
    mlflow_run_id: str
    candidate_model: str | None = None
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _score(model: str | Path, cfg: MonitorConfig) -> float:
    from detforge.data.formats import read_dataset
    from detforge.evaluate import evaluate_model

    ev = cfg.evaluate
    assert ev is not None
    dataset = read_dataset(ev.data)
    imgsz = (ev.imgsz, ev.imgsz) if ev.imgsz else None
    result = evaluate_model(model, dataset, split=ev.split, imgsz=imgsz, conf=ev.conf,
                            device="cpu" if cfg.retrain is None else _device(cfg))
    value = float(result.summary[_METRIC_STAT[ev.metric]])
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"evaluate.data {ev.data}: {ev.metric} is undefined on split "
                          f"{ev.split!r} (no ground-truth boxes); use a labelled held-out set")
    return value


def _device(cfg: MonitorConfig) -> str:
    assert cfg.retrain is not None
    return "cpu" if cfg.retrain.device == "cpu" else f"cuda:{cfg.retrain.device.split(',')[0]}"


def _version_file(registry: Any, name: str, ref: str, dest: Path) -> tuple[
        int | None, Path | None]:
    """Version ``ref`` (a number or an alias) of ``name`` and a local copy of its model file;
    ``(None, None)`` when the model or the alias does not exist yet."""
    try:
        model = registry.client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - no such model yet
        return None, None
    if not ref.isdigit() and ref not in model.aliases:
        return None, None
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        mv = (registry.client.get_model_version(name, ref) if ref.isdigit()
              else registry.client.get_model_version_by_alias(name, ref))
    except MlflowException as exc:
        raise ConfigError(f"{name} has no version {ref} in {registry.uri}; see `detforge "
                          f"registry list`") from exc

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source,
                                                     dst_path=str(dest),
                                                     tracking_uri=registry.uri))
    if local.is_dir():
        files = sorted(local.rglob("best.pt")) or sorted(local.rglob("*.onnx")) or sorted(
            local.rglob("*.pt"))
        if not files:
            raise ConfigError(f"{name} v{mv.version} ({mv.source}) holds no model file "
                              f"(.pt or .onnx)")
        local = files[0]
    return int(mv.version), local


def run_cycle(cfg: MonitorConfig, *, trigger: str = "manual",
              echo: Callable[[str], None] = lambda _line: None) -> CycleResult:
    """Run one retrain cycle (see the module docstring).

    Args:
        cfg: The monitor config (``retrain``, ``evaluate`` and ``registry`` set).
        trigger: Why the cycle runs (recorded).
        echo: Where progress lines go.

    Returns:
        What the cycle did.

    Raises:
        ConfigError: The config has no retrain cycle, ``model: production`` with nothing in
            production, or a held-out set without ground truth.
        RegistryError: The MLflow store refused a change.

    Example:
        >>> res = run_cycle(load_monitor_config("monitor.yaml"), trigger="manual")  # doctest: +SKIP
        >>> res.promoted  # doctest: +SKIP
        True
    """
    return _cycle(cfg, trigger, echo, candidate=None)


def challenge(cfg: MonitorConfig, candidate: int, *, trigger: str = "manual",
              echo: Callable[[str], None] = lambda _line: None) -> CycleResult:
    """Steps 1, 3 and 4 for a version already registered (trained elsewhere): score it and
    production on the held-out set and promote it only if it is better.

    Raises:
        ConfigError: As :func:`run_cycle`.
        RegistryError: No such version, or the store refused a change.
    """
    return _cycle(cfg, trigger, echo, candidate=candidate)


def _cycle(cfg: MonitorConfig, trigger: str, echo: Callable[[str], None],
           candidate: int | None) -> CycleResult:
    from detforge.deploy.registry import open_registry
    from detforge.train.tracking import Tracker, flatten_params, resolve_tracking_uri

    if cfg.retrain is None or cfg.evaluate is None or cfg.registry is None:
        raise ConfigError("monitor.yaml has no retrain cycle; set retrain, evaluate and "
                          "registry (see `detforge monitor assets` for an example)")
    reg, rt, ev = cfg.registry, cfg.retrain, cfg.evaluate
    uri = resolve_tracking_uri(reg.tracking_uri, reg.out)
    registry = open_registry(uri, out=reg.out)
    local = uri.startswith("sqlite:") or "://" not in uri
    tracker = Tracker(uri, reg.experiment,
                      artifact_root=Path(reg.out) / "mlartifacts" if local else None)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    run_id = tracker.start(f"retrain-{reg.name}-{stamp}", params={
        "trigger": trigger, "dry_run": str(cfg.dry_run),
        **flatten_params(cfg.model_dump(mode="json", include={"retrain", "evaluate",
                                                              "registry"}))},
        tags={"detforge.step": "retrain-cycle", "detforge.trigger": trigger})
    client = tracker.client
    try:
        with tempfile.TemporaryDirectory(prefix="detforge-cycle-") as tmp:
            prod_version, prod_file = _version_file(registry, reg.name, PRODUCTION,
                                                    Path(tmp) / "production")
            echo(f"production: {reg.name} v{prod_version}" if prod_version else
                 f"production: none for {reg.name}")
            client.set_tag(run_id, "production_version", str(prod_version))
            if candidate is None and rt.model == "production" and prod_file is None:
                raise ConfigError(f"retrain.model is 'production' but {reg.name!r} has no "
                                  f"production version; set retrain.model to a model YAML "
                                  f"(yolo11n.yaml) or promote a version first")
            base = str(prod_file) if rt.model == "production" else rt.model
            if cfg.dry_run:
                reason = (f"dry run: would train {base} on {rt.data} for {rt.epochs} epochs, "
                          f"score it and production on {ev.data} ({ev.split}) by {ev.metric}"
                          if candidate is None else f"dry run: would score v{candidate} and "
                          f"production on {ev.data} ({ev.split}) by {ev.metric}")
                client.set_tag(run_id, "decision", "dry-run")
                client.set_tag(run_id, "reason", reason)
                tracker.end("FINISHED")
                return CycleResult(trigger, True, prod_version, candidate, ev.metric, None,
                                   None, False, reason, run_id)
            run_dir: Path | None = None
            if candidate is None:
                result = _train(cfg, base, uri)
                cand_version = int(result.model_version) if result.model_version else None
                cand_file = Path(result.best)
                run_dir = Path(result.run_dir)
                client.set_tag(run_id, "training_run", str(result.mlflow_run_id))
            else:
                cand_version, found = _version_file(registry, reg.name, str(candidate),
                                                    Path(tmp) / "candidate")
                if found is None:
                    raise ConfigError(f"{reg.name} v{candidate}: no model file")
                cand_file = found
            client.set_tag(run_id, "candidate_version", str(cand_version))
            echo(f"candidate: {reg.name} v{cand_version} ({cand_file})")
            cand, prod, promoted, reason, metrics = _decide(cfg, cand_file, prod_file)
            if cand_version is not None:
                registry.promote(reg.name, cand_version, to=PRODUCTION if promoted else STAGING)
            echo(reason)
            tracker.log_epoch(0, metrics)
            reference = _reference(cfg, cand_file, run_dir, tracker) if run_dir else None
            client.set_tag(run_id, "decision", "promoted" if promoted else "rejected")
            client.set_tag(run_id, "reason", reason)
            tracker.log_artifacts([_summary(Path(tmp), trigger, reason, metrics)])
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    return CycleResult(trigger, False, prod_version, cand_version, ev.metric, cand, prod,
                       promoted, reason, run_id, str(cand_file),
                       None if reference is None else str(reference))


def _decide(cfg: MonitorConfig, cand_file: Path, prod_file: Path | None) -> tuple[
        float, float | None, bool, str, dict[str, float]]:
    """Score both on the held-out set; champion / challenger decision and its reason."""
    ev = cfg.evaluate
    assert ev is not None
    cand = _score(cand_file, cfg)
    prod = _score(prod_file, cfg) if prod_file is not None else None
    metrics = {f"candidate/{ev.metric}": cand}
    if prod is not None:
        metrics.update({f"production/{ev.metric}": prod, "delta": cand - prod})
    promoted = prod is None or cand > prod + ev.min_delta
    if prod is None:
        reason = f"no production version: the candidate ({ev.metric} {cand:.4f}) is promoted"
    elif promoted:
        reason = (f"candidate {ev.metric} {cand:.4f} beats production {prod:.4f} by more "
                  f"than {ev.min_delta:g}: promoted")
    else:
        reason = (f"candidate {ev.metric} {cand:.4f} does not beat production {prod:.4f} "
                  f"by more than {ev.min_delta:g}: kept as {STAGING}")
    return cand, prod, promoted, reason, metrics


def _train(cfg: MonitorConfig, base: str, uri: str) -> Any:
    from detforge.train import load_train_config, train

    rt, reg = cfg.retrain, cfg.registry
    assert rt is not None and reg is not None
    flags = {"data": rt.data, "model": base, "epochs": rt.epochs, "imgsz": rt.imgsz,
             "batch": rt.batch, "device": rt.device, "out": reg.out,
             "name": f"{reg.name}-retrain"}
    overrides = [*rt.set, f"tracking.registered_model={reg.name}", f"tracking.uri={uri}"]
    return train(load_train_config(rt.config, flags=flags, overrides=overrides))


def _reference(cfg: MonitorConfig, model: Path, run_dir: Path, tracker: Any) -> Path | None:
    """The candidate's reference on the held-out set, beside its weights and in MLflow."""
    from detforge.monitor.build import build_reference

    ev = cfg.evaluate
    assert ev is not None
    try:
        ref = build_reference(model, ev.data, split=ev.split, device="cpu", min_images=1)
    except ConfigError:  # no detection on the held-out set: nothing to monitor against yet
        return None
    path = ref.write(run_dir / "reference.json")
    tracker.log_artifacts([path], "monitor")
    return path


def _summary(folder: Path, trigger: str, reason: str, metrics: dict[str, float]) -> Path:
    path = folder / "cycle.json"
    path.write_text(json.dumps({"trigger": trigger, "reason": reason, "metrics": metrics},
                               indent=2))
    return path
