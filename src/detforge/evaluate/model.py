"""Evaluate a model file (.pt, .onnx, INT8 .onnx, engine) on a dataset split.

The model runs through :mod:`detforge.runtime` (imported lazily), so every format is
scored by the same code on equal terms. Model classes are matched to dataset classes by
name; a model trained on a superset of classes is allowed (extra classes are dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import ConfigError, DatasetError
from detforge.data.dataset import Dataset
from detforge.evaluate.coco import dataset_to_coco, detections_to_coco
from detforge.evaluate.metrics import EvalResult, evaluate_coco

__all__ = ["Predictor", "class_mapping", "evaluate_model", "evaluate_models", "predict_split"]


class Predictor(Protocol):
    """What evaluation needs from a model (:class:`detforge.runtime.Model` is one)."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    def predict(self, images: Sequence[NDArray[np.uint8]], *, conf: float | None = None,
                iou: float | None = None) -> list[Detections]: ...


def class_mapping(model_classes: Sequence[str], dataset_classes: Sequence[str],
                  ) -> NDArray[np.int32]:
    """For each model class index, the dataset class index (-1: not in the dataset).

    Args:
        model_classes: The model's class names.
        dataset_classes: The dataset's class names.

    Returns:
        ``[len(model_classes)]`` int32 mapping.

    Raises:
        ConfigError: A dataset class is not among the model's classes.
    """
    missing = [c for c in dataset_classes if c not in model_classes]
    if missing:
        raise ConfigError(
            f"the model's classes {list(model_classes)} lack the dataset classes {missing}; "
            f"evaluate a model trained on this dataset's classes {list(dataset_classes)}")
    index = {c: i for i, c in enumerate(dataset_classes)}
    return np.array([index.get(c, -1) for c in model_classes], np.int32)


def _read_rgb(path: Path) -> NDArray[np.uint8]:
    from PIL import UnidentifiedImageError

    from detforge.core.imageio import open_image

    try:
        with open_image(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DatasetError("image file not found; check the dataset root", path=path) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"not a readable image ({exc}); run `detforge data validate`",
                           path=path) from exc


def predict_split(model: Predictor, dataset: Dataset, rows: Sequence[int], *,
                  conf: float, iou: float, batch: int) -> dict[int, Detections]:
    """Run ``model`` on dataset images ``rows``, with detections in dataset class indices.

    Args:
        model: The loaded model.
        dataset: The dataset (images are read from ``dataset.root``).
        rows: Image rows to run.
        conf: Confidence threshold of the model.
        iou: NMS IoU threshold.
        batch: Images per inference call.

    Returns:
        Detections by image row.

    Raises:
        ConfigError: The model's classes do not cover the dataset's.
        DatasetError: An image is missing or unreadable.
    """
    from tqdm import tqdm

    mapping = class_mapping(model.classes, dataset.classes.names)
    out: dict[int, Detections] = {}
    with tqdm(total=len(rows), desc="evaluate", unit="img", leave=False) as bar:
        for start in range(0, len(rows), batch):
            chunk = [int(r) for r in rows[start:start + batch]]
            images = [_read_rgb(dataset.image_path(r)) for r in chunk]
            for r, det in zip(chunk, model.predict(images, conf=conf, iou=iou), strict=True):
                cls = mapping[det.class_ids] if len(det) else det.class_ids
                keep = cls >= 0
                out[r] = Detections(det.xyxy[keep], det.scores[keep],
                                    cls[keep].astype(np.int32))
            bar.update(len(chunk))
    return out


def evaluate_model(model_path: str | Path | Predictor, dataset: Dataset, *,
                   split: str | None = "val", imgsz: tuple[int, int] | None = None,
                   conf: float = 0.001, iou: float = 0.7, batch: int = 8,
                   device: str = "auto", operating_conf: float = 0.25) -> EvalResult:
    """Run a model on a dataset split and evaluate its detections.

    Args:
        model_path: A model file or directory for :func:`detforge.runtime.load_model`, or
            an already loaded model.
        dataset: The labelled dataset; images are read from ``dataset.root``.
        split: The split to evaluate (None: every image).
        imgsz: Input ``(height, width)`` for models with a dynamic input size.
        conf: Confidence threshold of the model (keep it low for mAP).
        iou: NMS IoU threshold.
        batch: Images per inference call.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        operating_conf: Confidence of the P/R/F1 numbers and the confusion matrix.

    Returns:
        The evaluation result.

    Raises:
        ConfigError: Bad options, or the model's classes do not cover the dataset's.
        DatasetError: The split is empty or an image is unreadable.
        BackendError: The model cannot be loaded or run.

    Example:
        >>> res = evaluate_model("runs/exp/model.onnx", ds, split="val")  # doctest: +SKIP
    """
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    gt = dataset_to_coco(dataset, split=split)
    if isinstance(model_path, str | Path):
        from detforge.runtime import load_model

        model: Any = load_model(model_path, device=device, imgsz=imgsz, conf=conf, iou=iou)
        owned = True
    else:
        model, owned = model_path, False
    try:
        preds = predict_split(model, dataset, gt.image_rows.tolist(), conf=conf, iou=iou,
                              batch=batch)
    finally:
        if owned:
            model.close()
    return evaluate_coco(gt.coco, detections_to_coco(preds, gt), conf=operating_conf)


def evaluate_models(models: Sequence[str | Path], dataset: Dataset, *,
                    split: str | None = "val", imgsz: tuple[int, int] | None = None,
                    conf: float = 0.001, iou: float = 0.7, batch: int = 8,
                    device: str = "auto", operating_conf: float = 0.25,
                    ) -> dict[str, EvalResult]:
    """Evaluate several models on the same split, for :func:`~detforge.evaluate.compare`.

    Args:
        models: Model files or directories.
        dataset: The labelled dataset.
        split: The split to evaluate (None: every image).
        imgsz: Input ``(height, width)`` for models with a dynamic input size.
        conf: Confidence threshold of the models.
        iou: NMS IoU threshold.
        batch: Images per inference call.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        operating_conf: Confidence of the P/R/F1 numbers and the confusion matrix.

    Returns:
        Results keyed by model file name (the full path where names repeat), in order.

    Raises:
        ConfigError: No models given, or as :func:`evaluate_model`.
        DatasetError: As :func:`evaluate_model`.
        BackendError: As :func:`evaluate_model`.
    """
    if not models:
        raise ConfigError("give at least one model to evaluate")
    names = [Path(m).name for m in models]
    if len(set(names)) != len(names):
        names = [str(m) for m in models]
    return {name: evaluate_model(m, dataset, split=split, imgsz=imgsz, conf=conf, iou=iou,
                                 batch=batch, device=device, operating_conf=operating_conf)
            for name, m in zip(names, models, strict=True)}
