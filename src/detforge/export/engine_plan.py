"""TensorRT engine plans without TensorRT: shapes, file names and ``trtexec`` commands.

Everything here is pure: it reads the ONNX graph's input (no TensorRT, no GPU) and
describes the build with the options that TensorRT version's ``trtexec`` has
(:mod:`detforge.export.trt_compat`). ``detforge engine build`` uses it on a machine
without TensorRT (or for another device) to write the exact command and a build script
(:mod:`detforge.export.build_script`); ``export.tensorrt`` builds the same plan through
the Python API.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from detforge.core.artefacts.engine import EngineSidecar
from detforge.core.artefacts.targets import Target, check_precision
from detforge.core.errors import ConfigError, ExportError, TargetCapabilityError
from detforge.export.trt_compat import rules_for

__all__ = ["EnginePlan", "build_script", "engine_file_name", "onnx_input", "parse_batch_range",
           "plan_engine", "plan_sidecar", "script_ref", "sha256_file", "trtexec_command"]


@dataclass(frozen=True)
class EnginePlan:
    """What to build: inputs, shapes, precision and where the files go.

    Attributes:
        onnx: Source ONNX model.
        engine: Output plan file.
        target: Target device.
        precision: fp32, fp16 or int8.
        input_name: Name of the network input tensor.
        chw: (channels, height, width) of the input.
        batch: (min, opt, max) batch of the optimisation profile.
        dynamic: True when the ONNX input has a dynamic batch dimension.
        qdq: True when the ONNX already holds Q/DQ nodes (explicit quantisation).
        workspace_mib: Workspace memory pool limit.
        timing_cache: Timing cache file, or None.
        tensorrt: The TensorRT version the build is for (the target's, unless overridden).
        dla_core: DLA core to build for (layers DLA lacks fall back to the GPU), or None.
    """

    onnx: Path
    engine: Path
    target: Target
    precision: str
    input_name: str
    chw: tuple[int, int, int]
    batch: tuple[int, int, int]
    dynamic: bool
    qdq: bool
    workspace_mib: int
    timing_cache: Path | None
    tensorrt: str
    dla_core: int | None = None

    def shape(self, b: int) -> str:
        c, h, w = self.chw
        return f"{b}x{c}x{h}x{w}"


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"4"`` -> (4, 4, 4); ``"1-8"`` -> (1, 8, 8).

    The optimisation profile's opt shape is the largest batch: TensorRT tunes its kernels
    for opt, and DeepStream's nvinfer (and Triton's dynamic batcher under load) always send
    full batches.

    Raises:
        ConfigError: Not ``N`` or ``MIN-MAX`` with 1 <= MIN <= MAX.
    """
    lo_s, sep, hi_s = text.partition("-")
    try:
        lo, hi = int(lo_s), int(hi_s if sep else lo_s)
    except ValueError:
        raise ConfigError(f"batch {text!r} must be N or MIN-MAX, e.g. 1-8") from None
    if lo < 1 or hi < lo:
        raise ConfigError(f"batch {text!r}: need 1 <= MIN <= MAX")
    return lo, hi, hi


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"512MiB"``, ``"1024"`` (MiB) -> MiB."""
    t = text.strip().lower().replace(" ", "")
    for suffix, mult in (("gib", 1024), ("gb", 1024), ("mib", 1), ("mb", 1), ("g", 1024),
                         ("m", 1)):
        if t.endswith(suffix):
            t, factor = t[: -len(suffix)], mult
            break
    else:
        factor = 1
    try:
        return int(float(t) * factor)
    except ValueError:
        raise ConfigError(f"size {text!r} must look like 2GiB or 512MiB") from None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_input(path: str | Path) -> tuple[str, tuple[int | None, int, int, int], bool]:
    """(input name, (batch or None, C, H, W), has Q/DQ nodes) of an ONNX model.

    Raises:
        ExportError: The file is not an ONNX model with one 4-D image input.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError...
        raise ExportError(f"{path}: not a readable ONNX model ({exc})") from exc
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(
            f"{path}: input {inputs[0].name!r} must be 4-D NCHW, has {len(dims)} dims")
    vals: list[int | None] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if any(v is None for v in vals[1:]):
        raise ExportError(f"{path}: channels/height/width must be fixed, got {vals}; "
                          "re-export with a fixed --imgsz")
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    c, h, w = (int(v) for v in vals[1:])  # type: ignore[arg-type]
    return inputs[0].name, (vals[0], c, h, w), qdq


def engine_file_name(batch: int, precision: str, dla_core: int | None = None) -> str:
    """DeepStream-Yolo's engine name, ``model_b{B}_gpu0_{precision}.engine`` (``dla{N}``
    instead of ``gpu0`` for a DLA engine, as nvinfer names them)."""
    device = "gpu0" if dla_core is None else f"dla{dla_core}"
    return f"model_b{batch}_{device}_{precision}.engine"


def plan_engine(onnx: str | Path, target: Target, precision: str, *,
                batch: tuple[int, int, int] = (1, 1, 1), workspace: str = "2GiB",
                timing_cache: str | Path | None = None, engine: str | Path | None = None,
                tensorrt: str | None = None, dla_core: int | None = None) -> EnginePlan:
    """Check the request against the target, its TensorRT and the model; describe the build.

    Args:
        onnx: The ONNX model.
        target: The target device.
        precision: fp32, fp16 or int8 (INT8 needs a Q/DQ model).
        batch: (min, opt, max) batch.
        workspace: Workspace limit, e.g. ``2GiB``.
        timing_cache: Timing cache file.
        engine: Engine file (default: DeepStream-Yolo's name beside the ONNX).
        tensorrt: Another TensorRT version than the target's usual one.
        dla_core: Build for this DLA core (targets with DLA; FP16 or INT8 only).

    Raises:
        TargetCapabilityError: The target cannot run ``precision`` or has no such DLA core.
        ExportError: The model cannot serve the batch range.
    """
    check_precision(target, precision)
    version = tensorrt or target.tensorrt
    rules_for(version)
    if dla_core is not None:
        if dla_core < 0 or dla_core >= target.dla_cores:
            have = (f"DLA cores 0-{target.dla_cores - 1}" if target.dla_cores
                    else "no DLA")
            raise TargetCapabilityError(f"{target.title} has {have}; --dla {dla_core} is not "
                                        f"available (see `detforge targets`)")
        if precision == "fp32":
            raise TargetCapabilityError("DLA runs FP16 or INT8 only (trtexec would silently "
                                        "build FP16); pass --precision fp16 or int8")
    onnx = Path(onnx)
    name, (b, c, h, w), qdq = onnx_input(onnx)
    if b is not None and batch != (b, b, b):
        if batch == (1, 1, 1):
            batch = (b, b, b)
        else:
            raise ExportError(f"{onnx}: input batch is fixed at {b}; re-export with "
                              f"--batch dynamic to build for batch {batch[0]}-{batch[2]}")
    out = Path(engine) if engine else onnx.with_name(engine_file_name(batch[2], precision,
                                                                      dla_core))
    return EnginePlan(onnx.resolve(), out.resolve(), target, precision, name, (c, h, w), batch,
                      b is None, qdq, parse_size(workspace),
                      None if timing_cache is None else Path(timing_cache).resolve(),
                      version, dla_core)


def script_ref(path: Path, folder: Path) -> str:
    """``path`` as a build script in ``folder`` refers to it: relative when inside the
    folder (the bundle moves as a whole), else absolute."""
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def trtexec_command(plan: EnginePlan) -> list[str]:
    """The ``trtexec`` command that builds ``plan`` on its target, run from the engine's
    folder (paths relative to it, or absolute).

    Options follow the plan's TensorRT version (:mod:`detforge.export.trt_compat`): 8.2
    limits the workspace with ``--workspace=MiB``, 8.4 on with
    ``--memPoolSize=workspace:MiB``; up to 10.x precision is ``--fp16`` / ``--int8``
    (INT8 from a Q/DQ model keeps FP16 on for the float layers, as TensorRT advises);
    TensorRT 11 is strongly typed, so precision comes from the ONNX and no flag is passed.
    """
    rules = rules_for(plan.tensorrt).trtexec
    folder = plan.engine.parent
    cmd = ["trtexec", f"--onnx={script_ref(plan.onnx, folder)}",
           f"--saveEngine={script_ref(plan.engine, folder)}"]
    if rules.precision_flags and plan.precision == "fp16":
        cmd.append("--fp16")
    elif rules.precision_flags and plan.precision == "int8":
        cmd += ["--int8", "--fp16"]
    if plan.dynamic:
        lo, opt, hi = plan.batch
        cmd += [f"--minShapes={plan.input_name}:{plan.shape(lo)}",
                f"--optShapes={plan.input_name}:{plan.shape(opt)}",
                f"--maxShapes={plan.input_name}:{plan.shape(hi)}"]
    if rules.workspace == "--workspace":
        cmd.append(f"--workspace={plan.workspace_mib}")
    else:
        cmd.append(f"--memPoolSize=workspace:{plan.workspace_mib}")
    if plan.dla_core is not None:
        cmd += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    if plan.timing_cache is not None:
        cmd.append(f"--timingCacheFile={script_ref(plan.timing_cache, folder)}")
    return cmd


def build_script(plan: EnginePlan) -> str:
    """The bash script that builds ``plan`` on its target and writes its manifest
    (:func:`detforge.export.build_script.render_script`)."""
    from detforge.export.build_script import render_script

    return render_script(plan)


def plan_sidecar(plan: EnginePlan, *, gpu_name: str | None, compute_capability: str,
                 tensorrt_version: str, cuda_version: str | None, builder: str,
                 onnx_sha256: str | None, engine_sha256: str | None = None) -> EngineSidecar:
    """The manifest of the engine ``plan`` builds, given what the building device reports."""
    from detforge.core.errors import BackendError
    from detforge.runtime.metadata import read_onnx_meta

    try:
        meta = read_onnx_meta(plan.onnx)
    except BackendError:  # a model without detforge/Ultralytics metadata: none to record
        meta = None
    c, h, w = plan.chw
    return EngineSidecar.model_validate(dict(
        engine=plan.engine.name, target=plan.target.name, precision=plan.precision,
        gpu_name=gpu_name, compute_capability=compute_capability,
        tensorrt_version=tensorrt_version, cuda_version=cuda_version,
        batch={"min": plan.batch[0], "opt": plan.batch[1], "max": plan.batch[2]},
        input_name=plan.input_name, input_shape=(-1 if plan.dynamic else plan.batch[2], c, h, w),
        onnx=plan.onnx.name, onnx_sha256=onnx_sha256, engine_sha256=engine_sha256, meta=meta,
        built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        builder=builder, dla_core=plan.dla_core))
