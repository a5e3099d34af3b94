"""What each TensorRT version accepts, encoded from NVIDIA's own sources, with the source
cited next to every rule.

TensorRT does not run here, so the rules its ONNX importer and ``trtexec`` apply are data:
one row per TensorRT series (8.2 for JetPack 4.6, 8.4-8.5 and 8.6 for JetPack 5 / DeepStream
6.x, 10.x for JetPack 6 / DeepStream 7-8, 11.x), resolved for an exact version by
:func:`rules_for`. :mod:`detforge.export.engine_check` applies them to a model and to a
``trtexec`` command; :mod:`detforge.export.build_script` and
:mod:`detforge.export.tensorrt` build with the options and API calls each version has.

Sources (read at these refs; ``docs/decisions/0010-tensorrt-compatibility.md`` has the
table in words):

* ONNX importer -- ``onnx/onnx-tensorrt`` ``docs/operators.md`` (header line: opset range;
  Supported column: operators; Restrictions column: inputs that must be initializers) and
  the op importers, at the commit each TensorRT release pins as ``parsers/onnx``;
  ``docs/Changelog.md`` for what later 10.x / 11.x releases added.
* ``trtexec`` -- ``NVIDIA/TensorRT`` ``samples/common/sampleOptions.cpp`` at each tag:
  the options each ``*Options::parse`` consumes (an option left over makes trtexec print
  ``Unknown option`` and exit, ``samples/trtexec/trtexec.cpp``).
* Python API -- ``NVIDIA/TensorRT`` ``python/src/infer/pyCore.cpp`` at each tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from detforge.core.errors import ConfigError

__all__ = ["PREFERRED_OPSET", "CITE", "PythonApi", "TrtexecRules", "TrtRules", "export_opset",
           "parse_version", "rules_for", "series"]

OT = "onnx/onnx-tensorrt"
NV = "NVIDIA/TensorRT"

PREFERRED_OPSET = 17
"""The opset detforge exports when a target allows it: what DeepStream-Yolo's exporter uses,
imported by every TensorRT from 8.4 on, and the last opset whose ``Reduce*`` ops take
``axes`` as an attribute (which every 8.x importer reads)."""

_OPS_82 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LRN LSTM LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg
NonMaxSuppression Not Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomUniform
RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Unsqueeze Upsample Where""".split())
_OPS_85 = _OPS_82 | frozenset("""GridSample HardSwish MeanVarianceNormalization Mod NonZero
OneHot RandomNormal RandomNormalLike Reciprocal RoiAlign Shrink Trilu Xor""".split())
_OPS_86 = _OPS_85 | {"GroupNormalization", "IsInf", "LayerNormalization"}
_OPS_10 = _OPS_86 | {"CastLike", "DeformConv", "Gelu", "Hardmax", "Mish"}
_OPS_ADDED: tuple[tuple[tuple[int, int], frozenset[str]], ...] = (
    ((10, 4), frozenset({"BlackmanWindow", "HammingWindow", "HannWindow"})),
    ((10, 5), frozenset({"STFT"})),
    ((10, 14), frozenset({"Attention"})),
    ((10, 15), frozenset({"RotaryEmbedding", "RMSNormalization", "TensorScatter"})),
    ((11, 0), frozenset({"Swish"})),
)
"""Operators later releases added, from ``onnx/onnx-tensorrt`` ``docs/Changelog.md``
(10.4-10.15) and ``NVIDIA/TensorRT`` ``CHANGELOG.md`` (11.0 "Added support for Swish")."""

