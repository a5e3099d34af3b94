"""Shared types: detections, boxes, class maps, errors, atomic writes and config."""

from detforge.core.classes import ClassMap
from detforge.core.detections import Detections
from detforge.core.errors import (
    BackendError,
    ConfigError,
    DatasetError,
    DetforgeError,
    EngineMismatchError,
    ExportError,
    InvalidDetectionsError,
    MissingExtraError,
    TargetCapabilityError,
)

__all__ = [
    "BackendError",
    "ClassMap",
    "ConfigError",
    "DatasetError",
    "DetforgeError",
    "Detections",
    "EngineMismatchError",
    "ExportError",
    "InvalidDetectionsError",
    "MissingExtraError",
    "TargetCapabilityError",
]
