"""Deployment bundles: one self-checking folder per target device.

``DIR/<target>/`` holds everything a device needs and the proof of what it should see::

    model.onnx | model_int8.onnx   the ONNX in the deepstream (YOLO) or rtdetr layout (INT8: Q/DQ)
    labels.txt                     class names, one per line
    config_infer_primary.txt       nvinfer config, from the metadata
    deepstream_app_config.txt      `deepstream-app -c deepstream_app_config.txt`
    nvdsinfer_custom_impl_detforge/ the parser nvinfer loads: C++ source + Makefile
    model_repository/              Triton: <name>/config.pbtxt + 1/model.onnx (TensorRT
                                   accelerator); build_engine.sh adds <name>_trt/ with its plan
    triton/<name>_trt/config.pbtxt the plan model's config (several targets), installed later
    build_engine.sh                trtexec build of model_b{B}_gpu0_{precision}.engine
    verify_on_device.py            the engine check for devices without detforge (Python 3.6)
    reference/                     images + detections.json from the workstation, and
                                   device/: network inputs and expected objects
    monitor/                       Prometheus config and alert rules, Grafana dashboard,
                                   docker-compose, and (with --data) reference.json for
                                   `serve --reference` (detforge.monitor.bundle)
    manifest.json                  sha256 of every file, target, lineage, fidelity, signature

Decisions are in ``docs/decisions/0004-deployment-bundles.md``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detforge.core.atomic import publish_modes, stage_dir
from detforge.core.errors import ConfigError
from detforge.deploy import deepstream, triton
from detforge.deploy.device_reference import References
from detforge.deploy.manifest import BUNDLE_FORMAT, MANIFEST, env_signing_key
from detforge.deploy.reference import copy_images, synthetic_images
from detforge.deploy.target_folder import Choice, Options, PlanSlot, bundle_files, write_target
from detforge.deploy.targets import Target, get_target, resolve_precision
from detforge.export.engine_check import require_buildable
from detforge.export.engine_plan import engine_file_name, onnx_input, sha256_file
from detforge.monitor.bundle import MonitorFiles
from detforge.runtime.metadata import ModelMeta

if TYPE_CHECKING:
    from detforge.data.dataset import Dataset

__all__ = ["BUNDLE_FORMAT", "BundleResult", "TargetBundle", "bundle_model", "bundle_files"]


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


def _choose(names: Sequence[str], precision: str, batch: int | None, has_data: bool,
            notes: list[str]) -> list[Choice]:
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
        choices.append(Choice(t, p, batch or t.batch))
    return choices


def _float_model(model: Path, work: Path, imgsz: tuple[int, int] | None,
                 targets: Sequence[Target]) -> tuple[Path, ModelMeta]:
    """The float ONNX in a layout the shipped parser reads (``raw`` converted to
    ``deepstream``, Ultralytics' own RT-DETR to ``rtdetr``), with its metadata; a .pt is
    exported at the opset every target's TensorRT imports (at its trained input, or
    640x640, unless ``imgsz``)."""
    import onnx

    from detforge.export.graph_passes import append_rtdetr_pixels
    from detforge.export.onnx_export import append_deepstream_decode, export_onnx
    from detforge.runtime.metadata import embed_meta, meta_from_props

    out = work / "model.onnx"
    if model.suffix == ".pt":
        export_onnx(model, out, imgsz=imgsz, batch=None, layout="deepstream", targets=targets)
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
    if meta.layout == "rtdetr-normalized":
        append_rtdetr_pixels(graph, meta.imgsz)
        meta = meta.model_copy(update={"layout": "rtdetr"})
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
        if fmt not in (BUNDLE_FORMAT, "detforge-bundle/1"):
            raise ConfigError(f"{final} exists and is not a detforge bundle; choose another "
                              f"--out or remove it")
        shutil.rmtree(final)
    partial.rename(final)


def bundle_model(model: str | Path, *, targets: Sequence[str], out: str | Path,
                 precision: str = "auto", batch: int | None = None, data: str | Path | None = None,
                 imgsz: tuple[int, int] | None = None, conf: float = 0.25, iou: float = 0.45,
                 max_det: int = 300, reference_images: int = 4, calib_images: int = 32,
                 name: str | None = None,
                 source_size: tuple[int, int] = deepstream.DEFAULT_SOURCE_SIZE,
                 source_uri: str = deepstream.SAMPLE_URI, pad_fill: bool = True,
                 sign: bool = False,
                 sign_key: str | Path | None = None,
                 echo: Callable[[str], None] | None = None) -> BundleResult:
    """Write a deployment bundle for each target.

    Args:
        model: Ultralytics ``.pt`` weights (YOLO or RT-DETR, exported here) or a float
            ``.onnx`` with metadata in the ``raw``, ``deepstream``, ``end2end``, ``rtdetr`` or
            ``rtdetr-normalized`` layout.
        targets: Target names (see :data:`~detforge.deploy.targets.TARGETS`).
        out: Output folder; each target gets ``out/<target>/``.
        precision: ``auto`` (each target's recommended one), ``fp32``, ``fp16`` or ``int8``.
            ``auto`` falls back to FP16 with a note when INT8 lacks ``data``.
        batch: Engine and DeepStream batch size (default: each target's recommended).
        data: Dataset for INT8 calibration (train split) and reference images (val split).
        imgsz: Input (height, width) when exporting a ``.pt`` (default: the input detforge
            trained it at, else 640x640).
        conf: Score threshold of the configs and the reference detections.
        iou: NMS IoU threshold, likewise.
        max_det: Most detections per image (nvinfer ``topk``).
        reference_images: Images in ``reference/``.
        calib_images: INT8 calibration images.
        name: Triton model name (default: the model file's stem).
        source_size: (width, height) of the video the DeepStream app config is set for.
        source_uri: The app config's source (``file://`` or ``rtsp://``).
        pad_fill: Put :mod:`~detforge.deploy.pad_fill` in front of the bundled model, so
            nvinfer's black letterbox bands reach the network as the training grey.
        sign: Sign each manifest with HMAC-SHA256, key from ``$DETFORGE_SIGNING_KEY``.
        sign_key: Sign each manifest with this Ed25519 private key (PEM) instead.
        echo: Where progress lines go (default: nowhere).

    Returns:
        The folders written and notes.

    Raises:
        ConfigError: Unknown target or precision, INT8 asked without ``data``, a non-float
            model, an output folder that is not an earlier bundle, or signing asked without
            a key.
        TargetCapabilityError: A target cannot run the requested precision (INT8 on
            Jetson Nano / TX2) or the model (RT-DETR on TensorRT 8.2).
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
    hmac_key = _signing(sign, sign_key)
    deepstream.app_config(ModelMeta(classes=("x",)), batch=1, source_size=source_size,
                          uri=source_uri)  # refuse a bad source before any work
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
        if pad_fill:
            for path in dict.fromkeys(models.values()):
                _add_pad_fill(path, meta)
        images = _reference_images(work / "reference", dataset, reference_images)
        thresholds = {"conf": conf, "iou": iou, "max_det": max_det}
        fixed = onnx_input(float_onnx)[1][0]
        if fixed is not None:
            choices = [Choice(c.target, c.precision, fixed) for c in choices]
            if batch not in (None, fixed):
                result.notes.append(f"the model's batch is fixed at {fixed}; bundled for batch "
                                    f"{fixed}, not {batch} (re-export with a dynamic batch)")
        for c in choices:  # refuse before writing anything a target's TensorRT cannot build
            require_buildable(models[c.precision], c.target, c.precision)
        plans = _plan_slots(choices) if len(choices) > 1 else []
        opts = Options(name=name, thresholds=thresholds, source_size=source_size,
                       source_uri=source_uri, plans=plans,
                       plan_batch=max(c.batch for c in choices), fidelity=_fidelity(model),
                       source={"path": str(model), "sha256": sha256_file(model)},
                       hmac_key=hmac_key, sign_key=Path(sign_key) if sign_key else None,
                       pad_fill=pad_fill)
        refs = MonitorFiles(References(images, thresholds, work, source_size), data=data,
                            conf=conf, iou=iou)
        for choice in tqdm(choices, desc="bundles", unit="target", disable=None):
            say(f"{choice.target.name}: {choice.precision}, batch {choice.batch}")
            partial = stage_dir(out / choice.target.name)
            try:
                manifest, notes = write_target(partial, choice, models[choice.precision], meta,
                                               opts, refs)
                publish_modes(partial)
                final = out / choice.target.name
                _replace_folder(partial, final)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            result.bundles.append(TargetBundle(choice.target.name, final, choice.precision,
                                               choice.batch, manifest.model.file,
                                               manifest.engine.file, tuple(notes)))
    return result


def _add_pad_fill(path: Path, meta: ModelMeta) -> None:
    import onnx

    from detforge.deploy.pad_fill import add_pad_fill

    model = add_pad_fill(onnx.load(str(path)), meta)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def _signing(sign: bool, sign_key: str | Path | None) -> str | None:
    """The HMAC key when ``sign``; refuses both, or ``sign`` without the variable."""
    if sign and sign_key:
        raise ConfigError("give --sign (HMAC, $DETFORGE_SIGNING_KEY) or --sign-key FILE "
                          "(Ed25519), not both")
    if sign_key and not Path(sign_key).is_file():
        raise ConfigError(f"--sign-key {sign_key}: no such file")
    if not sign:
        return None
    key = env_signing_key()
    if not key:
        raise ConfigError("--sign needs the shared secret in $DETFORGE_SIGNING_KEY; set it "
                          "(the same value verifies the bundle) or use --sign-key FILE")
    return key


def _plan_slots(choices: Sequence[Choice]) -> list[PlanSlot]:
    """One plan per compute capability (the first target listed wins a shared one)."""
    seen: dict[str, PlanSlot] = {}
    for c in choices:
        cc = "{}.{}".format(*c.target.compute_capability)
        engine = Path(engine_file_name(c.batch, c.precision)).stem
        seen.setdefault(cc, PlanSlot(c, triton.PlanEntry(cc, f"{c.target.name}_{engine}.plan",
                                                         c.target.name)))
    return list(seen.values())
