"""Verification of a deployment bundle: what it holds, and what the device will detect.

``verify_bundle(DIR/<target>)``:

1. reads manifest.json (one line naming the field when malformed), checks its signature
   and every file it trusts (:mod:`.integrity`): listed files by sha256, files the device
   built (engine, parser library, Triton plan) by their sidecars and build records,
   symlinks reported;
2. checks the DeepStream configs against nvinfer's and deepstream-app's rules
   (:mod:`.ds_rules`), as they are now (a user may edit the app config);
3. loads the model: the engine build_engine.sh made when it is usable here (never rebuilt
   over: a missing engine is built only on the target), else the ONNX;
4. runs the reference images with detforge's own preprocessing and compares them with the
   workstation's detections (same class, IoU >= 0.9);
5. runs them through the emulated DeepStream pipeline (:mod:`.emulation`: streammux,
   nvinfer scaling with black symmetric padding, net-scale-factor/offsets, the shipped
   parser, cluster-mode NMS and topk, all read from the bundle's configs) and reports the
   agreement with the workstation after each stage; the last stage gates;
6. measures images/s; speed only gates on the target itself.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detforge.core.errors import (
    BackendError,
    ConfigError,
    EngineMismatchError,
    MissingExtraError,
)
from detforge.deploy.manifest import BundleManifest, ManifestError, env_signing_key, read_manifest
from detforge.deploy.reference import compare_detections, load_reference, read_rgb

__all__ = ["VERIFY_BACKENDS", "Check", "VerifyReport", "device_compute_capability",
           "verify_bundle"]

VERIFY_BACKENDS = ("auto", "onnxruntime", "tensorrt")

_TOLERANCE = {"fp32": 0.02, "fp16": 0.05, "int8": 0.1}
"""Default largest score difference per precision (the reference ran the ONNX on a CPU)."""


@dataclass(frozen=True)
class Check:
    """One verification step: its name, outcome and the reason in words."""

    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_bundle`.

    Attributes:
        bundle: The bundle folder.
        target: Target name from the manifest.
        checks: Every check, in order.
        model: The model file run (None when nothing could run).
        backend: Backend and device used, e.g. ``onnxruntime/cpu``.
        ips: Measured images/s, or None.
        expected_ips: The target's expected band.
        on_target: True when this machine is the target (speed gates only then).
        stages: Agreement of the emulated DeepStream pipeline with the workstation after
            each stage (``stage``, ``agreement``, ``matched``, ``missing``, ``extra``).
        notes: Information that does not fail the check.
    """

    bundle: Path
    target: str
    checks: list[Check] = field(default_factory=list)
    model: str | None = None
    backend: str | None = None
    ips: float | None = None
    expected_ips: tuple[float, float] | None = None
    on_target: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        """What failed, one line per failed check."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(bundle=str(self.bundle), passed=self.passed, reasons=self.reasons)
        return d


def device_compute_capability() -> str | None:
    """Compute capability of GPU 0 (``"8.7"``), or None without a CUDA GPU.

    Asks ``nvidia-smi`` first; where it is missing (Jetson), torch when ONNX Runtime or torch
    can see a GPU. Never imports torch on a machine without one.
    """
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True)
            first = out.stdout.strip().splitlines()
            if first and first[0].strip():
                return first[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    import importlib.util

    if Path("/etc/nv_tegra_release").is_file() and importlib.util.find_spec("torch"):
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"{major}.{minor}"
    return None


def _build_engine(folder: Path, manifest: BundleManifest) -> tuple[Path | None, str]:
    """Build the bundle's missing engine here with TensorRT (on the target only); (engine,
    why not)."""
    import importlib.util

    from detforge.core.errors import DetforgeError
    from detforge.deploy.targets import get_target
    from detforge.export.engine import build_or_script

    if importlib.util.find_spec("tensorrt") is None:
        return None, "TensorRT is not installed here"
    lo, _, hi = manifest.engine.batch
    try:
        res = build_or_script(folder / manifest.model.file, get_target(manifest.target.name),
                              manifest.target.precision, batch=f"{lo}-{hi}",
                              engine=folder / manifest.engine.file)
    except DetforgeError as exc:
        return None, f"engine build failed ({exc})"
    return (res.plan.engine, "") if res.manifest is not None else (None, str(res.reason))


def _load(folder: Path, manifest: BundleManifest, backend: str, report: VerifyReport,
          thresholds: dict[str, Any], build: bool) -> Any:
    """The engine build_engine.sh made when it is usable here, else the ONNX; None (with a
    failed check) when nothing runs. An engine that exists is never rebuilt: one made for
    DeepStream stays as it is; only a missing engine is built, on the target."""
    from detforge.runtime import load_model

    kw: dict[str, Any] = {"conf": float(thresholds["conf"]), "iou": float(thresholds["iou"]),
                          "max_det": int(thresholds["max_det"])}
    engine = folder / manifest.engine.file
    if backend in ("auto", "tensorrt"):
        why = f"no engine {engine.name} (run ./build_engine.sh on the target)"
        if not engine.is_file() and build and report.on_target:
            built, reason = _build_engine(folder, manifest)
            if built is None:
                why = f"{why}; {reason}"
            else:
                report.notes.append(f"built {engine.name} here with TensorRT")
        if engine.is_file():
            try:
                model = load_model(engine, device="cuda", **kw)
                report.model = engine.name
                return model
            except (EngineMismatchError, MissingExtraError, BackendError, ConfigError) as exc:
                why = f"engine {engine.name} not usable here ({exc})"
        if backend == "tensorrt":
            report.checks.append(Check("model", False, why))
            return None
        report.notes.append(f"{why}; running the ONNX instead")
    onnx = folder / manifest.model.file
    if not onnx.is_file():
        report.checks.append(Check("model", False, f"{onnx.name} is missing; rebuild the bundle"))
        return None
    try:
        model = load_model(onnx, device="auto", **kw)
    except (BackendError, ConfigError, MissingExtraError) as exc:
        report.checks.append(Check("model", False, f"{onnx.name} does not load ({exc})"))
        return None
    report.model = onnx.name
    return model


def _speed(model: Any, images: list[Any], batch: int, seconds: float) -> float:
    """End-to-end images/s (preprocess, inference, decode) at ``batch``, after a warm-up."""
    fixed = model.backend.input_spec.fixed_batch
    batch = fixed or batch
    chunk = (images * (batch // len(images) + 1))[:batch]
    model.predict(chunk)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 2:
        model.predict(chunk)
        n += 1
    return n * len(chunk) / elapsed


def _integrity_and_configs(folder: Path, manifest: BundleManifest, raw: dict[str, Any],
                           report: VerifyReport, hmac_key: str | None,
                           public_key: Path | None) -> Any:
    """Signature, files and DeepStream rules; the configs' pipeline (None if unreadable)."""
    from pydantic import ValidationError

    from detforge.deploy.ds_rules import check_configs
    from detforge.deploy.integrity import check_integrity
    from detforge.runtime.metadata import ModelMeta

    findings, notes = check_integrity(folder, manifest, raw, hmac_key=hmac_key,
                                      public_key=public_key)
    report.checks.extend(Check(*f) for f in findings)
    report.notes.extend(notes)
    try:
        meta = ModelMeta.model_validate(manifest.model.meta)
    except ValidationError as exc:
        err = exc.errors()[0]
        report.checks.append(Check("manifest", False, f"model.meta.{'.'.join(map(str, err['loc']))}"
                                   f": {err['msg']}; rebuild the bundle"))
        return None
    pipe, violations = check_configs(folder, manifest, meta)
    report.checks.append(Check(
        "deepstream configs", not violations,
        "; ".join(str(v) for v in violations) if violations else
        "nvinfer and deepstream-app rules hold (streammux, letterbox, normalisation, parser, "
        "paths, clustering)"))
    return pipe


