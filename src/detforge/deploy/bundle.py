"""Deployment bundles: one self-checking folder per target device.

``DIR/<target>/`` holds everything a device needs and the proof of what it should see::

    model.onnx | model_int8.onnx   the ONNX in DeepStream-Yolo's layout (INT8: Q/DQ)
    labels.txt                     class names, one per line
    config_infer_primary.txt       nvinfer config (DeepStream-Yolo keys), from the metadata
    deepstream_app_config.txt      `deepstream-app -c deepstream_app_config.txt`
    model_repository/              Triton: <name>/config.pbtxt + 1/model.onnx
                                   (+ <name>_trt/ with cc_model_filenames for several targets)
    build_engine.sh                trtexec build of model_b{B}_gpu0_{precision}.engine
    reference/                     a few images + detections.json from the workstation
    manifest.json                  sha256 of every file, target, lineage, fidelity hops

Decisions are in ``docs/decisions/0004-deployment-bundles.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detforge.core.atomic import atomic_write_json, atomic_write_text
from detforge.core.errors import ConfigError
from detforge.deploy import deepstream, triton
from detforge.deploy.reference import copy_images, read_rgb, synthetic_images, write_reference
from detforge.deploy.targets import Target, get_target, memory_warning, resolve_precision
from detforge.export.engine_check import require_buildable
from detforge.export.engine_plan import (
    build_script,
    engine_file_name,
    onnx_input,
    parse_batch_range,
    plan_engine,
    sha256_file,
    trtexec_command,
)
from detforge.runtime.metadata import ModelMeta

if TYPE_CHECKING:
    from detforge.data.dataset import Dataset

__all__ = ["BUNDLE_FORMAT", "BundleResult", "TargetBundle", "bundle_model", "bundle_files"]

BUNDLE_FORMAT = "detforge-bundle/1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TargetBundle:
    """One target's folder and what went into it."""

    target: str
    folder: Path
    precision: str
    batch: int
    onnx: str
    engine: str
    notes: tuple[str, ...] = ()


@dataclass
class BundleResult:
    """Every target folder written, and notes for the user."""

    bundles: list[TargetBundle]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Choice:
    target: Target
    precision: str
    batch: int


def _copy(src: Path, dst: Path) -> None:
    """A real copy, never a hard link: editing one bundle file must not change another
    target's, nor the dataset an image came from."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def bundle_files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the manifest, as sorted POSIX relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)


def _choose(names: Sequence[str], precision: str, batch: int | None, has_data: bool,
            notes: list[str]) -> list[_Choice]:
    """Resolve precision and batch per target before any work is done."""
    if not names:
        raise ConfigError("no --target given; pass one or more, e.g. --target orin-nano "
                          "(see `detforge targets`)")
    if precision not in ("auto", "fp32", "fp16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}; choose auto, fp32, fp16 or int8")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    resolved = [(get_target(n), n) for n in dict.fromkeys(names)]
    resolved_p = [(t, n, resolve_precision(t, precision)) for t, n in resolved]  # all refusals
    choices = []                                                                 # come first
    for t, n, p in resolved_p:
        if p == "int8" and not has_data:
            if precision == "int8":
                raise ConfigError(f"INT8 for {n} needs calibration images: pass --data DS "
                                  f"(a dataset with images), or choose --precision fp16")
            notes.append(f"{n}: INT8 recommended, but no --data for calibration; bundled "
                         f"FP16 instead (pass --data DS for INT8)")
            p = "fp16"
        choices.append(_Choice(t, p, batch or t.batch))
    return choices


def _float_model(model: Path, work: Path, imgsz: tuple[int, int] | None,
                 targets: Sequence[Target]) -> tuple[Path, ModelMeta]:
    """The float ONNX in the DeepStream layout (``raw`` converted), with its metadata; a .pt
    is exported at the opset every target's TensorRT imports."""
    import onnx

    from detforge.export.onnx_export import append_deepstream_decode, export_onnx
    from detforge.runtime.metadata import embed_meta, meta_from_props

    out = work / "model.onnx"
    if model.suffix == ".pt":
        export_onnx(model, out, imgsz=imgsz or (640, 640), batch=None, layout="deepstream",
                    targets=targets)
        graph = onnx.load(str(out))
    elif model.suffix == ".onnx":
        if imgsz is not None:
            raise ConfigError("--imgsz applies to .pt models only; an ONNX file keeps its size")
        graph = onnx.load(str(model))
    else:
        raise ConfigError(f"{model}: bundle a .pt (Ultralytics) or .onnx model, not "
                          f"{model.suffix or 'a file without suffix'}")
    meta = meta_from_props({p.key: p.value for p in graph.metadata_props}, source=model)
    if meta.precision != "fp32":
        raise ConfigError(f"{model}: a {meta.precision} model; bundle the float ONNX, and "
                          f"detforge converts it per target (--precision int8 --data DS)")
    if meta.layout == "rtdetr":
        raise ConfigError(f"{model}: RT-DETR layout has no DeepStream-Yolo parser here; "
                          f"bundle a YOLO raw, deepstream or end2end export")
    if meta.layout == "raw":
        append_deepstream_decode(graph, len(meta.classes))
        meta = meta.model_copy(update={"layout": "deepstream"})
    embed_meta(graph, meta)
    onnx.checker.check_model(graph)
    out.write_bytes(graph.SerializeToString())
    return out, meta


