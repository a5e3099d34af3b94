"""The one place artefact JSON files are read, validated and written.

Every artefact another program (or another stage) reads goes through
:func:`read_artefact` / :func:`validate_artefact`: a file that is missing, not JSON, not a
JSON object, or that fails its pydantic model gives one line naming the file, the field
and the fix, raised as the caller's :class:`~detforge.core.errors.DetforgeError` subclass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import ConfigError, DetforgeError

__all__ = ["describe_validation", "read_artefact", "validate_artefact", "write_artefact"]

M = TypeVar("M", bound=BaseModel)

_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def describe_validation(exc: ValidationError, *, limit: int = 3) -> str:
    """A pydantic error as one line: missing fields together, then each bad field."""
    missing: list[str] = []
    bad: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        if err["type"] == "missing":
            missing.append(repr(loc))
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            bad.append(f"field {loc!r}: {msg} (got {err.get('input')!r})")
    parts = ([f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"]
             if missing else []) + bad
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(parts[:limit]) + more


def validate_artefact(data: Any, model: type[M], *, source: str | Path, what: str, fix: str,
                      error: type[DetforgeError] = ConfigError) -> M:
    """Validate parsed JSON ``data`` as ``model``.

    Args:
        data: The parsed JSON value.
        model: The pydantic model of the artefact.
        source: The file (or other origin) named in the message.
        what: The artefact's name in words, e.g. ``"engine manifest"``.
        fix: How to get a good one, appended to every message.
        error: The error class raised.

    Raises:
        DetforgeError: ``error``, when ``data`` is not an object or does not validate.
    """
    if not isinstance(data, dict):
        kind = _JSON_TYPES.get(type(data), type(data).__name__)
        raise error(f"{source}: the {what} must be a JSON object, found a JSON {kind}; {fix}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: invalid {what}: {describe_validation(exc)}; {fix}") from exc


def read_artefact(path: str | Path, model: type[M], *, what: str, fix: str,
                  error: type[DetforgeError] = ConfigError) -> M:
    """Read and validate the JSON artefact at ``path``.

    Raises:
        DetforgeError: ``error``, when the file is missing, unreadable, not JSON or invalid;
            the message names the file and the first fields at fault.

    Example:
        >>> from detforge.core.artefacts import EngineSidecar
        >>> read_artefact("missing.json", EngineSidecar, what="engine manifest",
        ...               fix="rebuild it")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ConfigError: missing.json: no engine manifest; rebuild it
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no {what}; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc}); {fix}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: unreadable {what}, not JSON ({exc}); {fix}") from exc
    return validate_artefact(data, model, source=path, what=what, fix=fix, error=error)


def write_artefact(path: str | Path, artefact: BaseModel) -> None:
    """Write ``artefact`` as indented JSON, atomically."""
    atomic_write_text(path, artefact.model_dump_json(indent=2) + "\n")
