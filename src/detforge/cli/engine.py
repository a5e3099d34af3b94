"""``detforge engine build|inspect`` and ``detforge targets``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.atomic import atomic_write_text

engine_app = typer.Typer(help="TensorRT engines: build for a target, inspect a manifest.",
                         no_args_is_help=True)


@engine_app.command("build")
def build(
    onnx: Annotated[Path, typer.Argument(help="ONNX model (float, FP16 or Q/DQ INT8).")],
    target: Annotated[str, typer.Option(help="Target device, see `detforge targets`.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp16",
    batch: Annotated[str, typer.Option(help="Batch N or range MIN-MAX, e.g. 1-8.")] = "1",
    workspace: Annotated[str, typer.Option(help="Workspace memory limit.")] = "2GiB",
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Engine file.")] = None,
    script_only: Annotated[bool, typer.Option(
        help="Only write the trtexec command and build script.")] = False,
) -> None:
    """Build a TensorRT plan here, or write the exact command to build it on the target.

    Example: detforge engine build model.onnx --target orin-nano --precision int8 --batch 1-4
    """
    from detforge.deploy.targets import get_target
    from detforge.export.engine import build_or_script

    result = build_or_script(onnx, get_target(target), precision,
                             batch=batch, workspace=workspace, timing_cache=timing_cache,
                             engine=out, script_only=script_only)
    if result.manifest is not None:
        typer.echo(f"built {result.plan.engine} ({result.manifest['gpu_name']}, "
                   f"TensorRT {result.manifest['tensorrt_version']})")
    else:
        typer.echo(f"TensorRT build not possible here ({result.reason}).")
        typer.echo(f"On the {result.plan.target.title}, run:\n  "
                   + " ".join(shlex.quote(c) for c in result.command))
        typer.echo(f"build script: {result.script}")


@engine_app.command("inspect")
def inspect(engine: Annotated[Path, typer.Argument(help="Engine (.engine/.plan) file.")],
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print an engine's manifest: where it was built and what it can run."""
    from detforge.export.tensorrt import read_manifest

    manifest = read_manifest(engine)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    for key, value in manifest.items():
        typer.echo(f"{key:20s} {value}")


def targets(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
            out: Annotated[Path | None, typer.Option(help="Also write JSON here.")] = None,
            ) -> None:
    """The table of target devices and what each can run."""
    from detforge.deploy.targets import TARGETS, supported_precisions

    rows = [t.to_dict() for t in TARGETS.values()]
    if out is not None:
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'target':12s} {'sm':7s} {'mem GB':>6s} {'DLA':>3s} {'precisions':15s} "
               f"{'TensorRT':9s} {'DeepStream':10s} {'recommend':12s}")
    for t in TARGETS.values():
        rec = f"{t.model_size}/{t.precision}/b{t.batch}"
        typer.echo(f"{t.name:12s} {t.sm:7s} {t.memory_gb:6g} {t.dla_cores:3d} "
                   f"{','.join(supported_precisions(t)):15s} {t.tensorrt:9s} "
                   f"{t.deepstream:10s} {rec:12s}")


def register(app: typer.Typer) -> None:
    app.add_typer(engine_app, name="engine")
    app.command("targets")(targets)
