"""On-target verification of a deployment bundle: checksums, parity with the workstation, speed.

``verify_bundle(DIR/<target>)``:

1. every file listed in ``manifest.json`` exists and has its sha256; a file that is neither
   listed nor an expected build output (the engine, its sidecar, Triton plans) is reported;
2. loads the model: the engine when one is present and valid for this device (TensorRT with
   a matching GPU; on the target it is built first when missing or without its sidecar
   manifest), else the ONNX with the best ONNX Runtime provider here (INT8 Q/DQ too);
3. runs the reference images with the bundle's thresholds and matches the boxes with the
   reference detections (same class, IoU >= 0.9): agreement and largest score difference;
4. measures images/s at the bundle's batch and shows it against the target's expected band;
   speed only gates on the target itself (a GPU with the target's compute capability).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detforge.core.errors import (
    BackendError,
    ConfigError,
    EngineMismatchError,
    MissingExtraError,
)
from detforge.deploy.bundle import BUNDLE_FORMAT, MANIFEST, bundle_files
from detforge.deploy.reference import compare_detections, load_reference, read_rgb
from detforge.export.engine_plan import sha256_file

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


def _checksums(folder: Path, manifest: dict[str, Any]) -> list[Check]:
    files: dict[str, str] = manifest.get("files") or {}
    # Files the target itself makes (engines, the parser library's build); a pattern may
    # use fnmatch wildcards, e.g. ``nvdsinfer_custom_impl_Yolo/*``.
    allowed = [str(p) for p in manifest.get("allowed_extra") or []]
    missing, changed = [], []
    for rel, want in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_file(path) != want:
            changed.append(rel)
    extra = [rel for rel in bundle_files(folder)
             if rel not in files and not any(fnmatch.fnmatchcase(rel, p) for p in allowed)]
    checks = []
    for label, items in (("missing", missing), ("changed", changed), ("extra", extra)):
        if items:
            what = {"missing": "listed in manifest.json but absent",
                    "changed": "sha256 differs from manifest.json",
                    "extra": "not in manifest.json"}[label]
            checks.append(Check(f"files {label}", False, f"{', '.join(items)} ({what}); "
                                f"re-copy the bundle or rebuild it with `detforge deploy bundle`"))
    if not checks:
        checks.append(Check("checksums", True, f"{len(files)} files match manifest.json"))
    return checks


def _build_engine(folder: Path, manifest: dict[str, Any]) -> tuple[Path | None, str]:
    """Build the bundle's engine here with TensorRT (on the target only); (engine, why not)."""
    import importlib.util

    from detforge.core.errors import DetforgeError
    from detforge.deploy.targets import get_target
    from detforge.export.engine import build_or_script

    if importlib.util.find_spec("tensorrt") is None:
        return None, "TensorRT is not installed here"
    lo, _, hi = manifest["engine"]["batch"]
    try:
        res = build_or_script(folder / manifest["model"]["file"],
                              get_target(manifest["target"]["name"]),
                              manifest["target"]["precision"], batch=f"{lo}-{hi}",
                              engine=folder / manifest["engine"]["file"])
    except DetforgeError as exc:
        return None, f"engine build failed ({exc})"
    return (res.plan.engine, "") if res.manifest is not None else (None, str(res.reason))


def _load(folder: Path, manifest: dict[str, Any], backend: str, report: VerifyReport,
          thresholds: dict[str, Any], build: bool) -> Any:
    """The engine when usable here (built first on the target when ``build``), else the ONNX;
    None (with a failed check) when nothing runs."""
    from detforge.runtime import load_model

    kw: dict[str, Any] = {"conf": float(thresholds["conf"]), "iou": float(thresholds["iou"]),
                          "max_det": int(thresholds["max_det"])}
    engine = folder / str(manifest.get("engine", {}).get("file", ""))
    if backend in ("auto", "tensorrt"):
        why = f"no engine {engine.name} (run ./build_engine.sh on the target)"
        for attempt in ("load", "build"):
            if attempt == "build":
                if not (build and report.on_target):
                    break
                built, reason = _build_engine(folder, manifest)
                if built is None:
                    why = f"{why}; {reason}"
                    break
                report.notes.append(f"built {engine.name} here with TensorRT")
            if engine.is_file():
                try:
                    model = load_model(engine, device="cuda", **kw)
                    report.model = engine.name
                    return model
                except (EngineMismatchError, MissingExtraError, BackendError,
                        ConfigError) as exc:
                    why = f"engine {engine.name} not usable here ({exc})"
        if backend == "tensorrt":
            report.checks.append(Check("model", False, why))
            return None
        report.notes.append(f"{why}; running the ONNX instead")
    onnx = folder / str(manifest.get("model", {}).get("file", ""))
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


