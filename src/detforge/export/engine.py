"""``engine build``: build with TensorRT when this machine can, else write the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detforge.core.artefacts.engine import EngineSidecar
from detforge.core.artefacts.targets import Target
from detforge.core.atomic import atomic_write_text
from detforge.core.errors import MissingExtraError
from detforge.export.engine_check import require_buildable
from detforge.export.engine_plan import (
    EnginePlan,
    build_script,
    parse_batch_range,
    plan_engine,
    trtexec_command,
)

__all__ = ["EngineResult", "build_or_script"]


@dataclass(frozen=True)
class EngineResult:
    """Outcome of ``engine build``: a built engine (manifest set) or a script to run."""

    plan: EnginePlan
    command: list[str]
    script: Path
    manifest: EngineSidecar | None
    reason: str | None


def build_or_script(onnx: str | Path, target: Target, precision: str, *, batch: str = "1",
                    workspace: str = "2GiB", timing_cache: str | Path | None = None,
                    engine: str | Path | None = None, script_only: bool = False,
                    tensorrt: str | None = None, dla_core: int | None = None) -> EngineResult:
    """Plan the engine, always write its build script, and build it when possible.

    The model is first checked against the target's TensorRT (``engine check``). The
    script (``<engine stem>.build.sh`` beside the engine) runs from any folder and writes
    the engine's manifest itself. The engine is built here only when TensorRT and a
    CUDA GPU are present and the GPU has the target's compute capability; an engine built
    for another GPU would be refused at load time anyway.

    Raises:
        TargetCapabilityError: The target cannot run ``precision`` or ``dla_core``, or its
            TensorRT cannot build the model (CLI exit 2).
        ExportError: The model cannot serve the requested batch.
    """
    plan = plan_engine(onnx, target, precision, batch=parse_batch_range(batch),
                       workspace=workspace, timing_cache=timing_cache, engine=engine,
                       tensorrt=tensorrt, dla_core=dla_core)
    require_buildable(plan.onnx, target, precision, tensorrt=tensorrt)
    script = plan.engine.with_name(plan.engine.stem + ".build.sh")
    atomic_write_text(script, build_script(plan))
    script.chmod(0o755)
    command = trtexec_command(plan)
    if script_only:
        return EngineResult(plan, command, script, None, "--script-only given")
    from detforge.export.tensorrt import build_engine, local_device

    try:
        device = local_device()
    except MissingExtraError as exc:
        return EngineResult(plan, command, script, None, str(exc))
    if device["compute_capability"] != target.cc:
        return EngineResult(plan, command, script, None,
                            f"this GPU is {device['gpu_name']} (sm {device['compute_capability']}),"
                            f" the target needs sm {target.cc}")
    return EngineResult(plan, command, script, build_engine(plan, device=device), None)