REDUCE_OPS = frozenset({"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                        "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare"})

ConstInput = tuple[str, int, str, tuple[int, int] | None]
"""(operator, input index, input name, first version that lifts the rule or None)."""

_CONST_8X: tuple[ConstInput, ...] = (
    ("CumSum", 1, "axis", None), ("Slice", 3, "axes", None), ("Squeeze", 1, "axes", None),
    ("Unsqueeze", 1, "axes", None))
_CONST_82 = _CONST_8X + (
    ("Conv", 1, "W", None), ("ConvTranspose", 1, "W", None), ("TopK", 1, "K", None),
    ("NonMaxSuppression", 2, "max_output_boxes_per_class", None),
    ("NonMaxSuppression", 3, "iou_threshold", None),
    ("NonMaxSuppression", 4, "score_threshold", None))
_CONST_85 = _CONST_8X + (("TopK", 1, "K", None),)
_CONST_10 = (("CumSum", 1, "axis", (10, 8)), ("Slice", 3, "axes", (10, 3)),
             ("Squeeze", 1, "axes", (10, 7)), ("Unsqueeze", 1, "axes", (10, 7)),
             ("Pad", 3, "axes", (10, 4))) + tuple((op, 1, "axes", None)
                                                  for op in sorted(REDUCE_OPS))
"""10.x lifts: Slice tensor axes (10.3), Pad tensor axes (10.4), dynamic Squeeze/Unsqueeze
axes (10.7), dynamic CumSum axes (10.8), per ``onnx/onnx-tensorrt`` ``docs/Changelog.md``."""


@dataclass(frozen=True)
class TrtexecRules:
    """The ``trtexec`` options of one version (those detforge writes or checks).

    Attributes:
        options: Every option name it accepts, without ``--``.
        workspace: How the builder workspace is limited: ``--workspace=MiB`` (8.2) or
            ``--memPoolSize=workspace:MiB`` (8.4 on; 8.4-8.6 still take ``--workspace``).
        pool_units: ``--memPoolSize`` sizes take unit suffixes (``2G``); before 10.1 the
            value is parsed with ``std::stod`` in MiB, so ``2G`` means 2 MiB.
        precision_flags: ``--fp16`` / ``--int8`` exist (gone in 11: strongly typed).
    """

    options: frozenset[str]
    workspace: Literal["--workspace", "--memPoolSize"]
    pool_units: bool
    precision_flags: bool


@dataclass(frozen=True)
class PythonApi:
    """The TensorRT Python API calls that differ between versions.

    Attributes:
        builder: detforge's Python builder runs on it (needs ``set_memory_pool_limit``,
            8.4+, and is tested against 8.5/8.6/10/11 API shapes).
        explicit_batch: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``: ``required`` (8.x:
            the ONNX parser refuses an implicit-batch network), ``deprecated`` (10.x: the
            default, flag ignored) or ``absent`` (11).
        precision_flags: ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` exist.
        calibrators: ``IInt8EntropyCalibrator2`` and ``config.int8_calibrator`` exist.
        strongly_typed: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: ``absent`` (8.x),
            ``optional`` (10.x) or ``default`` (11: always on, the flag deprecated).
    """

    builder: bool
    explicit_batch: Literal["required", "deprecated", "absent"]
    precision_flags: bool
    calibrators: bool
    strongly_typed: Literal["absent", "optional", "default"]


@dataclass(frozen=True)
class TrtRules:
    """Everything one TensorRT version accepts; see the module docstring for the sources.

    Attributes:
        version: The exact version these rules were resolved for, e.g. ``"10.3.0"``.
        series: The table row, e.g. ``"8.2"`` or ``"10"``.
        opset: (min, max) ``ai.onnx`` opset the importer supports.
        ops: ``ai.onnx`` operators its importer has.
        dq_types: Element types ``DequantizeLinear`` may dequantize.
        reduce_axes_input: Every ``Reduce*`` reads an ``axes`` input (opset 18 form); when
            False only ``ReduceSum`` does, the others reduce over all axes.
        const_inputs: ``(operator, input index, name)`` that must be initializers/constants.
        float_range_needs_const: A floating-point ``Range`` needs constant start/limit/delta
            (8.2; 8.4 added dynamic float ranges, ``docs/Changelog.md``).
        topk_max: Largest ``K`` of ``TopK`` (None: not stated by the source).
        resize_modes / resize_coordinate_modes / resize_nearest_modes: ``Resize`` attributes.
        strongly_typed: Networks are strongly typed: precision comes from the ONNX types.
        trtexec: Its ``trtexec`` options.
        python: Its Python API.
        sources: Aspect -> the source of that rule (repository, ref, file).
    """

    version: str
    series: str
    opset: tuple[int, int]
    ops: frozenset[str]
    dq_types: frozenset[str]
    reduce_axes_input: bool
    const_inputs: tuple[tuple[str, int, str], ...]
    topk_max: int | None
    strongly_typed: bool
    float_range_needs_const: bool
    trtexec: TrtexecRules
    python: PythonApi
    sources: dict[str, str] = field(default_factory=dict)
    resize_modes: frozenset[str] = frozenset({"nearest", "linear"})
    resize_coordinate_modes: frozenset[str] = frozenset(
        {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
         "align_corners"})
    resize_nearest_modes: frozenset[str] = frozenset(
        {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]

    def source(self, aspect: str) -> str:
        """The source of one aspect (``opset``, ``ops``, ``qdq``, ``reduce``, ``const``,
        ``trtexec``, ``python``, ...)."""
        return self.sources.get(aspect) or self.sources["ops"]


_COMMON_TRTEXEC = frozenset({"onnx", "saveEngine", "loadEngine", "minShapes", "optShapes",
                             "maxShapes", "useDLACore", "allowGPUFallback", "timingCacheFile",
                             "exportOutput", "verbose", "noTF32"})

@dataclass(frozen=True)
class _Row:
    opset: tuple[int, int]
    ops: frozenset[str]
    dq: frozenset[str]
    reduce_axes_input: bool
    const: tuple[ConstInput, ...]
    topk_max: int | None
    trtexec: TrtexecRules
    python: PythonApi
    parser: str
    trt_tag: str


_ROW: dict[str, _Row] = {
    "8.2": _Row(
        (7, 13), _OPS_82, frozenset({"INT8"}), False, _CONST_82, None,
        TrtexecRules(_COMMON_TRTEXEC | {"workspace", "fp16", "int8", "best", "calib",
                                        "buildOnly", "explicitBatch"}, "--workspace", False, True),
        PythonApi(False, "required", True, True, "absent"),
        f"{OT} @ e9456d5 (parsers/onnx pinned by {NV} 8.2.1, branch 8.2-GA)", "8.2.1"),
    "8.5": _Row(
        (7, 17), _OPS_85, frozenset({"INT8"}), False, _CONST_85, None,
        TrtexecRules(_COMMON_TRTEXEC | {"workspace", "memPoolSize", "fp16", "int8", "best",
                                        "calib", "buildOnly", "explicitBatch"},
                     "--memPoolSize", False, True),
        PythonApi(True, "required", True, True, "absent"),
        f"{OT} @ 7583da4 (parsers/onnx pinned by {NV} 8.5.2, branch 8.5-GA)", "8.5.2"),
    "8.6": _Row(
        (7, 17), _OPS_86, frozenset({"INT8"}), False, _CONST_8X, None,
        TrtexecRules(_COMMON_TRTEXEC | {"workspace", "memPoolSize", "fp16", "int8", "best",
                                        "calib", "buildOnly", "skipInference", "explicitBatch"},
                     "--memPoolSize", False, True),
        PythonApi(True, "required", True, True, "absent"),
        f"{OT} @ release/8.6-GA = 6ba67d3 (parsers/onnx pinned by {NV} v8.6.1)", "v8.6.1"),
    "10": _Row(
        (9, 20), _OPS_10, frozenset({"INT8", "FLOAT8E4M3FN", "INT4"}), True, _CONST_10, 3840,
        TrtexecRules(_COMMON_TRTEXEC | {"memPoolSize", "fp16", "int8", "best", "calib",
                                        "stronglyTyped", "skipInference"},
                     "--memPoolSize", True, True),
        PythonApi(True, "deprecated", True, True, "optional"),
        f"{OT} @ release/10.1-GA = 96e7811 (parsers/onnx pinned by {NV} v10.1.0); later "
        f"10.x additions from its docs/Changelog.md", "v10.3.0 / v10.9.0"),
    "11": _Row(
        (9, 20), _OPS_10, frozenset({"INT8", "FLOAT8E4M3FN", "INT4", "FLOAT4E2M1"}), True,
        _CONST_10, 3840,
        TrtexecRules(_COMMON_TRTEXEC | {"memPoolSize", "stronglyTyped", "skipInference"},
                     "--memPoolSize", True, False),
        PythonApi(True, "absent", False, False, "default"),
        f"{OT} @ release/10.1-GA docs/operators.md plus {NV} v11.0 CHANGELOG.md", "v11.0 / v11.1"),
}


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> (10, 3, 0, 26).

    Raises:
        ConfigError: Not a dotted version.
    """
    if not re.fullmatch(r"\d+(\.\d+)*", text.strip()):
        raise ConfigError(f"TensorRT version {text!r} must look like 10.3.0")
    return tuple(int(p) for p in text.strip().split("."))


def series(version: str) -> str:
    """The table row of a TensorRT version: ``"8.2"``, ``"8.5"``, ``"8.6"``, ``"10"``,
    ``"11"``.

    Raises:
        ConfigError: A version the table has no sources for (before 8.2, 8.3, 9.x, 12+).
    """
    v = parse_version(version) + (0,)
    if v[0] == 8 and v[1] == 2:
        return "8.2"
    if v[0] == 8 and v[1] in (4, 5):
        return "8.5"
    if v[0] == 8 and v[1] == 6:
        return "8.6"
    if v[0] in (10, 11):
        return str(v[0])
    raise ConfigError(f"TensorRT {version} is not in detforge's compatibility table (8.2, "
                      f"8.4-8.6, 10.x, 11.x); pass --tensorrt with the nearest of those")


def rules_for(version: str) -> TrtRules:
    """The rules of TensorRT ``version``, with later minor releases' additions applied.

    Raises:
        ConfigError: The version is not in the table.

    Example:
        >>> rules_for("8.2.1").opset
        (7, 13)
        >>> rules_for("10.9.0").trtexec.workspace
        '--memPoolSize'
    """
    key = series(version)
    v = parse_version(version)[:2]
    row = _ROW[key]
    ops = set(row.ops)
    for since, added in _OPS_ADDED:
        if v >= since:
            ops |= added
    const = tuple((op, i, name) for op, i, name, lifted in row.const
                  if lifted is None or v < lifted)
    dq = set(row.dq)
    if v >= (10, 8):
        dq.add("FLOAT4E2M1")  # onnx-tensorrt Changelog 10.8: FLOAT4E2M1 for quantized networks
    trtexec = row.trtexec
    if key == "10" and v < (10, 1):  # 10.0 still parses --memPoolSize sizes with std::stod
        trtexec = TrtexecRules(trtexec.options, trtexec.workspace, False, True)
    parser, tag = row.parser, row.trt_tag
    sources = {
        "opset": f"{parser}: docs/operators.md (header: supported opset range)",
        "ops": f"{parser}: docs/operators.md (Supported column)",
        "const": f"{parser}: docs/operators.md (Restrictions: 'must be an initializer')",
        "qdq": f"{parser}: docs/operators.md (DequantizeLinear types; zero point must be "
               f"zero) and the Q/DQ importer's UINT8 check; int32 bias: {NV} issue 4542, "
               f"{OT} issue 850",
        "reduce": (f"{parser}: builtin_op_importers.cpp (Reduce* importers pass only input 0;"
                   f" ReduceSum reads input 1 from opset 13)" if not row.reduce_axes_input
                   else f"{parser}: op importers (Reduce* read the axes input)"),
        "resize": f"{parser}: docs/operators.md (Resize restrictions)",
        "topk": f"{parser}: docs/operators.md (TopK: K < 3840)",
        "trtexec": f"{NV} @ {tag}: samples/common/sampleOptions.cpp",
        "python": f"{NV} @ {tag}: python/src/infer/pyCore.cpp",
        "precision": (f"{NV} @ {tag}: python/src/infer/pyCore.cpp (no BuilderFlag.FP16/INT8, "
                      f"no calibrators) and CHANGELOG.md" if key == "11" else
                      f"{NV} @ {tag}: samples/common/sampleOptions.cpp (--int8 without "
                      f"--calib uses placeholder scales)"),
    }
    return TrtRules(
        version=version, series=key, opset=row.opset, ops=frozenset(ops),
        dq_types=frozenset(dq), reduce_axes_input=row.reduce_axes_input, const_inputs=const,
        topk_max=row.topk_max, strongly_typed=key == "11",
        float_range_needs_const=key == "8.2", trtexec=trtexec,
        python=row.python, sources=sources)


CITE = {k: v.parser for k, v in _ROW.items()}
"""The ONNX-importer source of each row, for tables and reports."""


def export_opset(tensorrt_versions: list[str] | tuple[str, ...]) -> int:
    """The opset to export for targets running these TensorRT versions: the preferred
    opset (:data:`PREFERRED_OPSET`) capped by the lowest importer ceiling among them, so one
    ONNX file imports on every target of a bundle (13 when a TensorRT 8.2 device is there).

    Raises:
        ConfigError: A version is not in the table.

    Example:
        >>> export_opset(["10.3.0", "8.2.1"])
        13
    """
    return min([PREFERRED_OPSET] + [rules_for(v).opset[1] for v in tensorrt_versions])
