"""One target's bundle folder: every file the device reads, and the manifest that lists them.

:func:`write_target` fills a fresh folder; :mod:`detforge.deploy.bundle` decides what goes
into each (target, precision, batch, model) and moves the finished folder into place.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detforge.core.atomic import atomic_write_text
from detforge.deploy import deepstream, parser, triton
from detforge.deploy.manifest import (
    MANIFEST,
    BundleManifest,
    DeviceFile,
    sign_manifest,
    write_manifest,
)
from detforge.deploy.targets import Target, memory_warning
from detforge.export.engine_plan import (
    build_script,
    onnx_input,
    parse_batch_range,
    plan_engine,
    sha256_file,
    trtexec_command,
)
from detforge.runtime.metadata import ModelMeta

__all__ = ["APP_CONFIG", "INFER_CONFIG", "ON_DEVICE_SCRIPT", "Choice", "Options",
           "PlanSlot", "bundle_files", "write_target"]

INFER_CONFIG = "config_infer_primary.txt"
APP_CONFIG = "deepstream_app_config.txt"
ON_DEVICE_SCRIPT = "verify_on_device.py"


@dataclass(frozen=True)
class Choice:
    """What one target gets: its precision and batch."""

    target: Target
    precision: str
    batch: int


@dataclass(frozen=True)
class PlanSlot:
    """One compute capability's plan in the shared Triton plan model."""

    choice: Choice
    entry: triton.PlanEntry


@dataclass(frozen=True)
class Options:
    """Bundle-wide choices (the same for every target)."""

    name: str
    thresholds: dict[str, Any]
    source_size: tuple[int, int]
    source_uri: str
    plans: Sequence[PlanSlot]
    plan_batch: int
    fidelity: list[dict[str, Any]] | None
    source: dict[str, str]
    hmac_key: str | None = None
    sign_key: Path | None = None
    pad_fill: bool = True


