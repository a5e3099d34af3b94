"""``detforge engine build|check|inspect`` and ``detforge targets``."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.atomic import atomic_write_text

engine_app = typer.Typer(help="TensorRT engines: check a model against a target's TensorRT, "
                              "build for a target, inspect a manifest.", no_args_is_help=True)

SHOWN = 20
"""Violations printed in full by ``engine check``; the JSON report has them all."""

TensorrtOpt = Annotated[str | None, typer.Option(
    "--tensorrt", help="TensorRT version on the device, when not the target's usual one "
                       "(see `detforge targets`).")]


@engine_app.command("build")
def build(
    onnx: Annotated[Path, typer.Argument(help="ONNX model (float, FP16 or Q/DQ INT8).")],
    target: Annotated[str, typer.Option(help="Target device, see `detforge targets`.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 (Q/DQ model).")] = "fp16",
    batch: Annotated[str, typer.Option(help="Batch N or range MIN-MAX, e.g. 1-8.")] = "1",
    workspace: Annotated[str, typer.Option(help="Workspace memory limit.")] = "2GiB",
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Engine file.")] = None,
    dla: Annotated[int | None, typer.Option(help="DLA core (Jetson Xavier/Orin NX/AGX).")] = None,
    tensorrt: TensorrtOpt = None,
    script_only: Annotated[bool, typer.Option(
        help="Only write the trtexec command and build script.")] = False,
) -> None:
    """Build a TensorRT plan here, or write the exact command to build it on the target.

    Example: detforge engine build model_int8.onnx --target orin-nx --precision int8 --batch 1-4
    """
    from detforge.core.artefacts.targets import get_target
    from detforge.export.engine import build_or_script

    result = build_or_script(onnx, get_target(target), precision, batch=batch,
                             workspace=workspace, timing_cache=timing_cache, engine=out,
                             script_only=script_only, tensorrt=tensorrt, dla_core=dla)
    if result.manifest is not None:
        typer.echo(f"built {result.plan.engine} ({result.manifest.gpu_name}, "
                   f"TensorRT {result.manifest.tensorrt_version})")
    else:
        typer.echo(f"TensorRT build not possible here ({result.reason}).")
        typer.echo(f"On the {result.plan.target.title}, run:\n  bash {result.script}\n"
                   f"(from any folder; it writes the engine's manifest too), i.e.\n  "
                   + " ".join(shlex.quote(c) for c in result.command))


@engine_app.command("check")
def check(
    onnx: Annotated[Path, typer.Argument(help="ONNX model to check.")],
    target: Annotated[str, typer.Option(help="Target device, see `detforge targets`.")],
    precision: Annotated[str | None, typer.Option(
        help="fp32, fp16 or int8 (default: what the model is).")] = None,
    tensorrt: TensorrtOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as "
                                                                 "JSON here.")] = None,
) -> None:
    """List everything the target's TensorRT would refuse: exit 0 clean, 1 violations.

    Example: detforge engine check model.onnx --target jetson-nano --precision fp16
    """
    from detforge.core.artefacts.targets import get_target
    from detforge.export.engine_check import check_model

    report = check_model(onnx, get_target(target), precision=precision, tensorrt=tensorrt)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
    typer.echo(f"{onnx}: opset {report.opset}, {report.nodes} nodes; {target}: TensorRT "
               f"{report.tensorrt} (rules {report.series}), {report.precision}")
    for v in report.violations[:SHOWN]:
        typer.echo(f"  {v.line()}\n      source: {v.source}")
    if len(report.violations) > SHOWN:
        typer.echo(f"  ... and {len(report.violations) - SHOWN} more (all of them: --json F)")
    counts = Counter(v.rule for v in report.violations)
    typer.echo("PASS: TensorRT can build it" if report.passed else
               f"FAIL: {len(report.violations)} violation(s): "
               + ", ".join(f"{n} {rule}" for rule, n in counts.most_common()))
    if not report.passed:
        raise typer.Exit(1)


@engine_app.command("inspect")
def inspect(engine: Annotated[Path, typer.Argument(help="Engine (.engine/.plan) file.")],
            as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print an engine's manifest: where it was built and what it can run."""
    from detforge.export.tensorrt import read_manifest

    manifest = read_manifest(engine).model_dump(mode="json", exclude_none=True)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    for key, value in manifest.items():
        typer.echo(f"{key:22s} {value}")


def targets(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
            out: Annotated[Path | None, typer.Option(help="Also write JSON here.")] = None,
            ) -> None:
    """The table of target devices, their TensorRT (which keys its rules) and what each runs."""
    from detforge.core.artefacts.targets import TARGETS, supported_precisions
    from detforge.export.trt_compat import export_opset, rules_for

    rows = []
    for t in TARGETS.values():
        r = rules_for(t.tensorrt)
        rows.append({**t.to_dict(), "tensorrt_rules": r.series, "onnx_opset_max": r.opset[1],
                     "export_opset": export_opset([t.tensorrt])})
    if out is not None:
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'target':12s} {'sm':7s} {'mem GB':>6s} {'DLA':>3s} {'precisions':15s} "
               f"{'TensorRT':9s} {'rules':5s} {'opset':5s} {'DeepStream':10s} {'recommend':12s}")
    for t, row in zip(TARGETS.values(), rows, strict=True):
        rec = f"{t.model_size}/{t.precision}/b{t.batch}"
        typer.echo(f"{t.name:12s} {t.sm:7s} {t.memory_gb:6g} {t.dla_cores:3d} "
                   f"{','.join(supported_precisions(t)):15s} {t.tensorrt:9s} "
                   f"{row['tensorrt_rules']:5s} {row['export_opset']:<5d} {t.deepstream:10s} "
                   f"{rec:12s}")


def register(app: typer.Typer) -> None:
    app.add_typer(engine_app, name="engine")
    app.command("targets")(targets)
