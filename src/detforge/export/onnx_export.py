"""Export a trained detector (.pt) to ONNX in the layout a consumer needs.

Layouts:

* ``raw`` -- the head as trained: ``[B, 4+K, N]`` (cx, cy, w, h in input pixels, class
  scores); the consumer decodes and runs NMS (detforge's runtime does).
* ``deepstream`` -- input ``input`` ``[B, 3, H, W]``, one output ``output`` ``[B, N, 6]`` =
  x1, y1, x2, y2, score, class in network-input pixels: what DeepStream-Yolo's stock
  ``NvDsInferParseYolo`` parser reads. Built by appending a few ONNX ops to the raw graph.
* ``end2end`` -- NMS inside the graph (ONNX ``NonMaxSuppression`` through torchvision),
  output ``[B, max_det, 6]`` with the same columns, zero-padded.
* ``rtdetr`` -- RT-DETR models only (:mod:`detforge.export.rtdetr`): input ``input``, output
  ``output`` ``[B, K, 6]`` = x1, y1, x2, y2, score, class in input pixels, the decoder's top K
  by score, no NMS needed. It is DeepStream's tensor and end-to-end, so ``deepstream`` and
  ``end2end`` give it for an RT-DETR too; ``auto`` (the default) is ``rtdetr`` for RT-DETR and
  ``raw`` otherwise.

The model and its metadata (classes, input size, letterbox, normalisation, layout,
stride, dataset version, run id, metrics) travel in one file: see
``docs/decisions/0002-onnx-model-metadata.md``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detforge.core.artefacts.targets import Target
from detforge.core.atomic import atomic_write_bytes
from detforge.core.errors import ConfigError, ExportError, MissingExtraError
from detforge.export.graph_passes import opset_of, reduce_node, softmax_inner_axis, split_node
from detforge.export.trt_compat import export_opset, rules_for

__all__ = ["EXPORT_LAYOUTS", "MIN_OPSET", "ExportResult", "append_deepstream_decode",
           "export_onnx", "lineage_for", "resolve_opset"]

EXPORT_LAYOUTS = ("auto", "raw", "deepstream", "end2end", "rtdetr")
MIN_OPSET = 13
"""Oldest opset exported: the ONNX ceiling of TensorRT 8.2 (Jetson Nano/TX2), and the first
whose ``Softmax`` works on one axis and whose ``Split`` / ``ReduceSum`` take tensor inputs,
which the graph passes write."""


def resolve_opset(opset: int | str | None, targets: Sequence[Target] = ()) -> int:
    """The opset to export: ``auto`` (or None) is the highest every target's TensorRT
    imports, capped at 17 (:func:`detforge.export.trt_compat.export_opset`); a number is
    checked against the targets.

    Raises:
        ConfigError: Not ``auto`` or a number from 13, or above what a target imports.

    Example:
        >>> from detforge.core.artefacts import get_target
        >>> resolve_opset("auto", [get_target("jetson-nano"), get_target("t4")])
        13
    """
    if opset is None or opset == "auto":
        return export_opset([t.tensorrt for t in targets])
    return checked_opset(opset, targets, minimum=MIN_OPSET,
                         why="detforge's graph passes need it (TensorRT 8.2 imports up to 13)")


def checked_opset(opset: int | str, targets: Sequence[Target], *, minimum: int,
                  why: str) -> int:
    """An opset given as a number: at least ``minimum`` (``why`` says why) and at most what
    every target's TensorRT imports.

    Raises:
        ConfigError: Not a number, below ``minimum`` or above a target's ceiling.
    """
    try:
        n = int(opset)
    except ValueError:
        raise ConfigError(f"--opset {opset!r} must be 'auto' or a number, e.g. 17") from None
    if n < minimum:
        raise ConfigError(f"--opset {n}: opset {minimum} at least; {why}")
    for t in targets:
        hi = rules_for(t.tensorrt).opset[1]
        if n > hi:
            raise ConfigError(f"--opset {n}: {t.name} runs TensorRT {t.tensorrt}, which imports "
                              f"opset {hi} at most; use --opset auto or {hi}")
    return n


@dataclass(frozen=True)
class ExportResult:
    """An exported ONNX file and what it holds."""

    path: Path
    layout: str
    imgsz: tuple[int, int]
    batch: int | None
    classes: tuple[str, ...]
    opset: int
    notes: tuple[str, ...] = ()


def _ultralytics() -> Any:
    try:
        from detforge.integrations.ultralytics import import_ultralytics
    except ImportError as exc:  # pragma: no cover - the train extra is absent
        raise MissingExtraError("export needs the train extra: pip install 'detforge[train]'") \
            from exc
    return import_ultralytics()


def lineage_for(weights: Path) -> dict[str, Any]:
    """Dataset version, run id, metrics and classes from the ``run.json`` of the run that made
    ``weights``.

    Looks in the weights' folder and its parent (``runs/<name>/<version>/weights/best.pt``).
    Returns None values when the weights did not come from a detforge run, or its run.json
    cannot be read.
    """
    empty: dict[str, Any] = {"dataset_version": None, "run_id": None, "metrics": None,
                             "classes": None}
    for folder in (weights.parent, weights.parent.parent):
        run_json = folder / "run.json"
        if not run_json.is_file():
            continue
        try:
            run = json.loads(run_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return empty
        if not isinstance(run, dict):
            return empty
        dataset: dict[str, Any] = _dict_or_empty(run.get("dataset"))
        mlflow: dict[str, Any] = _dict_or_empty(run.get("mlflow"))
        named = "/".join(str(run[k]) for k in ("name", "version") if run.get(k))
        metrics = run.get("final_metrics") or run.get("metrics")
        classes = dataset.get("classes")
        return {"dataset_version": dataset.get("version") or run.get("dataset_version"),
                "run_id": run.get("run_id") or mlflow.get("run_id") or named or None,
                "metrics": metrics if isinstance(metrics, dict) else None,
                "classes": tuple(map(str, classes)) if isinstance(classes, list) else None}
    return empty


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def export_onnx(weights: str | Path, out: str | Path, *, imgsz: tuple[int, int] | None = None,
                batch: int | None = None, layout: str = "auto",
                opset: int | str | None = "auto", targets: Sequence[Target] = (),
                simplify: bool = True, max_det: int = 300, conf: float = 0.25, iou: float = 0.7,
                max_batch: int = 16) -> ExportResult:
    """Export Ultralytics weights to an ONNX file with detforge metadata.

    Args:
        weights: A ``.pt`` file (YOLOv8 / YOLO11 / RT-DETR detection).
        out: The ONNX file to write (atomically).
        imgsz: Input (height, width); both must be multiples of the model stride. None: the
            input detforge trained the model at (letterboxed runs and every RT-DETR), else
            640x640.
        batch: Fixed batch size, or None for a dynamic batch dimension.
        layout: ``auto`` (``rtdetr`` for an RT-DETR, else ``raw``), ``raw``, ``deepstream``,
            ``end2end`` or ``rtdetr`` (see the module docstring).
        opset: ONNX opset, or ``auto`` (None): what ``targets`` import (:func:`resolve_opset`;
            17 without targets, 13 with a TensorRT 8.2 device).
        targets: The devices the model is for; they decide ``auto`` and bound a number.
        simplify: Run onnxslim on the graph (again once H and W are fixed, which folds the
            anchor grid and shape arithmetic into constants).
        max_det: Detections kept per image by ``end2end``.
        conf: Score threshold inside ``end2end``.
        iou: NMS IoU threshold inside ``end2end``.
        max_batch: Largest batch a dynamic ``end2end`` graph serves (its NMS loop is unrolled).

    Returns:
        What was written.

    Raises:
        ConfigError: Unknown layout, a layout the model has not (``raw`` for an RT-DETR,
            ``rtdetr`` for a YOLO) or a size that is not a stride multiple.
        TargetCapabilityError: A target's TensorRT cannot run the model (RT-DETR on 8.2).
        ExportError: Ultralytics failed, the weights are not a detection model, or a
            target's TensorRT would refuse the graph.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {list(EXPORT_LAYOUTS)}")
    weights = Path(weights)
    if not weights.is_file():
        raise ExportError(f"{weights}: weights file not found")
    if weights.suffix.lower() != ".pt":
        raise ExportError(f"{weights}: not Ultralytics weights (a {weights.suffix or 'suffix-less'}"
                          f" file); export takes a trained .pt, e.g. runs/NAME/v1/weights/best.pt")
    ul = _ultralytics()
    try:
        model = ul.YOLO(str(weights))
    except Exception as exc:
        raise ExportError(f"{weights}: Ultralytics cannot load these weights ({exc})") from exc
    if model.task != "detect":
        raise ExportError(f"{weights}: a {model.task!r} model; only detection models export")
    from detforge.export.rtdetr import is_rtdetr_model
    from detforge.runtime.backends.torch import trained_input

    stride = int(max(model.model.stride))
    trained, letterbox = trained_input(model.model)
    rtdetr = is_rtdetr_model(model.model)
    if imgsz is None:
        imgsz = trained if trained and (rtdetr or letterbox) else (640, 640)
    if imgsz[0] % stride or imgsz[1] % stride:
        near = (max(stride, round(imgsz[0] / stride) * stride),
                max(stride, round(imgsz[1] / stride) * stride))
        raise ConfigError(f"imgsz {imgsz[0]},{imgsz[1]} must be multiples of the stride {stride};"
                          f" the nearest is {near[0]},{near[1]}")
    names = model.names
    classes = tuple(names[i] for i in sorted(names))
    if rtdetr:
        from detforge.export.rtdetr import export_rtdetr

        return export_rtdetr(model.model, weights, Path(out), classes=classes, imgsz=imgsz,
                             batch=batch, layout=layout, opset=opset, targets=targets,
                             simplify=simplify, max_det=max_det, letterbox=letterbox)
    if layout == "rtdetr":
        raise ConfigError(f"{weights}: the rtdetr layout is for RT-DETR models; this YOLO "
                          f"exports as raw (the default), deepstream or end2end")
    layout = "raw" if layout == "auto" else layout
    opset = resolve_opset(opset, targets)
    # Ultralytics uses torch's TorchScript exporter on purpose (in-graph NMS, dynamic batch);
    # torch flags that path as deprecated and the tracer warns about shape-dependent Python
    # control flow in the head: neither is actionable here, the parity check is.
    with tempfile.TemporaryDirectory(prefix="detforge-export-") as tmp, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = Path(tmp) / weights.name
        shutil.copy2(weights, local)  # Ultralytics writes next to the weights: keep it out
        from ultralytics.utils import LOGGER

        level = LOGGER.level
        LOGGER.setLevel(logging.WARNING)  # its "Predict:/Validate:/Visualize:" banner
        try:
            produced = ul.YOLO(str(local)).export(
                format="onnx", imgsz=list(imgsz), dynamic=batch is None,
                batch=batch or (max_batch if layout == "end2end" else 1),
                simplify=simplify, opset=opset, nms=layout == "end2end", max_det=max_det,
                conf=conf, iou=iou, device="cpu", verbose=False)
        except Exception as exc:
            raise ExportError(f"{weights}: ONNX export failed ({exc})") from exc
        finally:
            LOGGER.setLevel(level)
        import onnx

        graph_model = onnx.load(str(produced))
    _fix_input_shape(graph_model, imgsz, batch)
    if simplify:
        graph_model = _fold_fixed_shapes(graph_model)
    softmax_inner_axis(graph_model)  # same outputs, ~13 % faster on the CPU
    if layout == "deepstream":
        append_deepstream_decode(graph_model, len(classes))
    from detforge.runtime.metadata import ModelMeta, embed_meta

    lineage = lineage_for(weights)
    meta = ModelMeta(classes=classes, imgsz=imgsz, layout=layout, stride=stride,
                     dynamic_batch=batch is None, dataset_version=lineage["dataset_version"],
                     run_id=lineage["run_id"], metrics=lineage["metrics"])
    del graph_model.metadata_props[:]
    embed_meta(graph_model, meta)
    onnx.checker.check_model(graph_model)
    out = Path(out)
    atomic_write_bytes(out, graph_model.SerializeToString())
    used_opset = opset_of(graph_model)
    return ExportResult(out, layout, imgsz, batch, classes, used_opset)