def _calibration(dataset: Dataset, meta: ModelMeta, n: int) -> list[Any]:
    from detforge.export.calibration import calibration_files
    from detforge.export.parity import load_inputs

    files = calibration_files(dataset, n, split="train")
    return [b[None] for b in load_inputs(files, meta.imgsz)]


def _reference_images(folder: Path, dataset: Dataset | None, n: int) -> list[Path]:
    if dataset is None:
        return synthetic_images(folder, n)
    from detforge.export.calibration import calibration_files

    return copy_images(calibration_files(dataset, n, split="val"), folder)


def _fidelity(model: Path) -> list[dict[str, Any]] | None:
    record = model.parent / "fidelity.json"
    if not record.is_file():
        return None
    try:
        hops: list[dict[str, Any]] = json.loads(record.read_text(encoding="utf-8"))["hops"]
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{record}: unreadable fidelity record ({exc}); fix or remove it") \
            from exc
    return hops


def _replace_folder(partial: Path, final: Path) -> None:
    """Move the finished folder into place, replacing an earlier bundle (never other data)."""
    if final.exists():
        manifest = final / MANIFEST
        try:
            fmt = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != BUNDLE_FORMAT:
            raise ConfigError(f"{final} exists and is not a detforge bundle; choose another "
                              f"--out or remove it")
        shutil.rmtree(final)
    partial.rename(final)


def bundle_model(model: str | Path, *, targets: Sequence[str], out: str | Path,
                 precision: str = "auto", batch: int | None = None, data: str | Path | None = None,
                 imgsz: tuple[int, int] | None = None, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300, reference_images: int = 4, calib_images: int = 32,
                 name: str | None = None,
                 echo: Callable[[str], None] | None = None) -> BundleResult:
    """Write a deployment bundle for each target.

    Args:
        model: Ultralytics ``.pt`` weights (exported here) or a float ``.onnx`` with
            metadata in the ``raw``, ``deepstream`` or ``end2end`` layout.
        targets: Target names (see :data:`~detforge.deploy.targets.TARGETS`).
        out: Output folder; each target gets ``out/<target>/``.
        precision: ``auto`` (each target's recommended one), ``fp32``, ``fp16`` or ``int8``.
            ``auto`` falls back to FP16 with a note when INT8 lacks ``data``.
        batch: Engine and DeepStream batch size (default: each target's recommended).
        data: Dataset for INT8 calibration (train split) and reference images (val split).
        imgsz: Input (height, width) when exporting a ``.pt`` (default 640x640).
        conf: Score threshold of the configs and the reference detections.
        iou: NMS IoU threshold, likewise.
        max_det: Most detections per image (nvinfer ``topk``).
        reference_images: Images in ``reference/``.
        calib_images: INT8 calibration images.
        name: Triton model name (default: the model file's stem).
        echo: Where progress lines go (default: nowhere).

    Returns:
        The folders written and notes.

    Raises:
        ConfigError: Unknown target or precision, INT8 asked without ``data``, a non-float or
            RT-DETR model, or an output folder that is not an earlier bundle.
        TargetCapabilityError: A target cannot run the requested precision (INT8 on
            Jetson Nano / TX2).
        ExportError: The model cannot be exported, quantised or serve the batch.

    Example:
        >>> bundle_model("best.pt", targets=["orin-nano", "t4"], out="bundles",
        ...              data="datasets/ppe")  # doctest: +SKIP
    """
    from tqdm import tqdm

    model, out = Path(model), Path(out)
    say = echo or (lambda _line: None)
    if not model.is_file():
        raise ConfigError(f"{model}: no such model file; pass a .pt or .onnx")
    if data is not None and not Path(data).exists():
        raise ConfigError(f"--data {data}: no such dataset")
    if not 0 <= conf <= 1 or not 0 <= iou <= 1 or max_det < 1 or reference_images < 1:
        raise ConfigError("conf and iou must lie in [0, 1], max_det and reference_images >= 1")
    result = BundleResult([])
    choices = _choose(targets, precision, batch, data is not None, result.notes)
    name = name or "".join(c if c.isalnum() or c in "_-" else "_" for c in model.stem)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".detforge-bundle-", dir=out) as tmp:
        work = Path(tmp)
        say(f"preparing {model.name}")
        float_onnx, meta = _float_model(model, work, imgsz, [c.target for c in choices])
        models = {"fp32": float_onnx, "fp16": float_onnx}
        dataset = None
        if data is not None:
            from detforge.data.formats import read_dataset

            dataset = read_dataset(data)
        if any(c.precision == "int8" for c in choices) and dataset is not None:
            from detforge.export.quantize import quantize_int8

            say(f"quantising to INT8 on {calib_images} calibration images")
            models["int8"] = work / "model_int8.onnx"
            quantize_int8(float_onnx, models["int8"], _calibration(dataset, meta, calib_images),
                          flavour="tensorrt")
        images = _reference_images(work / "reference", dataset, reference_images)
        thresholds = {"conf": conf, "iou": iou, "max_det": max_det}
        detections: dict[str, Path] = {}
        fixed = onnx_input(float_onnx)[1][0]
        if fixed is not None:
            choices = [_Choice(c.target, c.precision, fixed) for c in choices]
            if batch not in (None, fixed):
                result.notes.append(f"the model's batch is fixed at {fixed}; bundled for batch "
                                    f"{fixed}, not {batch} (re-export with a dynamic batch)")
        for c in choices:  # refuse before writing anything a target's TensorRT cannot build
            require_buildable(models[c.precision], c.target, c.precision)
        plans = _plan_entries(choices) if len(choices) > 1 else []
        fidelity = _fidelity(model)
        source = {"path": str(model), "sha256": sha256_file(model)}
        for choice in tqdm(choices, desc="bundles", unit="target", disable=None):
            say(f"{choice.target.name}: {choice.precision}, batch {choice.batch}")
            tb = _write_target(choice, out, work, models[choice.precision], meta, images,
                               detections, thresholds, name, plans, fidelity, source)
            result.bundles.append(tb)
    return result


