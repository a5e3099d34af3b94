"""Target devices: the table and its precision rules (re-exported from
:mod:`detforge.core.artefacts.targets`, where every stage reads them)."""

from __future__ import annotations

from detforge.core.artefacts.targets import (
    PRECISIONS,
    TARGETS,
    Target,
    check_precision,
    get_target,
    memory_warning,
    resolve_precision,
    supported_precisions,
)

__all__ = ["PRECISIONS", "TARGETS", "Target", "check_precision", "get_target", "memory_warning",
           "resolve_precision", "supported_precisions"]