def _fix_input_shape(model: Any, imgsz: tuple[int, int], batch: int | None) -> None:
    """Pin H and W (Ultralytics' dynamic export frees them); keep batch dynamic or fixed."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if batch is None:
        dims[0].dim_param = "batch"
    else:
        dims[0].dim_value = batch
    dims[2].dim_value, dims[3].dim_value = imgsz


def _fold_fixed_shapes(model: Any) -> Any:
    """onnxslim once more, now that only the batch is dynamic: the anchor grid (a float
    ``Range`` over the feature map size, which TensorRT 8.2 cannot import unless constant)
    and the shape arithmetic fold into constants, as in a fixed-size export."""
    import onnxslim

    try:
        return onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises many kinds; the unfolded graph is still valid
        logging.getLogger(__name__).warning("onnxslim could not fold the graph (%s)", exc)
        return model


def append_deepstream_decode(model: Any, num_classes: int) -> None:
    """Raw ``[B, 4+K, N]`` -> ``output`` ``[B, N, 6]``; input renamed to ``input``.

    The appended nodes use the forms of the model's own opset (:func:`reduce_node`,
    :func:`split_node`), so the graph stays within what its opset's consumers import.
    """
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    opset = opset_of(model)
    raw = g.output[0].name
    old_in = g.input[0].name
    for node in g.node:
        node.input[:] = ["input" if i == old_in else i for i in node.input]
    g.input[0].name = "input"
    g.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "ds_half"))
    g.node.extend([
        helper.make_node("Transpose", [raw], ["ds_t"], perm=[0, 2, 1], name="ds_transpose"),
        split_node(g, "ds_t", ["ds_xy", "ds_wh", "ds_cls"], [2, 2, num_classes], 2, opset,
                   "ds_split"),
        helper.make_node("Mul", ["ds_wh", "ds_half"], ["ds_hwh"], name="ds_half_wh"),
        helper.make_node("Sub", ["ds_xy", "ds_hwh"], ["ds_p1"], name="ds_x1y1"),
        helper.make_node("Add", ["ds_xy", "ds_hwh"], ["ds_p2"], name="ds_x2y2"),
        reduce_node(g, "ReduceMax", "ds_cls", "ds_score", [2], opset, "ds_score"),
        helper.make_node("ArgMax", ["ds_cls"], ["ds_arg"], axis=2, keepdims=1, name="ds_argmax"),
        helper.make_node("Cast", ["ds_arg"], ["ds_label"], to=TensorProto.FLOAT,
                         name="ds_label"),
        helper.make_node("Concat", ["ds_p1", "ds_p2", "ds_score", "ds_label"], ["output"],
                         axis=2, name="ds_output"),
    ])
    batch_dim = g.input[0].type.tensor_type.shape.dim[0]
    b: int | str = batch_dim.dim_value if batch_dim.HasField("dim_value") else "batch"
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, [b, None, 6]))
