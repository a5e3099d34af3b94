"""``detforge deploy bundle|verify``: deployment bundles per target and their on-device check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.core.errors import ConfigError
from detforge.core.imgsz import parse_optional_imgsz

deploy_app = typer.Typer(help="Deployment bundles (DeepStream, Triton, TensorRT) and their "
                              "on-target verification.", no_args_is_help=True)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        w, h = (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise ConfigError(f"--source-size {text!r} must be W,H, e.g. 1920,1080")
    return w, h


@deploy_app.command("bundle")
def bundle(
    model: Annotated[Path, typer.Argument(help="Model: .pt weights or a float .onnx.")],
    target: Annotated[list[str], typer.Option(help="Target device (repeat for several); "
                                                   "see `detforge targets`.")],
    out: Annotated[Path, typer.Option(help="Output folder; one sub-folder per target.")
                   ] = Path("bundles"),
    precision: Annotated[str, typer.Option(help="auto (target's recommended), fp32, fp16 "
                                                "or int8.")] = "auto",
    batch: Annotated[int | None, typer.Option(help="Batch size (default: the target's).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset: INT8 calibration (train) and "
                                                   "reference images (val).")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Input N or H,W when exporting a .pt.")] = None,
    conf: Annotated[float, typer.Option(help="Score threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.45,
    max_det: Annotated[int, typer.Option(help="Most detections per image (topk).")] = 300,
    reference_images: Annotated[int, typer.Option(help="Images in reference/.")] = 4,
    name: Annotated[str | None, typer.Option(help="Triton model name.")] = None,
    source_size: Annotated[str, typer.Option(help="W,H of the video DeepStream will read "
                                                  "(streammux runs at it).")] = "1920,1080",
    source_uri: Annotated[str, typer.Option(help="DeepStream source: file://... or rtsp://... "
                                                 "(default: DeepStream's sample clip).")] = "",
    pad_fill: Annotated[bool, typer.Option(help="Fill nvinfer's black letterbox bands with the "
                                                "training grey inside the model.")] = True,
    sign: Annotated[bool, typer.Option(help="Sign manifests with HMAC-SHA256, key from "
                                            "$DETFORGE_SIGNING_KEY.")] = False,
    sign_key: Annotated[Path | None, typer.Option(help="Sign manifests with this Ed25519 "
                                                       "private key (PEM).")] = None,
) -> None:
    """Write DIR/<target>/: ONNX, DeepStream/Triton configs, engine script, references, manifest.

    Example: detforge deploy bundle best.pt --target orin-nano --target t4 --out bundles --data ds
    """
    from detforge.deploy.bundle import bundle_model
    from detforge.deploy.deepstream import SAMPLE_URI

    result = bundle_model(model, targets=target, out=out, precision=precision, batch=batch,
                          data=data, imgsz=parse_optional_imgsz(imgsz), conf=conf, iou=iou,
                          max_det=max_det, reference_images=reference_images, name=name,
                          source_size=_size(source_size), source_uri=source_uri or SAMPLE_URI,
                          pad_fill=pad_fill, sign=sign, sign_key=sign_key)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for b in result.bundles:
        typer.echo(f"{b.target:12s} {b.precision:5s} batch {b.batch:<3d} {b.folder}  "
                   f"(engine {b.engine} via build_engine.sh)")
        for note in b.notes:
            typer.echo(f"  note: {note}")
    typer.echo(f"check on each device: detforge deploy verify {out}/<target>")


@deploy_app.command("verify")
def verify(
    bundle_dir: Annotated[Path, typer.Argument(help="A bundle folder, DIR/<target>.")],
    backend: Annotated[str, typer.Option(help="auto, onnxruntime or tensorrt.")] = "auto",
    iou: Annotated[float, typer.Option(help="Smallest IoU of a matching box.")] = 0.9,
    min_agreement: Annotated[float | None, typer.Option(
        help="Smallest box agreement (default 1.0 on CPU, 0.9 on GPU).")] = None,
    max_score_diff: Annotated[float | None, typer.Option(
        help="Largest score difference (default by precision).")] = None,
    min_device_agreement: Annotated[float, typer.Option(
        help="Smallest agreement of the emulated DeepStream pipeline.")] = 0.9,
    public_key: Annotated[Path | None, typer.Option(
        help="Trusted Ed25519 public key (PEM) for a signed manifest.")] = None,
    speed_seconds: Annotated[float, typer.Option(help="How long to measure images/s.")] = 2.0,
    build: Annotated[bool, typer.Option(help="On the target, build the engine with TensorRT "
                                             "when it is missing.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check files, configs and the predicted device detections, and time them; exit 0 PASS.

    A signed manifest is checked with $DETFORGE_SIGNING_KEY (HMAC) or --public-key (Ed25519).

    Example: detforge deploy verify bundles/orin-nano
    """
    from detforge.deploy.verify import verify_bundle

    report = verify_bundle(bundle_dir, backend=backend, iou=iou, min_agreement=min_agreement,
                           max_score_diff=max_score_diff,
                           min_device_agreement=min_device_agreement,
                           speed_seconds=speed_seconds, build=build, public_key=public_key)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"bundle {report.bundle} (target {report.target}); model {report.model} on "
                   f"{report.backend}")
        for c in report.checks:
            typer.echo(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        for st in report.stages:
            typer.echo(f"    {st['stage']:32s} {st['agreement']:.3f}  ({st['matched']} matched, "
                       f"{st['missing']} missing, {st['extra']} extra)")
        for note in report.notes:
            typer.echo(f"  note: {note}")
        typer.echo("PASS" if report.passed else "FAIL: " + "; ".join(report.reasons))
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``deploy`` group to the root app."""
    app.add_typer(deploy_app, name="deploy")
