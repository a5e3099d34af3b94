"""Typed artefacts shared by every stage: validated models, read and written in one place.

What one stage writes and another reads lives here, so neither ``export`` nor ``deploy``
needs the other's modules for a file format:

* :class:`ModelMeta` -- the metadata every exported model carries (``model_meta``);
* :class:`EngineSidecar` -- ``model.engine.json`` beside each TensorRT plan (``engine``);
* :class:`Target` and :data:`TARGETS` -- the deployment target table (``targets``).

:func:`read_artefact` and :func:`write_artefact` (``io``) are the one place these files are
parsed and written: a malformed file gives one line naming the file, the field and the
fix. See ``docs/decisions/0010-tensorrt-compatibility.md``.
"""

from detforge.core.artefacts.engine import (
    BatchRange,
    EngineSidecar,
    read_engine_sidecar,
    sidecar_path,
    write_engine_sidecar,
)
from detforge.core.artefacts.io import (
    describe_validation,
    read_artefact,
    validate_artefact,
    write_artefact,
)
from detforge.core.artefacts.model_meta import LAYOUTS, LetterboxSpec, ModelMeta, NormalizeSpec
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

__all__ = [
    "LAYOUTS",
    "PRECISIONS",
    "TARGETS",
    "BatchRange",
    "EngineSidecar",
    "LetterboxSpec",
    "ModelMeta",
    "NormalizeSpec",
    "Target",
    "check_precision",
    "describe_validation",
    "get_target",
    "memory_warning",
    "read_artefact",
    "read_engine_sidecar",
    "resolve_precision",
    "sidecar_path",
    "supported_precisions",
    "validate_artefact",
    "write_artefact",
    "write_engine_sidecar",
]
