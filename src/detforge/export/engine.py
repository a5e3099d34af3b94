"""``engine build``: build with TensorRT when this machine can, else write the command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_text
from detforge.core.errors import MissingExtraError
from detforge.deploy.targets import Target
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
    manifest: dict[str, Any] | None
    reason: str | None


def build_or_script(onnx: str | Path, target: Target, precision: str, *, batch: str = "1",
                    workspace: str = "2GiB", timing_cache: str | Path | None = None,
                    engine: str | Path | None = None, script_only: bool = False) -> EngineResult:
    """Plan the engine, always write its build script, and build it when possible.

    The engine is built here only when TensorRT and a CUDA GPU are present and the GPU has
    the target's compute capability; an engine built for another GPU would be refused at
    load time anyway.

    Raises:
        TargetCapabilityError: The target cannot run ``precision`` (CLI exit 2).
        ExportError: The model cannot serve the requested batch or precision.
    """
    plan = plan_engine(onnx, target, precision, batch=parse_batch_range(batch),
                       workspace=workspace, timing_cache=timing_cache, engine=engine)
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
    want = f"{target.compute_capability[0]}.{target.compute_capability[1]}"
    if device["compute_capability"] != want:
        return EngineResult(plan, command, script, None,
                            f"this GPU is {device['gpu_name']} (sm {device['compute_capability']}),"
                            f" the target needs sm {want}")
    return EngineResult(plan, command, script, build_engine(plan), None)
