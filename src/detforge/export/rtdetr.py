"""RT-DETR to ONNX: one ``rtdetr`` layout that the runtime, Ultralytics, DeepStream and
Triton all read.

The ``rtdetr`` layout (``docs/decisions/0038-rtdetr-export-layout.md``):

* input ``input`` ``[B, 3, H, W]`` (B dynamic or fixed), H and W fixed;
* one output ``output`` ``[B, K, 6]`` = x1, y1, x2, y2 (network-input pixels), score,
  class: the decoder's top ``K = min(queries, max_det)`` (query, class) pairs by score, best
  first. No NMS is needed (RT-DETR's queries are matched one-to-one in training).

That tensor is DeepStream-Yolo's (the shipped parser reads it as it is, nvinfer with
``cluster-mode=4``), and it is end-to-end, so ``--layout deepstream`` and ``--layout
end2end`` write it too; ``raw`` has no meaning for RT-DETR (there is no YOLO head). The
graph is traced from Ultralytics' ``RTDETRDecoder`` in export mode with a static decoder
(``dynamic=False``: anchors and ``K`` are constants, which TensorRT needs for ``TopK``),
plus the box conversion. The ONNX file carries detforge's metadata and Ultralytics' own
keys (``names``, ``imgsz``, ``stride``, ``task``, ``end2end``), so ``YOLO("m.onnx")`` predicts
with it as well.

Opset: GridSample (deformable attention) needs 16, so TensorRT 8.2 (Jetson Nano / TX2)
cannot build RT-DETR at all; TensorRT 8.5 has no LayerNormalization, so a target on it gets
opset 16 (LayerNorm decomposed) instead of 17 (:func:`rtdetr_opset`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detforge.core.artefacts.targets import Target
from detforge.core.atomic import atomic_write_bytes
from detforge.core.errors import ConfigError, ExportError, TargetCapabilityError
from detforge.export.trt_compat import PREFERRED_OPSET, rules_for

if TYPE_CHECKING:
    from detforge.export.onnx_export import ExportResult

__all__ = ["RTDETR_MIN_OPSET", "export_rtdetr", "export_rtdetr_graph", "is_rtdetr_model",
           "rtdetr_opset", "ultralytics_props"]

RTDETR_MIN_OPSET = 16
"""``GridSample`` entered ONNX in opset 16."""


def is_rtdetr_model(net: Any) -> bool:
    """True when an Ultralytics model's head is an ``RTDETRDecoder``."""
    layers = getattr(net, "model", None)
    try:
        return type(layers[-1]).__name__ == "RTDETRDecoder"  # type: ignore[index]
    except (TypeError, IndexError):
        return False


def rtdetr_opset(opset: int | str | None, targets: Sequence[Target]) -> int:
    """The opset to export an RT-DETR at for ``targets``.

    ``auto`` is 17 (16 when a target runs TensorRT 8.5, whose importer lacks
    LayerNormalization); a number must be 16 or more and within every target's range.

    Raises:
        ConfigError: A number below 16, above a target's ceiling, or not a number.
        TargetCapabilityError: A target's TensorRT cannot import GridSample (8.2): the
            message names the operator, the TensorRT version and the way out.
    """
    for t in targets:
        rules = rules_for(t.tensorrt)
        if "GridSample" not in rules.ops:
            raise TargetCapabilityError(
                f"{t.name} runs TensorRT {t.tensorrt}, whose ONNX importer has no GridSample "
                f"(RT-DETR's deformable attention; opset {RTDETR_MIN_OPSET}, imports to opset "
                f"{rules.opset[1]}; {rules.source('ops')}). Deploy a YOLO model to "
                f"{t.title}, or an RT-DETR to a target with TensorRT 8.5 or later")
    ceiling = min([PREFERRED_OPSET] + [rules_for(t.tensorrt).opset[1] for t in targets])
    if any("LayerNormalization" not in rules_for(t.tensorrt).ops for t in targets):
        ceiling = min(ceiling, 16)
    if opset is None or opset == "auto":
        return ceiling
    from detforge.export.onnx_export import checked_opset

    return checked_opset(opset, targets, minimum=RTDETR_MIN_OPSET,
                         why="RT-DETR's GridSample needs it; use --opset auto")


def export_rtdetr_graph(net: Any, out: Path, *, imgsz: tuple[int, int], batch: int | None,
                        opset: int, max_det: int = 300) -> int:
    """Trace Ultralytics' RT-DETR ``net`` to ``out`` in the ``rtdetr`` layout.

    Args:
        net: The ``RTDETRDetectionModel`` (not modified).
        out: The ONNX file to write.
        imgsz: Input (height, width).
        batch: Fixed batch, or None for a dynamic one.
        opset: The ONNX opset (16 or more).
        max_det: Most rows ``K`` of the output (capped at the decoder's query count).

    Returns:
        ``K``, the rows per image.

    Raises:
        ExportError: Tracing failed.
    """
    import torch

    model: Any = copy.deepcopy(net).float().eval()
    if hasattr(model, "fuse"):
        model = model.fuse(verbose=False)
    head = model.model[-1]
    head.export, head.format, head.dynamic = True, "onnx", False
    head.shapes = []  # anchors are rebuilt for this input size
    head.max_det = rows = int(min(head.num_queries, max_det))
    wrapped = _pixel_boxes_module()(model, imgsz).eval()
    x = (torch.zeros(batch or 1, 3, *imgsz),)
    dynamic = None if batch else {"input": {0: "batch"}, "output": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the tracer warns about Python control flow on shapes, fixed here by design
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, x, str(out), opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    except Exception as exc:  # torch raises many types from its exporter
        raise ExportError(f"RT-DETR ONNX export failed at opset {opset} ({exc})") from exc
    return rows


def _pixel_boxes_module() -> type:
    """The output module, defined on first use so that importing this file needs no torch."""
    import torch

    class PixelBoxes(torch.nn.Module):
        """The decoder's ``[B, K, 6]`` normalised cx, cy, w, h -> x1, y1, x2, y2 pixels."""

        def __init__(self, net: Any, imgsz: tuple[int, int]) -> None:
            super().__init__()
            self.net = net
            h, w = imgsz
            self.register_buffer("half_size", torch.tensor([w, h, w, h], dtype=torch.float32) / 2)

        def forward(self, x: Any) -> Any:
            y = self.net(x)
            y = y[0] if isinstance(y, list | tuple) else y
            half: Any = self.half_size
            center = y[..., 0:2].repeat(1, 1, 2) * (half * 2)
            size = y[..., 2:4].repeat(1, 1, 2) * half
            sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=y.dtype)
            return torch.cat([center + sign * size, y[..., 4:6]], dim=-1)

    return PixelBoxes