def verify_bundle(folder: str | Path, *, backend: str = "auto", iou: float = 0.9,
                  min_agreement: float | None = None, max_score_diff: float | None = None,
                  speed_seconds: float = 2.0, build: bool = True) -> VerifyReport:
    """Verify a bundle folder on this device.

    Args:
        folder: ``DIR/<target>`` written by ``detforge deploy bundle``.
        backend: ``auto`` (engine if usable here, else ONNX), ``onnxruntime`` or ``tensorrt``
            (fail when no usable engine).
        iou: Smallest IoU for a box to match its reference (same class).
        min_agreement: Smallest share of matched boxes, ``matched / (matched + missing +
            extra)``; boxes within ``max_score_diff`` of the score threshold are not required
            to match. Default: 1.0 for the bundled ONNX on a CPU (the reference's own
            conditions), 0.9 on a GPU or engine.
        max_score_diff: Largest allowed score difference; default by precision
            (fp32 0.02, fp16 0.05, int8 0.1).
        speed_seconds: How long to measure images/s.
        build: On the target, with TensorRT installed, build the engine when it is missing
            or unusable (it is written with its sidecar manifest, which ``trtexec`` does not
            write).

    Returns:
        The report; ``report.passed`` is the verdict.

    Raises:
        ConfigError: ``folder`` is not a directory or ``backend`` is unknown.

    Example:
        >>> report = verify_bundle("bundles/orin-nano")  # doctest: +SKIP
        >>> report.passed  # doctest: +SKIP
        True
    """
    folder = Path(folder)
    if backend not in VERIFY_BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {list(VERIFY_BACKENDS)}")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such bundle folder; pass DIR/<target> written by "
                          f"`detforge deploy bundle`")
    report = VerifyReport(folder, folder.name)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {BUNDLE_FORMAT!r}")
    except (OSError, ValueError, AttributeError) as exc:
        report.checks.append(Check("manifest", False, f"{folder / MANIFEST} is missing or "
                                   f"invalid ({exc}); rebuild the bundle"))
        return report
    target = manifest["target"]
    report.target = target["name"]
    report.expected_ips = (float(target["expected_ips"][0]), float(target["expected_ips"][1]))
    report.checks.extend(_checksums(folder, manifest))
    try:
        images, reference, thresholds = load_reference(folder / "reference")
        pixels = [read_rgb(p) for p in images]
    except ConfigError as exc:
        report.checks.append(Check("reference", False, str(exc)))
        return report
    cc = device_compute_capability()
    report.on_target = cc == target["compute_capability"]
    model = _load(folder, manifest, backend, report, thresholds, build)
    if model is None:
        return report
    try:
        b: Any = model.backend
        report.backend = f"{b.name}/{b.device}"
        got = [model.predict([img])[0] for img in pixels]
        limit = max_score_diff if max_score_diff is not None else \
            _TOLERANCE.get(target["precision"], 0.05)
        need = min_agreement if min_agreement is not None else \
            1.0 if report.backend == "onnxruntime/cpu" else 0.9
        cmp = compare_detections(reference, got, iou=iou,
                                 borderline=float(thresholds["conf"]) + limit)
        detail = (f"{cmp.matched} matched, {cmp.missing} missing, {cmp.extra} extra at IoU "
                  f">= {iou}, same class (reference {cmp.reference_boxes} boxes, here "
                  f"{cmp.new_boxes}, {len(images)} images)")
        report.checks.append(Check("box agreement", cmp.agreement >= need,
                                   f"{cmp.agreement:.3f} (need >= {need}); {detail}"))
        report.checks.append(Check("max score difference", cmp.max_score_diff <= limit,
                                   f"{cmp.max_score_diff:.4f} (limit {limit})"))
        report.ips = _speed(model, pixels, int(target["batch"]), speed_seconds)
    finally:
        model.close()
    lo, hi = report.expected_ips
    band = f"{report.ips:.1f} images/s; {target['title']} expects {lo:g}-{hi:g} (YOLO-n, 640)"
    if report.on_target and report.model == manifest["engine"]["file"]:
        report.checks.append(Check("speed", report.ips >= lo, band))
    elif report.on_target:
        report.notes.append(f"speed {band}; the band is for the TensorRT engine, not the ONNX: "
                            f"run ./build_engine.sh and verify again")
    else:
        here = f"a GPU with sm {cc}" if cc else "no CUDA GPU"
        report.notes.append(f"speed {band}; this machine ({here}) is not a {target['title']} "
                            f"(sm {target['compute_capability']}), so speed is not gated")
    return report
