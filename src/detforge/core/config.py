"""Config base: pydantic models that reject unknown keys, loaded from YAML plus overrides.

Flow: YAML file -> ``key.sub=value`` overrides -> ``model_validate``. Override values
are parsed as YAML scalars, so ``epochs=10`` is an int and ``names=[a,b]`` a list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from detforge.core.errors import ConfigError

__all__ = ["StrictModel", "apply_overrides", "load_config"]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied.

    Raises:
        ConfigError: An override has no ``=``.
    """
    out: dict[str, Any] = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(model: type[M], path: str | Path | None = None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None) -> M:
    """Load ``model`` from a YAML file (optional), a base mapping and overrides.

    Raises:
        ConfigError: The file is unreadable, or a key or value is invalid; the message names
            the valid keys.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"{path}: a config must be a mapping of keys, got {type(loaded).__name__}")
        data.update(loaded)
    data = apply_overrides(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(model, exc, path)) from exc


def _explain(model: type[BaseModel], exc: ValidationError, path: str | Path | None) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {loc!r}; valid keys: {sorted(model.model_fields)}")
        elif not loc:  # a check across fields: its message names them, the input is everything
            lines.append(msg)
        else:
            lines.append(f"{loc}: {msg} (got {err.get('input')!r})")
    where = f"{path}: " if path else ""
    return where + "; ".join(lines)