def _emulate(folder: Path, manifest: BundleManifest, model: Any, pipe: Any, pixels: list[Any],
             reference: list[Any], report: VerifyReport, iou: float, borderline: float,
             need: float) -> None:
    """Run the emulated DeepStream pipeline and add its per-stage agreement."""
    from detforge.core.errors import DetforgeError
    from detforge.deploy.device_reference import run_emulation, stage_agreements

    backend: Any = model.backend

    def infer(x: Any) -> Any:
        return np.asarray(backend.infer(x)[0], np.float32)

    try:
        stages, how = run_emulation(folder, pixels, infer, manifest.thresholds.model_dump(),
                                    manifest.source.size, pipe=pipe)
    except DetforgeError as exc:
        report.checks.append(Check("device emulation", False, f"the pipeline could not run "
                                   f"({exc})"))
        return
    rows = stage_agreements(reference, stages, iou=iou, borderline=borderline)
    report.stages = [asdict(r) for r in rows]
    steps = ", ".join(f"{r.stage} {r.agreement:.3f}" for r in rows)
    final = rows[-1]
    detail = (f"{final.agreement:.3f} (need >= {need}) after streammux, nvinfer scaling and "
              f"black padding, {how} and clustering from the bundle's configs; by stage: "
              f"{steps}")
    report.checks.append(Check("device emulation", final.agreement >= need, detail))


