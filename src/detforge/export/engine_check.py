"""``detforge engine check``: will the target's TensorRT build this ONNX model?

Applies the rules of :mod:`detforge.export.trt_compat` for the target's TensorRT version
to the graph (opset range, operators, inputs that must be constants, ``Reduce*`` axes,
Q/DQ element types and zero points, ``Resize``/``TopK`` attributes) and to the requested
precision, and lists every violation with the node, the rule, its source and the fix.
:func:`check_trtexec_args` and :func:`check_build_script` do the same for a ``trtexec``
command line. Nothing here needs TensorRT.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detforge.core.artefacts.targets import Target, supported_precisions
from detforge.core.errors import ConfigError, TargetCapabilityError
from detforge.export.trt_compat import REDUCE_OPS, TrtRules, rules_for

__all__ = ["CheckReport", "Violation", "check_build_script", "check_graph", "check_model",
           "check_trtexec_args", "model_precision", "require_buildable"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
MODEL = "(model)"


@dataclass(frozen=True)
class Violation:
    """One thing the target's TensorRT would refuse or get wrong.

    Attributes:
        node: The node name (or ``(model)``, ``(precision)``, ``(trtexec)``).
        op: Its operator type, or ``""``.
        rule: Short rule id, e.g. ``dq-input-type``.
        message: What is wrong, in words.
        source: Where the rule comes from (repository, ref, file).
        fix: How to make the model (or command) buildable.
    """

    node: str
    op: str
    rule: str
    message: str
    source: str
    fix: str

    def line(self) -> str:
        """One line for the terminal."""
        where = f"{self.node} ({self.op})" if self.op else self.node
        return f"{where}: [{self.rule}] {self.message}. Fix: {self.fix}"


@dataclass
class CheckReport:
    """The outcome of :func:`check_model`."""

    model: str
    target: str
    tensorrt: str
    series: str
    precision: str
    opset: int
    nodes: int
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def _walk(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _walk(attr.g)
            for sub in attr.graphs:
                yield from _walk(sub)


class _Graph:
    """Constant tensors, element types and node lookups of a model, computed once."""

    def __init__(self, model: Any) -> None:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # shape inference is a help for types, never a requirement
            inferred = model
        g = inferred.graph
        self.nodes = list(_walk(model.graph))
        self.init = {i.name: i for i in g.initializer}
        self.producer = {o: n for n in _walk(g) for o in n.output}
        self.types: dict[str, int] = {i.name: i.data_type for i in g.initializer}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            if vi.type.tensor_type.elem_type:
                self.types.setdefault(vi.name, vi.type.tensor_type.elem_type)
        for n in _walk(g):
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.types[n.output[0]] = a.t.data_type

    def is_const(self, name: str, depth: int = 0) -> bool:
        """An initializer, a ``Constant``, or a ``DequantizeLinear``/``Identity``/``Cast``
        of one (how Q/DQ weights reach a ``Conv``)."""
        if name in self.init:
            return True
        node = self.producer.get(name)
        if node is None or depth > 4:
            return False
        if node.op_type == "Constant":
            return True
        if node.op_type in ("DequantizeLinear", "Identity", "Cast"):
            return self.is_const(node.input[0], depth + 1)
        return False

    def values(self, name: str) -> list[float] | None:
        """The values of a constant tensor, or None."""
        from onnx import numpy_helper

        tensor = self.init.get(name)
        node = self.producer.get(name)
        if tensor is None and node is not None and node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
        if tensor is None:
            return None
        return [float(v) for v in numpy_helper.to_array(tensor).reshape(-1)]

    def dtype(self, name: str) -> str | None:
        from onnx import TensorProto

        code = self.types.get(name)
        node = self.producer.get(name)
        if code is None and node is not None and node.op_type == "QuantizeLinear":
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            code = self.types.get(zp) if zp else TensorProto.UINT8
        return None if code is None else TensorProto.DataType.Name(code)


def _opset(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def model_precision(model: Any) -> str:
    """What a model builds as: ``int8`` (Q/DQ nodes), ``fp16`` (float16 weights) or ``fp32``."""
    from onnx import TensorProto

    if any(n.op_type in _QDQ for n in _walk(model.graph)):
        return "int8"
    if any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def _v(node: Any, rule: str, message: str, source: str, fix: str) -> Violation:
    return Violation(node.name or f"<unnamed {node.op_type}>", node.op_type, rule, message,
                     source, fix)


def _node_rules(node: Any, g: _Graph, r: TrtRules, reexport: str) -> Iterator[Violation]:
    op, ins = node.op_type, list(node.input)
    if node.domain not in ("", "ai.onnx"):
        yield _v(node, "custom-domain", f"operator domain {node.domain!r} is not ONNX's; "
                 f"TensorRT imports it only as a plugin of that name", r.source("ops"),
                 "export without custom operators, or register the plugin on the target")
        return
    if op not in r.ops:
        yield _v(node, "unsupported-op", f"TensorRT {r.version}'s ONNX importer has no {op}",
                 r.source("ops"), f"{reexport}, or replace {op} in the model")
    if op in REDUCE_OPS and op != "ReduceSum" and not r.reduce_axes_input \
            and len(ins) > 1 and ins[1]:
        yield _v(node, "reduce-axes-input", f"TensorRT {r.version} ignores {op}'s `axes` input "
                 f"(opset 18 form) and reduces over every axis", r.source("reduce"),
                 f"{reexport} (opset <= 17 keeps `axes` an attribute)")
    for cop, idx, name in r.const_inputs:
        if op == cop and len(ins) > idx and ins[idx] and not g.is_const(ins[idx]):
            yield _v(node, "const-input", f"input `{name}` ({ins[idx]}) must be an initializer "
                     f"for TensorRT {r.version}", r.source("const"),
                     "export with a fixed input size and graph simplification (the default), "
                     "which folds it into a constant")
    if op == "Range" and r.float_range_needs_const and \
            (g.dtype(ins[0]) or "FLOAT").startswith(("FLOAT", "DOUBLE")) and \
            not all(g.is_const(i) for i in ins[:3]):
        yield _v(node, "const-input", f"a floating-point Range needs constant start, limit and "
                 f"delta on TensorRT {r.version}", r.source("const"),
                 "export with graph simplification (the default) so anchors fold to constants")
    if op in _QDQ:
        yield from _qdq_rules(node, g, r)
    if op == "Resize":
        attrs = {a.name: a.s.decode() for a in node.attribute if a.type == a.STRING}
        for key, allowed in (("mode", r.resize_modes),
                             ("coordinate_transformation_mode", r.resize_coordinate_modes),
                             ("nearest_mode", r.resize_nearest_modes)):
            if key in attrs and attrs[key] not in allowed:
                yield _v(node, "resize-mode", f"{key}={attrs[key]!r} is not supported (only "
                         f"{', '.join(sorted(allowed))})", r.source("resize"),
                         "use nearest or linear upsampling in the model")
    if op == "TopK" and r.topk_max is not None and len(ins) > 1:
        k = g.values(ins[1])
        if k and k[0] >= r.topk_max:
            yield _v(node, "topk-k", f"K={int(k[0])} is not below {r.topk_max}",
                     r.source("topk"), f"keep at most {r.topk_max - 1} candidates")


def _qdq_rules(node: Any, g: _Graph, r: TrtRules) -> Iterator[Violation]:
    ins = list(node.input)
    src = r.source("qdq")
    requant = "re-quantize with `detforge quantize MODEL.onnx --data DS --for tensorrt`"
    zp = ins[2] if len(ins) > 2 and ins[2] else None
    if zp is None and r.major == 8:
        yield _v(node, "qdq-zero-point", f"TensorRT {r.version} needs the zero-point input",
                 src, requant)
    if zp is not None:
        if g.dtype(zp) == "UINT8":
            yield _v(node, "qdq-uint8", "UINT8 quantization: TensorRT quantizes to signed INT8 "
                     "only", src, requant + " (the cpu flavour is for ONNX Runtime)")
        values = g.values(zp)
        if values is not None and any(v != 0 for v in values):
            yield _v(node, "qdq-zero-point", "non-zero zero point: TensorRT quantization is "
                     "symmetric", src, requant)
    if node.op_type == "DequantizeLinear":
        dtype = g.dtype(ins[0])
        if dtype is not None and dtype not in r.dq_types:
            what = " (a quantized bias)" if dtype == "INT32" else ""
            yield _v(node, "dq-input-type", f"dequantizes {dtype}{what}; TensorRT {r.version} "
                     f"dequantizes only {', '.join(sorted(r.dq_types))}", src,
                     requant + " (biases stay float)")


def _precision_rules(precision: str, built_as: str, target: Target, r: TrtRules,
                     onnx: str) -> Iterator[Violation]:
    def v(rule: str, message: str, source: str, fix: str) -> Violation:
        return Violation("(precision)", "", rule, message, source, fix)

    if precision not in supported_precisions(target):
        yield v("precision-capability", f"{target.title} ({target.sm}) cannot run {precision}",
                "detforge.core.artefacts.targets (INT8 needs compute capability 6.1 or 7.0+)",
                f"use --precision {'fp16' if target.fp16 else 'fp32'}")
    if precision == "int8" and built_as != "int8":
        yield v("int8-needs-qdq", "INT8 needs a Q/DQ model: "
                + ("TensorRT 11 has no calibrators or INT8 builder flag" if r.strongly_typed
                   else "trtexec --int8 without a calibration cache uses placeholder scales"),
                r.source("precision"),
                f"run `detforge quantize {onnx} --data DS --for tensorrt` and check that")
    if built_as == "int8" and precision != "int8":
        yield v("qdq-needs-int8", f"a Q/DQ model builds as INT8, not {precision}",
                r.source("precision"), "pass --precision int8, or check the float model")
    if r.strongly_typed and precision == "fp16" and built_as != "fp16":
        yield v("strongly-typed", f"TensorRT {r.version} is strongly typed: a float32 model "
                f"builds FP32 whatever is asked", r.source("precision"),
                f"convert it: `detforge quantize {onnx} --data DS --precision fp16`")


def check_graph(model: Any, rules: TrtRules, *, reexport: str = "re-export the model") \
        -> list[Violation]:
    """The graph rules only (no precision): every violation in ``model`` for ``rules``.

    Args:
        model: An ``onnx.ModelProto``.
        rules: From :func:`detforge.export.trt_compat.rules_for`.
        reexport: The fix for violations a re-export removes (names the command).
    """
    out: list[Violation] = []
    opset = _opset(model)
    lo, hi = rules.opset
    if not lo <= opset <= hi:
        out.append(Violation(MODEL, "", "opset", f"opset {opset}; TensorRT {rules.version} "
                             f"imports opset {lo} to {hi}", rules.source("opset"),
                             reexport))
    g = _Graph(model)
    for node in g.nodes:
        out.extend(_node_rules(node, g, rules, reexport))
    return out


def check_model(onnx: str | Path, target: Target, *, precision: str | None = None,
                tensorrt: str | None = None) -> CheckReport:
    """Check ``onnx`` against the TensorRT of ``target`` (or ``tensorrt``) at ``precision``.

    Args:
        onnx: The ONNX model.
        target: The target device.
        precision: ``fp32``, ``fp16`` or ``int8``; None checks the model as it is (``int8``
            for a Q/DQ model, ``fp16`` for float16 weights, else ``fp32``).
        tensorrt: Another TensorRT version than the target's usual one.

    Returns:
        The report; ``report.passed`` when the model can be built.

    Raises:
        ConfigError: Unknown precision or TensorRT version, or the file is not a readable
            ONNX model (exit 2).

    Example:
        >>> from detforge.core.artefacts import get_target
        >>> report = check_model("model.onnx", get_target("jetson-nano"))  # doctest: +SKIP
        >>> [v.rule for v in report.violations]  # doctest: +SKIP
        ['opset']
    """
    import onnx as onnx_lib

    if precision not in (None, "fp32", "fp16", "int8"):
        raise ConfigError(f"unknown precision {precision!r}; choose fp32, fp16 or int8")
    version = tensorrt or target.tensorrt
    rules = rules_for(version)
    try:
        model = onnx_lib.load(str(onnx), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError...
        raise ConfigError(f"{onnx}: not a readable ONNX model ({exc})") from exc
    built_as = model_precision(model)
    want = precision or built_as
    tflag = f" --tensorrt {tensorrt}" if tensorrt else ""
    reexport = (f"re-export for the target: `detforge export WEIGHTS.pt --target "
                f"{target.name}{tflag}` (opset {min(17, rules.opset[1])})")
    report = CheckReport(str(onnx), target.name, version, rules.series, want, _opset(model),
                         sum(1 for _ in _walk(model.graph)))
    report.violations = check_graph(model, rules, reexport=reexport)
    report.violations += list(_precision_rules(want, built_as, target, rules, Path(onnx).name))
    return report


def require_buildable(onnx: str | Path, target: Target, precision: str, *,
                      tensorrt: str | None = None) -> CheckReport:
    """:func:`check_model`, raising when the target's TensorRT cannot build the model.

    Raises:
        TargetCapabilityError: Any violation (exit 2); the message names the first nodes,
            their rules and the fix, and how to list them all.
    """
    report = check_model(onnx, target, precision=precision, tensorrt=tensorrt)
    if report.passed:
        return report
    shown = "; ".join(v.line() for v in report.violations[:3])
    more = len(report.violations) - 3
    raise TargetCapabilityError(
        f"{target.name}: TensorRT {report.tensorrt} cannot build {Path(onnx).name} as "
        f"{precision}: {shown}" + (f"; and {more} more" if more > 0 else "")
        + f". List them all with `detforge engine check {onnx} --target {target.name} "
          f"--precision {precision}`")


def check_trtexec_args(args: Sequence[str], rules: TrtRules) -> list[Violation]:
    """Every option of a ``trtexec`` command line that ``rules``' trtexec would refuse.

    trtexec exits with ``Unknown option`` for any option its parsers leave over, so one
    wrong flag fails the whole build.
    """
    src = rules.source("trtexec")
    out = []
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg[2:].partition("=")
        if name not in rules.trtexec.options:
            instead = {"memPoolSize": "--workspace=MiB", "workspace": "--memPoolSize=workspace:MiB",
                       "fp16": "an FP16-converted ONNX (strongly typed)",
                       "int8": "a Q/DQ ONNX (strongly typed)"}.get(name, "nothing")
            out.append(Violation("(trtexec)", "", "trtexec-option",
                                 f"trtexec {rules.version} has no --{name} (Unknown option)",
                                 src, f"use {instead} for TensorRT {rules.version}"))
        elif name == "memPoolSize" and not rules.trtexec.pool_units:
            for spec in value.split(","):
                size = spec.partition(":")[2]
                if size and not size.replace(".", "", 1).isdigit():
                    out.append(Violation("(trtexec)", "", "trtexec-option",
                                         f"--memPoolSize size {size!r}: trtexec "
                                         f"{rules.version} reads plain MiB (std::stod)", src,
                                         "give the size in MiB without a unit"))
    return out


def check_build_script(path: str | Path, rules: TrtRules) -> list[Violation]:
    """:func:`check_trtexec_args` on every ``trtexec`` call in a shell script."""
    text = Path(path).read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        try:
            words = shlex.split(stripped)
        except ValueError:
            continue
        calls = [i for i, w in enumerate(words)
                 if w in ("trtexec", "$TRTEXEC") or w.endswith("/trtexec")]
        for i in calls:
            out.extend(check_trtexec_args(words[i + 1:], rules))
    return out