def ultralytics_props(classes: Sequence[str], imgsz: tuple[int, int], batch: int | None,
                      ) -> dict[str, str]:
    """The metadata keys Ultralytics' ``AutoBackend`` reads, so ``YOLO("m.onnx")`` runs the
    file as a detector whose ``[B, K, 6]`` rows need no NMS (``end2end``)."""
    names = {i: n for i, n in enumerate(classes)}
    return {"description": "detforge RT-DETR (rtdetr layout: x1, y1, x2, y2, score, class)",
            "task": "detect", "stride": "32", "names": repr(names), "imgsz": repr(list(imgsz)),
            "batch": str(batch or 1), "end2end": "True",
            "args": repr({"batch": batch or 1, "dynamic": batch is None, "nms": False})}


def export_rtdetr(net: Any, weights: Path, out: Path, *, classes: tuple[str, ...],
                  imgsz: tuple[int, int], batch: int | None, layout: str,
                  opset: int | str | None, targets: Sequence[Target], simplify: bool,
                  max_det: int, letterbox: bool) -> ExportResult:
    """:func:`detforge.export.onnx_export.export_onnx` for an RT-DETR (see the module
    docstring); the graph is checked against every target's TensorRT before it is written.

    Raises:
        ConfigError: ``layout`` is ``raw``, or a bad opset.
        TargetCapabilityError: A target's TensorRT cannot import RT-DETR.
        ExportError: Tracing failed, or a target's TensorRT would refuse the graph.
    """
    import tempfile

    import onnx

    from detforge.export.engine_check import check_graph
    from detforge.export.graph_passes import opset_of
    from detforge.export.onnx_export import ExportResult, _fold_fixed_shapes, lineage_for
    from detforge.runtime.metadata import LetterboxSpec, ModelMeta, embed_meta

    if layout == "raw":
        raise ConfigError(f"{weights}: an RT-DETR has no raw YOLO head ([B, 4+K, N]); its "
                          "decoder's output is already boxes and scores. Use --layout rtdetr "
                          "(the default), which DeepStream and Triton read too")
    notes: tuple[str, ...] = ()
    if layout in ("deepstream", "end2end"):
        notes = (f"RT-DETR: --layout {layout} writes the rtdetr layout, which is {layout}'s "
                 "[B, K, 6] x1, y1, x2, y2, score, class tensor with no NMS needed "
                 "(nvinfer cluster-mode=4)",)
    version = rtdetr_opset(opset, targets)
    with tempfile.TemporaryDirectory(prefix="detforge-rtdetr-") as tmp:
        raw = Path(tmp) / "rtdetr.onnx"
        rows = export_rtdetr_graph(net, raw, imgsz=imgsz, batch=batch, opset=version,
                                   max_det=max_det)
        model = onnx.load(str(raw))
    if simplify:
        model = _fold_fixed_shapes(model)
    _set_output_shape(model, batch, rows)
    lineage = lineage_for(weights)
    meta = ModelMeta(classes=classes, imgsz=imgsz, layout="rtdetr", stride=32,
                     letterbox=LetterboxSpec(scale_fill=not letterbox),
                     dynamic_batch=batch is None, dataset_version=lineage["dataset_version"],
                     run_id=lineage["run_id"], metrics=lineage["metrics"])
    del model.metadata_props[:]
    for key, value in ultralytics_props(classes, imgsz, batch).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    embed_meta(model, meta)
    onnx.checker.check_model(model)
    for t in targets:
        found = check_graph(model, rules_for(t.tensorrt))
        if found:
            shown = "; ".join(v.line() for v in found[:3])
            raise ExportError(f"{weights}: TensorRT {t.tensorrt} ({t.name}) would refuse the "
                              f"RT-DETR graph at opset {version}: {shown}")
    atomic_write_bytes(out, model.SerializeToString())
    return ExportResult(out, "rtdetr", imgsz, batch, classes, opset_of(model), notes)


def _set_output_shape(model: Any, batch: int | None, rows: int) -> None:
    """Name the output's dimensions: ``[batch, K, 6]`` (the tracer leaves K symbolic)."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if batch is None:
        dims[0].dim_param = "batch"
    else:
        dims[0].dim_value = batch
    dims[1].dim_value = rows
    dims[2].dim_value = 6