def bundle_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` but the manifest, as sorted POSIX relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink()
                  and p.relative_to(folder).as_posix() != MANIFEST)


def _triton_section(plan_model: str, slot: PlanSlot, choice: Choice, onnx: Path, engine: str,
                    batch: int) -> str:
    """build_engine.sh lines that install the plan model once its plan exists."""
    plan = slot.entry.filename
    version = f"model_repository/{plan_model}/1"
    lines = ["", f"# Triton: install {plan_model} (its config and this target's plan); Triton",
             "# starts without it, and serves it once a version folder holds a plan.",
             f"mkdir -p {version}",
             f"cp triton/{plan_model}/config.pbtxt model_repository/{plan_model}/config.pbtxt"]
    if choice.batch >= batch:
        lines.append(f"cp {shlex.quote(engine)} {version}/{plan}")
    else:  # Triton needs every plan to take max_batch_size
        tplan = plan_engine(onnx, choice.target, choice.precision, batch=(1, batch, batch),
                            engine=onnx.with_name(f".{plan}.tmp"))
        cmd = " ".join(shlex.quote(c) for c in trtexec_command(tplan)[1:])
        lines += ['TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo '
                  '/usr/src/tensorrt/bin/trtexec)}"',
                  f"# the DeepStream engine stops at batch {choice.batch}; "
                  f"max_batch_size is {batch}",
                  f'"$TRTEXEC" {cmd}', f"mv .{plan}.tmp {version}/{plan}"]
    lines += [f"(cd {version} && sha256sum {plan} ../../../{onnx.name} > {plan}.sha256)",
              f'echo "Triton: {version}/{plan} (compute capability '
              f'{slot.entry.compute_capability})"', ""]
    return "\n".join(lines)


def _device_files(engine: str, plan_model: str | None, plan: str | None) -> list[DeviceFile]:
    from detforge.export.tensorrt import manifest_path

    lib = parser.CUSTOM_LIB
    files = [DeviceFile(path=engine, check="engine"),
             DeviceFile(path=manifest_path(Path(engine)).as_posix(), check="sidecar"),
             DeviceFile(path=f"{Path(engine).stem}.build.sh", check="sidecar"),
             DeviceFile(path=lib, check="library"),
             DeviceFile(path=f"{lib}.sha256", check="record")]
    if plan_model and plan:
        version = f"model_repository/{plan_model}/1"
        files += [DeviceFile(path=f"model_repository/{plan_model}/config.pbtxt", check="copy",
                             of=f"triton/{plan_model}/config.pbtxt"),
                  DeviceFile(path=f"{version}/{plan}", check="library"),
                  DeviceFile(path=f"{version}/{plan}.sha256", check="record")]
    return files


def write_target(folder: Path, choice: Choice, onnx_src: Path, meta: ModelMeta,
                 opts: Options, write_reference: Any) -> tuple[BundleManifest, list[str]]:
    """Fill ``folder`` for one target and write its manifest.

    Args:
        folder: An empty folder.
        choice: Target, precision and batch.
        onnx_src: The model for this precision.
        meta: Its metadata.
        opts: Bundle-wide options.
        write_reference: ``fn(folder, onnx_path, pipe_folder) -> notes``: writes
            ``reference/`` (workstation and device references) for the model in ``folder``.

    Returns:
        The manifest and notes for the user.
    """
    t, precision, batch = choice.target, choice.precision, choice.batch
    notes: list[str] = []
    onnx_name = "model_int8.onnx" if precision == "int8" else "model.onnx"
    onnx_path = folder / onnx_name
    shutil.copyfile(onnx_src, onnx_path)
    dynamic = onnx_input(onnx_path)[1][0] is None
    rng = parse_batch_range(f"1-{batch}") if dynamic else (batch, batch, batch)
    plan = plan_engine(onnx_path, t, precision, batch=(rng[0], rng[2], rng[2]))
    engine = plan.engine.name
    atomic_write_text(folder / "labels.txt", "".join(f"{c}\n" for c in meta.classes))
    parser.write_parser(folder, t)
    options = deepstream.InferOptions(onnx_name, engine, "labels.txt", batch, precision,
                                      opts.thresholds["conf"], opts.thresholds["iou"],
                                      opts.thresholds["max_det"])
    header = [f"nvinfer config for {t.title} ({t.sm}), {precision}, batch {batch}; written by "
              f"detforge from the model metadata. On the device, from this folder:",
              f"  make -C {parser.PARSER_DIR}   (the parser custom-lib-path names)",
              "  ./build_engine.sh   (nvinfer then loads the engine instead of building one;",
              "                       its own builder drops a Q/DQ INT8 model to FP16)"]
    atomic_write_text(folder / INFER_CONFIG, deepstream.render_ini(
        deepstream.nvinfer_config(meta, options), header=header))
    atomic_write_text(folder / APP_CONFIG, deepstream.render_ini(
        deepstream.app_config(meta, batch=batch, source_size=opts.source_size,
                              uri=opts.source_uri),
        header=[f"deepstream-app -c {APP_CONFIG}  (DeepStream {t.deepstream} on {t.title})",
                "Edit sources and sinks freely; `detforge deploy verify` checks this file's "
                "meaning (streammux, batch, paths), not its bytes."],
        notes={"source0": ["uri: file:///abs/path.mp4, file://relative.mp4 (to this folder) "
                           "or rtsp://...; an rtsp:// source needs type=4 and streammux "
                           "live-source=1."],
               "streammux": [f"width/height = the source resolution ({opts.source_size[0]}x"
                             f"{opts.source_size[1]}, --source-size): no stretch before "
                             f"nvinfer; another source size is padded, never stretched."],
               "sink0": ["type=1 is a fake sink (headless, FPS in the log); 2 = display, "
                         "3 = file."]}))
    repo = folder / "model_repository"
    shutil.copyfile(onnx_path, _mkparent(repo / opts.name / "1" / "model.onnx"))
    atomic_write_text(repo / opts.name / "config.pbtxt", triton.onnx_config(
        opts.name, onnx_path, max_batch=batch, precision=precision))
    script = build_script(plan)
    plan_model = mine = None
    if opts.plans:
        plan_model = f"{opts.name}_trt"
        atomic_write_text(folder / "triton" / plan_model / "config.pbtxt", triton.plan_config(
            plan_model, onnx_path, [s.entry for s in opts.plans], max_batch=opts.plan_batch))
        slot = next((s for s in opts.plans if s.choice.target.name == t.name), None)
        if slot is not None:
            mine = slot.entry.filename
            script += _triton_section(plan_model, slot, choice, onnx_path, engine,
                                      opts.plan_batch)
        else:
            notes.append(f"Triton plan model: sm {t.sm} is served by another target's plan")
    atomic_write_text(folder / "build_engine.sh", script)
    (folder / "build_engine.sh").chmod(0o755)
    shutil.copyfile(Path(__file__).with_name(ON_DEVICE_SCRIPT), folder / ON_DEVICE_SCRIPT)
    (folder / ON_DEVICE_SCRIPT).chmod(0o755)
    notes += write_reference(folder, onnx_path)
    warning = memory_warning(t, onnx_path.stat().st_size, batch)
    if warning:
        notes.append(warning)
    onnx_sha = sha256_file(onnx_path)
    manifest = BundleManifest(
        format="detforge-bundle/2",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        target={"name": t.name, "title": t.title, "sm": t.sm,
                "compute_capability": "{}.{}".format(*t.compute_capability),
                "precision": precision, "batch": batch, "tensorrt": t.tensorrt,
                "deepstream": t.deepstream, "jetpack": t.jetpack,
                "expected_ips": t.expected_ips},
        model={"file": onnx_name, "sha256": onnx_sha, "meta": json.loads(meta.to_json()),
               "pad_fill": opts.pad_fill},
        engine={"file": engine, "build_script": "build_engine.sh",
                "command": trtexec_command(plan), "batch": plan.batch},
        triton={"name": opts.name, "plan_model": plan_model,
                "plan_config": f"triton/{plan_model}/config.pbtxt" if plan_model else None},
        parser={"source_dir": parser.PARSER_DIR, "library": parser.CUSTOM_LIB,
                "function": parser.FUNCTION},
        thresholds=opts.thresholds,
        source={"size": opts.source_size, "uri": opts.source_uri},
        lineage={"dataset_version": meta.dataset_version, "run_id": meta.run_id,
                 "metrics": meta.metrics, "source": opts.source, "onnx_sha256": onnx_sha,
                 "engine": engine},
        fidelity=opts.fidelity,
        device_files=_device_files(engine, plan_model, mine),
        editable=[APP_CONFIG],
        notes=notes,
        files={rel: sha256_file(folder / rel) for rel in bundle_files(folder)})
    if opts.hmac_key is not None or opts.sign_key is not None:
        manifest = sign_manifest(manifest, hmac_key=opts.hmac_key, private_key=opts.sign_key)
    write_manifest(folder, manifest)
    return manifest, notes


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
