"""TensorRT engine plans without TensorRT: shapes, file names, trtexec commands, scripts.

Everything here is pure: it reads the ONNX graph's input (no TensorRT, no GPU), and
describes how a target builds the engine. ``detforge engine build`` uses it on a
machine without TensorRT (or for another device) to write the exact command and a
build script; ``export.tensorrt`` uses the same plan to build through the Python API.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import ConfigError, ExportError
from detforge.deploy.targets import Target, check_precision

__all__ = ["EnginePlan", "engine_file_name", "onnx_input", "parse_batch_range", "plan_engine",
           "sha256_file", "trtexec_command"]


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

    def shape(self, b: int) -> str:
        c, h, w = self.chw
        return f"{b}x{c}x{h}x{w}"


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"4"`` -> (4, 4, 4); ``"1-8"`` -> (1, 4, 8) with opt the middle power of two.

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
    opt = lo
    while opt * 2 <= hi and opt * 2 <= max(lo, (lo + hi) // 2):
        opt *= 2
    return lo, max(opt, lo), hi


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


def engine_file_name(batch: int, precision: str) -> str:
    """DeepStream-Yolo's engine name, ``model_b{B}_gpu0_{precision}.engine``."""
    return f"model_b{batch}_gpu0_{precision}.engine"


def plan_engine(onnx: str | Path, target: Target, precision: str, *,
                batch: tuple[int, int, int] = (1, 1, 1), workspace: str = "2GiB",
                timing_cache: str | Path | None = None,
                engine: str | Path | None = None) -> EnginePlan:
    """Check the request against the target and the model, and describe the build.

    Raises:
        TargetCapabilityError: The target cannot run ``precision``.
        ExportError: The model cannot serve the batch range, or INT8 lacks Q/DQ on a
            TensorRT >= 11 target.
    """
    check_precision(target, precision)
    onnx = Path(onnx)
    name, (b, c, h, w), qdq = onnx_input(onnx)
    if b is not None and batch != (b, b, b):
        if batch == (1, 1, 1):
            batch = (b, b, b)
        else:
            raise ExportError(f"{onnx}: input batch is fixed at {b}; re-export with "
                              f"--batch dynamic to build for batch {batch[0]}-{batch[2]}")
    if precision == "int8" and not qdq and target.tensorrt_major >= 11:
        raise ExportError(f"{target.title} uses TensorRT {target.tensorrt}, which builds INT8 only "
                          f"from a Q/DQ model; run `detforge quantize {onnx} --data DS` first")
    out = Path(engine) if engine else onnx.with_name(engine_file_name(batch[2], precision))
    return EnginePlan(onnx, out, target, precision, name, (c, h, w), batch, b is None, qdq,
                      parse_size(workspace), None if timing_cache is None else Path(timing_cache))


def trtexec_command(plan: EnginePlan) -> list[str]:
    """The ``trtexec`` command that builds ``plan`` on its target.

    TensorRT >= 11 is strongly typed: precision comes from the ONNX itself (FP16-converted
    or Q/DQ), so no precision flags are passed. Older TensorRT takes ``--fp16``/``--int8``;
    INT8 from a Q/DQ model keeps FP16 enabled for the float layers, as TensorRT advises.
    """
    cmd = ["trtexec", f"--onnx={plan.onnx.name}", f"--saveEngine={plan.engine.name}"]
    if plan.target.tensorrt_major >= 11:
        cmd.append("--stronglyTyped")
    elif plan.precision == "fp16":
        cmd.append("--fp16")
    elif plan.precision == "int8":
        cmd += ["--int8", "--fp16"]
    if plan.dynamic:
        lo, opt, hi = plan.batch
        cmd += [f"--minShapes={plan.input_name}:{plan.shape(lo)}",
                f"--optShapes={plan.input_name}:{plan.shape(opt)}",
                f"--maxShapes={plan.input_name}:{plan.shape(hi)}"]
    cmd.append(f"--memPoolSize=workspace:{plan.workspace_mib}M")
    if plan.timing_cache is not None:
        cmd.append(f"--timingCacheFile={plan.timing_cache.name}")
    return cmd


def build_script(plan: EnginePlan) -> str:
    """A POSIX shell script that builds the engine on the target and checks the result."""
    t = plan.target
    cmd = " ".join(shlex.quote(c) for c in trtexec_command(plan))
    return f"""#!/usr/bin/env bash
# Build {plan.engine.name} for {t.title} ({t.sm}), {plan.precision},
# batch {plan.batch[0]}-{plan.batch[2]}.
# Run it on the target itself: engines are tied to the GPU and the TensorRT version.
# Expected software: TensorRT {t.tensorrt}{f", JetPack {t.jetpack}" if t.jetpack else ""}.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
  echo "trtexec not found; install TensorRT or set TRTEXEC=/path/to/trtexec" >&2
  exit 2
fi
"$TRTEXEC" {cmd.removeprefix("trtexec ")}
echo "built {plan.engine.name}"
"""