def verify_bundle(folder: str | Path, *, backend: str = "auto", iou: float = 0.9,
                  min_agreement: float | None = None, max_score_diff: float | None = None,
                  min_device_agreement: float = 0.9, speed_seconds: float = 2.0,
                  build: bool = True, hmac_key: str | None = None,
                  public_key: str | Path | None = None) -> VerifyReport:
    """Verify a bundle folder on this device.

    Args:
        folder: ``DIR/<target>`` written by ``detforge deploy bundle``.
        backend: ``auto`` (engine if usable here, else ONNX), ``onnxruntime`` or ``tensorrt``
            (fail when no usable engine).
        iou: Smallest IoU for a box to match its reference (same class).
        min_agreement: Smallest share of matched boxes, ``matched / (matched + missing +
            extra)``, with detforge's own preprocessing; boxes within ``max_score_diff`` of
            the score threshold are not required to match. Default: 1.0 for the bundled ONNX
            on a CPU (the reference's own conditions), 0.9 on a GPU or engine.
        max_score_diff: Largest allowed score difference; default by precision
            (fp32 0.02, fp16 0.05, int8 0.1).
        min_device_agreement: Smallest agreement of the emulated DeepStream pipeline.
        speed_seconds: How long to measure images/s.
        build: On the target, with TensorRT installed, build the engine when it is missing
            (an existing engine is never rebuilt).
        hmac_key: Key for an HMAC-signed manifest (default ``$DETFORGE_SIGNING_KEY``); when
            set, an unsigned manifest fails.
        public_key: Trusted Ed25519 public key (PEM) for a signed manifest; when given, an
            unsigned manifest fails.

    Returns:
        The report; ``report.passed`` is the verdict.

    Raises:
        ConfigError: ``folder`` is not a directory or ``backend`` is unknown.

    Example:
        >>> report = verify_bundle("bundles/orin-nano")  # doctest: +SKIP
        >>> report.passed  # doctest: +SKIP
        True
    """
    from detforge.deploy.verify_on_device import SCORE_TOLERANCE

    folder = Path(folder)
    if backend not in VERIFY_BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {list(VERIFY_BACKENDS)}")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such bundle folder; pass DIR/<target> written by "
                          f"`detforge deploy bundle`")
    report = VerifyReport(folder, folder.name)
    try:
        manifest, raw = read_manifest(folder)
    except ManifestError as exc:
        report.checks.append(Check("manifest", False, str(exc)))
        return report
    target = manifest.target
    report.target = target.name
    report.expected_ips = target.expected_ips
    pipe = _integrity_and_configs(folder, manifest, raw, report,
                                  hmac_key if hmac_key is not None else env_signing_key(),
                                  Path(public_key) if public_key else None)
    try:
        images, reference, thresholds = load_reference(folder / "reference")
        pixels = [read_rgb(p) for p in images]
    except ConfigError as exc:
        report.checks.append(Check("reference", False, str(exc)))
        return report
    cc = device_compute_capability()
    report.on_target = cc == target.compute_capability
    model = _load(folder, manifest, backend, report, thresholds, build)
    if model is None:
        return report
    limit = max_score_diff if max_score_diff is not None else \
        SCORE_TOLERANCE.get(target.precision, 0.05)
    borderline = float(thresholds["conf"]) + limit
    try:
        b: Any = model.backend
        report.backend = f"{b.name}/{b.device}"
        got = [model.predict([img])[0] for img in pixels]
        need = min_agreement if min_agreement is not None else \
            1.0 if report.backend == "onnxruntime/cpu" else 0.9
        cmp = compare_detections(reference, got, iou=iou, borderline=borderline)
        detail = (f"{cmp.matched} matched, {cmp.missing} missing, {cmp.extra} extra at IoU "
                  f">= {iou}, same class (reference {cmp.reference_boxes} boxes, here "
                  f"{cmp.new_boxes}, {len(images)} images)")
        report.checks.append(Check("box agreement", cmp.agreement >= need,
                                   f"{cmp.agreement:.3f} (need >= {need}); {detail}"))
        report.checks.append(Check("max score difference", cmp.max_score_diff <= limit,
                                   f"{cmp.max_score_diff:.4f} (limit {limit})"))
        if pipe is not None:
            _emulate(folder, manifest, model, pipe, pixels, reference, report, iou, borderline,
                     min_device_agreement)
        report.ips = _speed(model, pixels, target.batch, speed_seconds)
    finally:
        model.close()
    lo, hi = report.expected_ips
    band = f"{report.ips:.1f} images/s; {target.title} expects {lo:g}-{hi:g} (YOLO-n, 640)"
    if report.on_target and report.model == manifest.engine.file:
        report.checks.append(Check("speed", report.ips >= lo, band))
    elif report.on_target:
        report.notes.append(f"speed {band}; the band is for the TensorRT engine, not the ONNX: "
                            f"run ./build_engine.sh and verify again")
    else:
        here = f"a GPU with sm {cc}" if cc else "no CUDA GPU"
        report.notes.append(f"speed {band}; this machine ({here}) is not a {target.title} "
                            f"(sm {target.compute_capability}), so speed is not gated")
    return report
