"""The engine manifest: ``model.engine.json`` beside every TensorRT plan detforge builds.

Both builders write it: the Python API (:mod:`detforge.export.tensorrt`) and the
``build_engine.sh`` script a bundle ships (it parses ``trtexec``'s own report of the
TensorRT version and the GPU). ``detforge engine inspect``, the TensorRT runtime backend and
``deploy verify`` read it through :func:`read_engine_sidecar`, so a plan built either way
is accepted the same way: it records where the plan can run (GPU architecture and TensorRT
version) and what it was built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from detforge.core.artefacts.io import read_artefact, write_artefact
from detforge.core.artefacts.model_meta import ModelMeta
from detforge.core.errors import DetforgeError, ExportError

__all__ = ["BatchRange", "EngineSidecar", "read_engine_sidecar", "sidecar_path",
           "write_engine_sidecar"]

REBUILD = ("rebuild it with `detforge engine build MODEL.onnx --target TARGET` or the bundle's "
           "build_engine.sh, which write the manifest")


class BatchRange(BaseModel):
    """The optimisation profile's batch sizes, ``min <= opt <= max``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: PositiveInt
    opt: PositiveInt
    max: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> BatchRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"batch must satisfy min <= opt <= max, got "
                             f"{self.min}/{self.opt}/{self.max}")
        return self


class EngineSidecar(BaseModel):
    """Where a plan was built and what from.

    Unknown keys are ignored (a newer detforge may add some); the fields below are
    validated. ``compute_capability`` and ``tensorrt_version`` decide where the plan runs.

    Example:
        >>> s = EngineSidecar(engine="m.engine", precision="fp16", compute_capability="8.7",
        ...                   tensorrt_version="10.3.0", batch={"min": 1, "opt": 4, "max": 4})
        >>> s.batch.max
        4
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    engine: str = Field(min_length=1)
    precision: Literal["fp32", "fp16", "int8"]
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    tensorrt_version: str = Field(pattern=r"^\d+\.\d+(\.\d+)*$")
    batch: BatchRange
    target: str | None = None
    gpu_name: str | None = None
    cuda_version: str | None = None
    input_name: str | None = None
    input_shape: tuple[int, int, int, int] | None = None
    onnx: str | None = None
    onnx_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    engine_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    meta: ModelMeta | None = None
    built_at: str | None = None
    builder: Literal["python-api", "trtexec"] | None = None
    dla_core: int | None = Field(None, ge=0)
    version_compatible: bool = False
    hardware_compatibility: str = "none"


def sidecar_path(engine: str | Path) -> Path:
    """The manifest of an engine: ``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_engine_sidecar(engine: str | Path, *,
                        error: type[DetforgeError] = ExportError) -> EngineSidecar:
    """Read and validate the manifest beside ``engine``.

    Raises:
        DetforgeError: ``error``: no manifest, not JSON, not an object, or a field is
            missing or malformed (the message names it and how to rebuild).
    """
    side = sidecar_path(engine)
    if not side.is_file():
        raise error(f"{engine}: no manifest {side.name} beside it, so detforge cannot tell "
                    f"which GPU and TensorRT it was built for; {REBUILD}")
    return read_artefact(side, EngineSidecar, what="manifest", fix=REBUILD, error=error)


def write_engine_sidecar(engine: str | Path, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` beside ``engine`` (atomically); returns its path."""
    side = sidecar_path(engine)
    write_artefact(side, sidecar)
    return side
