"""Model registry on MLflow: register models with a model card, promote, roll back.

A registered model is an MLflow registered model; each ``register`` call logs the model
file (and a deployment bundle, if given) as artifacts of a new MLflow run and creates a
model version from them. The version carries a model card: a Markdown description and
tags (``detforge.card`` holds the whole card as JSON; ``dataset_version``, ``metric.*``,
``targets`` and ``detforge.sha256`` are there for searching).

Promotion uses registered-model aliases. Moving ``production`` to a new version gives the
old production version the alias ``previous-production``; ``rollback`` moves production
back to it. The promotion history is kept in the model tag ``detforge.production_history``
so a second rollback goes one step further back.

A promotion reads the aliases and history, then writes several of them: two at once would
lose an update. ``promote`` and ``rollback`` therefore hold a file lock on the store (beside
the SQLite database; for a remote store, one per machine in the user's cache folder) from
their first read to their last write. A store that is not SQLite, is corrupt, or belongs to
another application is refused in one line before MLflow touches it.

The store is found as for training (:func:`detforge.train.tracking.resolve_tracking_uri`):
``--tracking-uri``, then ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<out>/mlflow.db`` with
artifacts in ``mlartifacts/`` beside the database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.errors import ConfigError, DetforgeError, MissingExtraError
from detforge.deploy.model_card import (
    ModelCard,
    RegistryError,
    card_markdown,
    collect_card,
    key_metrics,
)
from detforge.integrations.telemetry import disable_telemetry

__all__ = ["ALIASES", "EXPERIMENT", "PREVIOUS", "PRODUCTION", "STAGING", "ModelSummary",
           "Promotion", "Registry", "RegistryError", "VersionSummary", "open_registry"]

PRODUCTION = "production"
STAGING = "staging"
PREVIOUS = "previous-production"
ALIASES = (PRODUCTION, STAGING)
"""Aliases ``promote --to`` accepts."""
EXPERIMENT = "detforge-registry"
"""The MLflow experiment that holds the registration runs."""
_HISTORY_TAG = "detforge.production_history"
_CARD_TAG = "detforge.card"
LOCK_TIMEOUT_S = 120.0
"""Longest ``promote``/``rollback`` waits for another one on the same store."""


@dataclass(frozen=True)
class VersionSummary:
    """One model version as listed.

    Attributes:
        version: Version number.
        aliases: Aliases pointing at it.
        metrics: Key metrics from its card.
        dataset_version: Dataset content hash from its card.
        targets: Bundle targets from its card.
        created: Creation time, milliseconds since the epoch.
    """

    version: int
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    dataset_version: str | None
    targets: tuple[str, ...]
    created: int


@dataclass(frozen=True)
class ModelSummary:
    """A registered model and its versions, newest first."""

    name: str
    aliases: dict[str, int]
    versions: tuple[VersionSummary, ...]


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` or ``rollback`` changed.

    Attributes:
        name: Registered model.
        alias: Alias moved.
        version: Version the alias now points at.
        replaced: Version it pointed at before (None: it was unset).
        previous: Version now aliased ``previous-production`` (None: unset).
    """

    name: str
    alias: str
    version: int
    replaced: int | None
    previous: int | None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence MLflow's and SQLAlchemy's deprecation warnings and its database INFO lines."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"(mlflow|sqlalchemy|alembic)(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow(\.|$)")
        loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _artifact_root(uri: str) -> Path | None:
    """``<db folder>/mlartifacts`` for a SQLite store, None for other stores."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent / "mlartifacts"
    return None


def open_registry(tracking_uri: str | None = None, *, out: str | Path = "runs") -> Registry:
    """Open the model registry of the tracking store.

    Args:
        tracking_uri: Explicit store URI; None uses ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<out>/mlflow.db``.
        out: Runs folder of the default local store (as ``detforge train --out``).

    Returns:
        The registry.

    Raises:
        MissingExtraError: MLflow is not installed.

    Example:
        >>> reg = open_registry(out="runs")  # doctest: +SKIP
        >>> reg.promote("ppe", 3, to="production")  # doctest: +SKIP
    """
    from detforge.train.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, out)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return Registry(uri)


class Registry:
    """Registered models of one MLflow store.

    Args:
        uri: Resolved tracking (and registry) URI.

    Raises:
        MissingExtraError: MLflow is not installed.
        RegistryError: The store cannot be opened.
    """

    def __init__(self, uri: str):
        disable_telemetry()  # before mlflow is imported: it phones home at import
        try:
            with _quiet():
                from mlflow.exceptions import MlflowException
                from mlflow.tracking import MlflowClient
        except ModuleNotFoundError as exc:
            raise MissingExtraError("the model registry needs mlflow: "
                                    "pip install 'detforge[train]'") from exc
        from detforge.train.tracking import check_store

        self.uri = uri
        self._mlflow_error = MlflowException
        try:
            check_store(uri)
        except ConfigError as exc:
            raise RegistryError(str(exc)) from exc
        with self._call(f"open the store {uri}"):
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Run MLflow calls quietly; turn their failures into :class:`RegistryError`."""
        with _quiet():
            try:
                yield
            except self._mlflow_error as exc:
                raise RegistryError(f"could not {what} ({_first_line(exc.message)}). Check "
                                    f"the store {self.uri} (--tracking-uri / "
                                    f"$MLFLOW_TRACKING_URI)") from exc

    @contextlib.contextmanager
    def _store_errors(self) -> Iterator[None]:
        """Turn a store failure MLflow does not wrap (SQLAlchemy, sqlite3, a missing database
        driver, I/O) into a one-line :class:`RegistryError`."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except DetforgeError:
            raise
        except (self._mlflow_error, SQLAlchemyError, sqlite3.Error, OSError,
                ModuleNotFoundError) as exc:
            raise RegistryError(f"the store {self.uri} failed: {type(exc).__name__}: "
                                f"{_first_line(str(exc))}. Check that it is an MLflow store "
                                f"(--tracking-uri / $MLFLOW_TRACKING_URI)") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's registry lock (see the module docstring)."""
        from filelock import FileLock, Timeout

        from detforge.train.tracking import store_lock_path

        path = store_lock_path(self.uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(path), timeout=LOCK_TIMEOUT_S, poll_interval=0.01):
                yield
        except Timeout as exc:
            raise RegistryError(f"another promote or rollback on {self.uri} has held {path} "
                                f"for over {LOCK_TIMEOUT_S:.0f} s; wait for it to finish "
                                f"and retry") from exc

    # -- lookups ---------------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        with _quiet():
            try:
                return self.client.get_registered_model(name)
            except self._mlflow_error as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise RegistryError(f"could not read model {name!r} from {self.uri} "
                                        f"({exc.message})") from exc
        with self._call("list registered models"):
            known = sorted(m.name for m in self.client.search_registered_models())
        raise RegistryError(
            f"no registered model {name!r} in {self.uri}; registered models: "
            f"{', '.join(known) or 'none'}. Register it with "
            f"`detforge registry register MODEL --name {name}`") from None

    def _versions(self, name: str) -> list[Any]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        with self._call(f"list the versions of {name!r}"):
            found = list(self.client.search_model_versions(f"name='{quoted}'"))
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def _version(self, name: str, ref: int | str, model: Any = None) -> Any:
        """Version ``ref`` (a number or an alias) of model ``name`` (``model``: its record,
        when already read)."""
        model = model if model is not None else self._model(name)
        text = str(ref).strip()
        if text.isdigit():
            with _quiet():
                try:
                    return self.client.get_model_version(name, text)
                except self._mlflow_error as exc:
                    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise RegistryError(f"could not read version {text} of {name!r} from "
                                            f"{self.uri} ({exc.message})") from exc
            versions = ", ".join(str(v.version) for v in reversed(self._versions(name)))
            raise RegistryError(f"model {name!r} has no version {text} in {self.uri}; its "
                                f"versions: {versions or 'none'}. Run `detforge registry list`")
        if text not in model.aliases:
            have = ", ".join(f"{a} -> v{v}" for a, v in sorted(model.aliases.items()))
            raise RegistryError(f"model {name!r} has no alias {text!r}; its aliases: "
                                f"{have or 'none'}. Promote a version with `detforge registry "
                                f"promote {name} VERSION --to {PRODUCTION}`")
        with self._call(f"read alias {text!r} of {name!r}"):
            return self.client.get_model_version_by_alias(name, text)

    # -- commands --------------------------------------------------------------------------

    def register(self, model: str | Path, *, name: str,
                 bundle: str | Path | None = None) -> ModelCard:
        """Log ``model`` (and ``bundle``) to a new run and register it as a new version.

        Args:
            model: ``.onnx`` or ``.pt`` file.
            name: Registered model name (created on first use).
            bundle: A deployment bundle: one target folder with ``manifest.json``, or a
                folder of such target folders.

        Returns:
            The card of the new version (``card.version`` set).

        Raises:
            RegistryError: The model file is missing or of another kind, the bundle has no
                manifest, or the store refused the change.
            BackendError: An ONNX file is unreadable or has no metadata.
        """
        with self._store_errors():
            model = Path(model)
            card = collect_card(model, name=name, bundle=bundle)
            experiment = self._experiment()
            with self._call(f"log {model} as a run"):
                run = self.client.create_run(experiment, run_name=f"register-{name}", tags={
                    "detforge.model_file": model.name, "detforge.sha256": card.sha256,
                    "dataset_version": str(card.dataset_version),
                    "training_run": str(card.training_run)})
                run_id = run.info.run_id
                try:
                    self._log_run(run_id, model, card)
                except BaseException:
                    self.client.set_terminated(run_id, "FAILED")
                    raise
                self.client.set_terminated(run_id, "FINISHED")
            with _quiet():
                try:
                    self.client.create_registered_model(
                        name, description="detforge model; see each version's card")
                except self._mlflow_error as exc:
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise RegistryError(f"could not create registered model {name!r} in "
                                            f"{self.uri} ({exc.message}); use letters, digits, "
                                            f"'-', '_' and '.' in --name") from exc
            source = f"{run.info.artifact_uri}/model/{model.name}"
            with self._call(f"create a version of {name!r}"):
                mv = self.client.create_model_version(name, source=source, run_id=run_id,
                                                      tags=card.tags())
                version = int(mv.version)
                done = card.with_version(version, run_id=run_id, source=source)
                self.client.set_model_version_tag(name, str(version), _CARD_TAG,
                                                  json.dumps(done.to_dict()))
                self.client.update_model_version(name, str(version), card_markdown(done))
            return done

    def promote(self, name: str, version: int | str, *, to: str) -> Promotion:
        """Point alias ``to`` at ``version``; moving production keeps the old one as previous.

        Args:
            name: Registered model.
            version: Version number (or an alias, e.g. ``staging``).
            to: ``production`` or ``staging``.

        Returns:
            What moved.

        Raises:
            RegistryError: Unknown model, version or alias name.
        """
        if to not in ALIASES:
            raise RegistryError(f"cannot promote to {to!r}; choose --to "
                                f"{' or --to '.join(ALIASES)}")
        with self._store_errors(), self._locked():
            return self._promote(name, version, to)

    def _promote(self, name: str, version: int | str, to: str) -> Promotion:
        model = self._model(name)
        target = int(self._version(name, version, model).version)
        aliases = dict(model.aliases)
        current = aliases.get(to)
        previous = aliases.get(PREVIOUS)
        with self._call(f"set alias {to!r} of {name!r}"):
            if to == PRODUCTION and current is not None and int(current) != target:
                previous = int(current)
                self.client.set_registered_model_alias(name, PREVIOUS, str(previous))
            self.client.set_registered_model_alias(name, to, str(target))
            if to == PRODUCTION and (current is None or int(current) != target):
                history = _history(model) + [target]
                self.client.set_registered_model_tag(name, _HISTORY_TAG,
                                                     ",".join(map(str, history[-50:])))
        return Promotion(name, to, target, None if current is None else int(current),
                         None if previous is None else int(previous))

    def rollback(self, name: str) -> Promotion:
        """Move production back to ``previous-production``.

        After the move ``previous-production`` points at the production version before that
        one (from the promotion history), or is removed when there is none.

        Returns:
            What moved.

        Raises:
            RegistryError: Unknown model, or no previous production version to go back to.
        """
        with self._store_errors(), self._locked():
            return self._rollback(name)

    def _rollback(self, name: str) -> Promotion:
        model = self._model(name)
        aliases = dict(model.aliases)
        previous = aliases.get(PREVIOUS)
        if previous is None:
            now = aliases.get(PRODUCTION)
            state = (f"production is v{now}, with no earlier production version recorded"
                     if now is not None else "nothing is in production")
            raise RegistryError(
                f"model {name!r} has no {PREVIOUS!r} version to roll back to ({state}). "
                f"Promote a version instead: `detforge registry promote {name} VERSION "
                f"--to {PRODUCTION}`")
        current = aliases.get(PRODUCTION)
        target = int(previous)
        history = _history(model)
        if current is not None and history and history[-1] == int(current):
            history.pop()
        if history and history[-1] == target:
            history.pop()
        history.append(target)
        before = history[-2] if len(history) > 1 else None
        with self._call(f"roll back {name!r}"):
            self.client.set_registered_model_alias(name, PRODUCTION, str(target))
            if before is not None and before != target:
                self.client.set_registered_model_alias(name, PREVIOUS, str(before))
            else:
                before = None
                self.client.delete_registered_model_alias(name, PREVIOUS)
            self.client.set_registered_model_tag(name, _HISTORY_TAG, ",".join(map(str, history)))
        return Promotion(name, PRODUCTION, target, None if current is None else int(current),
                         before)

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its versions (newest first), aliases and metrics."""
        with self._store_errors():
            with self._call("list registered models"):
                models = sorted(self.client.search_registered_models(), key=lambda m: m.name)
            out = []
            for model in models:
                by_version: dict[int, list[str]] = {}
                for alias, v in model.aliases.items():
                    by_version.setdefault(int(v), []).append(alias)
                rows = []
                for mv in self._versions(model.name):
                    card = self._card(mv)
                    rows.append(VersionSummary(
                        version=int(mv.version), aliases=tuple(sorted(by_version.get(
                            int(mv.version), []))),
                        metrics=key_metrics(card.get("metrics") or {}),
                        dataset_version=card.get("dataset_version"),
                        targets=tuple(card.get("targets") or ()),
                        created=int(mv.creation_timestamp or 0)))
                out.append(ModelSummary(model.name, {a: int(v) for a, v in model.aliases.items()},
                                        tuple(rows)))
            return out

    def show(self, name: str, ref: int | str | None = None) -> dict[str, Any]:
        """The card of one version: ``ref`` is a number, an alias, or None (production, else
        the newest version).

        Returns:
            The card as a dict, with ``aliases`` (this version's) and ``description`` (the
            Markdown card).

        Raises:
            RegistryError: Unknown model, version or alias.
        """
        with self._store_errors():
            model = self._model(name)
            if ref is None:
                ref = PRODUCTION if PRODUCTION in model.aliases else None
                if ref is None:
                    versions = self._versions(name)
                    if not versions:
                        raise RegistryError(f"model {name!r} has no versions; register one with "
                                            f"`detforge registry register MODEL --name {name}`")
                    ref = int(versions[0].version)
            mv = self._version(name, ref)
            card = self._card(mv)
            card.update(name=name, version=int(mv.version), mlflow_run_id=mv.run_id,
                        source=mv.source, description=mv.description or _plain_card(
                            name, int(mv.version), card),
                        aliases=sorted(a for a, v in model.aliases.items()
                                       if int(v) == int(mv.version)))
            return card

    # -- helpers ---------------------------------------------------------------------------

    def _experiment(self) -> str:
        with self._call(f"open experiment {EXPERIMENT!r}"):
            found = self.client.get_experiment_by_name(EXPERIMENT)
            if found is not None:
                return str(found.experiment_id)
            root = _artifact_root(self.uri)
            location = root.resolve().as_uri() if root is not None else None
            return str(self.client.create_experiment(EXPERIMENT, artifact_location=location))

    def _log_run(self, run_id: str, model: Path, card: ModelCard) -> None:
        """Log the card's metrics, the model file, the bundle folders and ``card.json``."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in card.numeric_metrics().items()]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
        self.client.log_artifact(run_id, str(model), "model")
        for folder in card.bundle_dirs:
            self.client.log_artifacts(run_id, str(folder), f"bundle/{folder.name}")
        self.client.log_text(run_id, json.dumps(card.to_dict(), indent=2), "card.json")

    def _card(self, mv: Any) -> dict[str, Any]:
        """A version's card; for versions ``detforge train`` registered (no card), the
        dataset version and ``final/`` metrics of their training run."""
        card = _card_from_tags(mv.tags)
        if card or not mv.run_id:
            return card
        with _quiet():
            try:
                run = self.client.get_run(mv.run_id)
            except self._mlflow_error:
                return {}
        metrics = {k.removeprefix("final/"): v for k, v in run.data.metrics.items()
                   if k.startswith("final/")}
        dataset = run.data.tags.get("dataset_version")
        return {"metrics": metrics, "training_run": mv.run_id,
                "dataset_version": dataset if dataset not in (None, "None") else None}



def _card_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    """The card JSON a version carries ({} for versions registered by other tools)."""
    try:
        data = json.loads(tags.get(_CARD_TAG, "{}"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _plain_card(name: str, version: int, card: dict[str, Any]) -> str:
    """Markdown for a version registered without a detforge card (e.g. by ``train``)."""
    lines = [f"# {name} v{version}", "",
             "Registered without a detforge card (by `detforge train` or another tool); "
             f"register the exported model with `detforge registry register MODEL --name "
             f"{name}` for a full card.", "",
             f"- dataset version: {card.get('dataset_version') or 'unknown'}",
             f"- training run: {card.get('training_run') or 'unknown'}"]
    lines += [f"- {k}: {v:.4f}" for k, v in (card.get("metrics") or {}).items()]
    return "\n".join(lines) + "\n"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _history(model: Any) -> list[int]:
    """The production history a registered model's tag records, oldest first."""
    text = model.tags.get(_HISTORY_TAG, "")
    return [int(p) for p in text.split(",") if p.strip().isdigit()]