def _plan_entries(choices: Sequence[_Choice]) -> list[tuple[_Choice, triton.PlanEntry]]:
    """One plan per compute capability (the first target listed wins a shared one)."""
    seen: dict[str, tuple[_Choice, triton.PlanEntry]] = {}
    for c in choices:
        cc = "{}.{}".format(*c.target.compute_capability)
        engine = Path(engine_file_name(c.batch, c.precision)).stem
        seen.setdefault(cc, (c, triton.PlanEntry(cc, f"{c.target.name}_{engine}.plan",
                                                 c.target.name)))
    return list(seen.values())


def _reference_run(onnx_path: Path, images: Sequence[Path], thresholds: dict[str, Any],
                   cache: dict[str, Path], work: Path) -> Path:
    """detections.json of ``onnx_path`` on ``images`` (computed once per distinct model)."""
    from detforge.runtime import load_model

    key = sha256_file(onnx_path)
    if key not in cache:
        with load_model(onnx_path, device="cpu", conf=thresholds["conf"],
                        iou=thresholds["iou"], max_det=thresholds["max_det"]) as m:
            dets = [m.predict([read_rgb(p)])[0] for p in images]
        folder = work / f"ref-{key[:12]}"
        folder.mkdir()
        cache[key] = write_reference(folder, images, dets, model=onnx_path.name,
                                     thresholds=thresholds)
    return cache[key]


