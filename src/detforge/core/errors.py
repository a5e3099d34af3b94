"""Typed errors. Every message says what went wrong, where, and how to fix it.

Hierarchy::

    DetforgeError                 base of every error detforge raises on purpose
    ├── ConfigError               a config key, value or override is wrong
    ├── DatasetError              a dataset file is unreadable or malformed (has .path, .line)
    ├── InvalidDetectionsError    arrays given to Detections have the wrong shape or dtype
    ├── ExportError               a model could not be exported, quantised or checked
    ├── EngineMismatchError       a TensorRT engine does not match this device or TensorRT
    ├── TargetCapabilityError     a target device cannot run the requested precision
    ├── MissingExtraError         an optional dependency is not installed (also an ImportError)
    ├── BackendError              a runtime backend failed to load or run a model
    └── StorageError              a write failed: disk full, quota, permission, read-only

The CLI prints ``ErrorName: message`` for these and exits with ``exit_code``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendError",
    "ConfigError",
    "DatasetError",
    "DetforgeError",
    "EngineMismatchError",
    "ExportError",
    "InvalidDetectionsError",
    "MissingExtraError",
    "StorageError",
    "TargetCapabilityError",
]


class DetforgeError(Exception):
    """Base class of every error detforge raises on purpose."""

    exit_code: int = 1


class ConfigError(DetforgeError):
    """A configuration key, value or override is invalid."""

    exit_code = 2


class DatasetError(DetforgeError):
    """A dataset file is missing, unreadable or malformed.

    Args:
        message: What went wrong and how to fix it.
        path: The file at fault, when there is one.
        line: The 1-based line in ``path``, for text formats.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else Path(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(f"{where}{message}")


class InvalidDetectionsError(DetforgeError):
    """Arrays passed to :class:`~detforge.core.detections.Detections` are inconsistent."""


class ExportError(DetforgeError):
    """A model could not be exported, quantised or verified."""


class EngineMismatchError(DetforgeError):
    """A TensorRT engine was built for another device or TensorRT version."""


class TargetCapabilityError(DetforgeError):
    """A target device cannot run the requested precision or feature."""

    exit_code = 2


class MissingExtraError(DetforgeError, ImportError):
    """An optional dependency is missing; the message gives the pip command.

    It is an :class:`ImportError` too, so code that falls back when an import fails keeps
    working when the import goes through a detforge helper.
    """

    exit_code = 2


class BackendError(DetforgeError):
    """A runtime backend failed to load or run a model."""


class StorageError(DetforgeError):
    """A write failed for lack of space or permission; the message names the path, the free
    space and the space needed (see :mod:`detforge.core.storage`)."""