def _write_target(choice: _Choice, out: Path, work: Path, onnx_src: Path, meta: ModelMeta,
                  images: Sequence[Path], ref_cache: dict[str, Path],
                  thresholds: dict[str, Any], name: str,
                  plans: Sequence[tuple[_Choice, triton.PlanEntry]],
                  fidelity: list[dict[str, Any]] | None, source: dict[str, str]) -> TargetBundle:
    t, precision = choice.target, choice.precision
    notes: list[str] = []
    partial = Path(tempfile.mkdtemp(prefix=f".{t.name}.", dir=out))
    try:
        onnx_name = "model_int8.onnx" if precision == "int8" else "model.onnx"
        onnx_path = partial / onnx_name
        _copy(onnx_src, onnx_path)
        batch = choice.batch
        dynamic = onnx_input(onnx_path)[1][0] is None
        rng = parse_batch_range(f"1-{batch}") if dynamic else (batch, batch, batch)
        plan = plan_engine(onnx_path, t, precision, batch=rng)
        engine = plan.engine.name
        atomic_write_text(partial / "labels.txt", "".join(f"{c}\n" for c in meta.classes))
        options = deepstream.InferOptions(onnx_name, engine, "labels.txt", batch, precision,
                                          thresholds["conf"], thresholds["iou"],
                                          thresholds["max_det"])
        header = [f"nvinfer config for {t.title} ({t.sm}), {precision}, batch {batch}; "
                  f"written by detforge from the model metadata.",
                  "Run ./build_engine.sh on the device first: nvinfer then loads the engine "
                  "instead of building one",
                  "(its own builder drops a Q/DQ INT8 model to FP16). Build the parser with "
                  "DeepStream-Yolo's nvdsinfer_custom_impl_Yolo."]
        atomic_write_text(partial / "config_infer_primary.txt", deepstream.render_ini(
            deepstream.nvinfer_config(meta, options), header=header))
        atomic_write_text(partial / "deepstream_app_config.txt", deepstream.render_ini(
            deepstream.app_config(meta, batch=batch),
            header=["deepstream-app -c deepstream_app_config.txt  (DeepStream "
                    f"{t.deepstream} on {t.title})"],
            notes={"source0": ["Set uri to your video (file:///abs/path.mp4) or an rtsp:// URI;"
                               " type=3 is a URI source. The default is DeepStream's sample."],
                   "sink0": ["type=1 is a fake sink (headless, FPS in the log); 2 = display, "
                             "3 = file."]}))
        repo = partial / "model_repository"
        _copy(onnx_path, repo / name / "1" / "model.onnx")
        atomic_write_text(repo / name / "config.pbtxt",
                          triton.onnx_config(name, onnx_path, max_batch=batch))
        script = build_script(plan)
        allowed = [engine, f"{engine}.json", f"{Path(engine).stem}.build.sh",
                   f"{Path(deepstream.YOLO_CUSTOM_LIB).parent}/*"]  # the parser, built there
        if plans:
            entries = [e for _, e in plans]
            trt_name = f"{name}_trt"
            atomic_write_text(repo / trt_name / "config.pbtxt", triton.plan_config(
                trt_name, onnx_path, entries, max_batch=min(c.batch for c, _ in plans)))
            allowed += [f"model_repository/{trt_name}/1/{e.filename}" for e in entries]
            mine = next((e for c, e in plans if c.target.name == t.name), None)
            if mine is not None:
                script += (f"# Triton: copy the plan where {trt_name}/config.pbtxt expects it\n"
                           f"mkdir -p model_repository/{trt_name}/1\n"
                           f"cp {engine} model_repository/{trt_name}/1/{mine.filename}\n"
                           f"echo \"copied to model_repository/{trt_name}/1/{mine.filename}\"\n")
            else:
                notes.append(f"Triton plan config: sm {t.sm} is served by another target's plan")
        atomic_write_text(partial / "build_engine.sh", script)
        (partial / "build_engine.sh").chmod(0o755)
        ref_json = _reference_run(onnx_path, images, thresholds, ref_cache, work)
        for img in images:
            _copy(img, partial / "reference" / img.name)
        _copy(ref_json, partial / "reference" / ref_json.name)
        warning = memory_warning(t, onnx_path.stat().st_size, batch)
        if warning:
            notes.append(warning)
        onnx_sha = sha256_file(onnx_path)
        manifest = {
            "format": BUNDLE_FORMAT,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "target": {"name": t.name, "title": t.title, "sm": t.sm,
                       "compute_capability": "{}.{}".format(*t.compute_capability),
                       "precision": precision, "batch": batch, "tensorrt": t.tensorrt,
                       "deepstream": t.deepstream, "jetpack": t.jetpack,
                       "expected_ips": list(t.expected_ips)},
            "model": {"file": onnx_name, "sha256": onnx_sha, "meta": json.loads(meta.to_json())},
            "engine": {"file": engine, "build_script": "build_engine.sh",
                       "command": trtexec_command(plan),
                       "batch": list(plan.batch)},
            "triton": {"name": name, "plan_model": f"{name}_trt" if plans else None},
            "thresholds": thresholds,
            "lineage": {"dataset_version": meta.dataset_version, "run_id": meta.run_id,
                        "metrics": meta.metrics, "source": source, "onnx_sha256": onnx_sha,
                        "engine": engine},
            "fidelity": fidelity,
            "allowed_extra": allowed,
            "notes": notes,
            "files": {rel: sha256_file(partial / rel) for rel in bundle_files(partial)},
        }
        atomic_write_json(partial / MANIFEST, manifest)
        final = out / t.name
        _replace_folder(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return TargetBundle(t.name, final, precision, batch, onnx_name, engine, tuple(notes))
