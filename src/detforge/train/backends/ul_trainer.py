"""detforge's Ultralytics trainer and validator: hooks, not a fork.

:func:`trainer_class` derives a trainer from Ultralytics' own (``DetectionTrainer`` for YOLO,
``RTDETRTrainer`` for RT-DETR) that overrides a few documented methods:

* ``build_dataset`` -- with a letterboxed ``shape``, :class:`~.rect_data.RectDataset` at
  exactly (height, width) for training and validation;
* ``preprocess_batch`` -- multi-scale that keeps the aspect ratio: each batch is resized by a
  random factor in ``1 +- multi_scale``, each side rounded to a multiple of 32 (Ultralytics'
  own multi-scale scales the longer side of a square);
* ``_setup_scheduler`` -- adds a ``multistep`` learning-rate schedule (milestones, gamma) to
  Ultralytics' linear and cosine ones; its warm-up still ramps towards it;
* ``optimizer_step`` -- clips gradients to ``max_grad_norm`` (Ultralytics hard-codes 10),
  or not at all;
* ``_setup_train`` -- sets the EMA's decay and time constant (Ultralytics: 0.9999, 2000);
  "off" makes the EMA follow the weights exactly (Ultralytics validates and saves the EMA);
* ``save_model`` / ``args.yaml`` -- record the real (height, width) as ``imgsz`` and, in the
  model's ``yaml``, ``detforge: {imgsz, letterbox}``, so export and the runtime preprocess as
  training did;
* ``get_validator`` -- the validator scales RT-DETR's normalised boxes by the real input
  (Ultralytics' scales them by ``imgsz``, a square).

Import after :func:`detforge.train.offline.import_ultralytics`.
"""

from __future__ import annotations

import bisect
import importlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detforge.train.backends.rect_data import RectDataset

# Ultralytics is untyped here on purpose (Any): detforge relies on its documented behaviour.
_ul: Any = importlib.import_module("ultralytics.utils")
_torch_utils: Any = importlib.import_module("ultralytics.utils.torch_utils")
_rtdetr_train: Any = importlib.import_module("ultralytics.models.rtdetr.train")
_rtdetr_val: Any = importlib.import_module("ultralytics.models.rtdetr.val")
_detect: Any = importlib.import_module("ultralytics.models.yolo.detect")

__all__ = ["MODEL_KEY", "TrainerOptions", "multistep_factor", "scaled_shape", "trainer_class",
           "validator_class"]

MODEL_KEY = "detforge"
"""Key of the model ``yaml`` entry that records the input detforge trained at."""


@dataclass(frozen=True)
class TrainerOptions:
    """What detforge's trainer does differently from Ultralytics' own.

    Attributes:
        shape: (height, width) trained letterboxed; None: Ultralytics' square pipeline.
        multi_scale: Aspect-keeping multi-scale range (with ``shape``).
        max_grad_norm: Gradient clipping norm; None: no clipping.
        lr_schedule: ``linear``, ``cosine`` or ``multistep``.
        milestones: Epochs where ``multistep`` multiplies the learning rate by ``gamma``.
        gamma: ``multistep`` factor.
        ema: Average the weights (off: the EMA copies them each step).
        ema_decay: Largest EMA decay.
        ema_tau: EMA ramp time constant, in optimiser steps.
    """

    shape: tuple[int, int] | None = None
    multi_scale: float = 0.0
    max_grad_norm: float | None = 10.0
    lr_schedule: str = "linear"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    ema: bool = True
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0


def scaled_shape(shape: tuple[int, int], factor: float, stride: int = 32) -> tuple[int, int]:
    """``shape`` scaled by ``factor``, each side rounded to a multiple of ``stride``.

    Example:
        >>> scaled_shape((288, 512), 1.25)
        (352, 640)
    """
    return (max(stride, round(shape[0] * factor / stride) * stride),
            max(stride, round(shape[1] * factor / stride) * stride))


def multistep_factor(epoch: float, milestones: tuple[int, ...] | list[int], gamma: float) -> float:
    """The ``multistep`` learning-rate factor at ``epoch``: ``gamma`` to the number of
    milestones reached (torch's ``MultiStepLR``).

    Example:
        >>> [multistep_factor(e, (2, 4), 0.1) for e in range(6)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
    """
    return float(gamma ** bisect.bisect_right(sorted(milestones), epoch))


class _Hooks:
    """The overrides, mixed in front of an Ultralytics trainer class."""

    detforge = TrainerOptions()
    # set by Ultralytics' BaseTrainer
    args: Any
    data: Any
    model: Any
    ema: Any
    optimizer: Any
    scaler: Any
    save_dir: Any
    lf: Any
    scheduler: Any

    def __init__(self, cfg: Any = None, overrides: dict[str, Any] | None = None,
                 _callbacks: Any = None) -> None:
        super().__init__(cfg or _ul.DEFAULT_CFG, overrides, _callbacks)  # type: ignore[call-arg]
        shape = self.detforge.shape
        if shape is not None:
            # Ultralytics' own code takes ``imgsz`` as the longer side; the file says the truth.
            self.args.imgsz = max(shape)
            args = dict(vars(self.args)) | {"imgsz": list(shape)}
            _ul.YAML.save(Path(self.save_dir) / "args.yaml", args)

    # -- data ---------------------------------------------------------------------------

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
        shape = self.detforge.shape
        if shape is None:
            return super().build_dataset(img_path, mode, batch)  # type: ignore[misc]
        return RectDataset(
            img_path=img_path, shape=shape, batch_size=batch, augment=mode == "train",
            hyp=self.args, rect=False, cache=self.args.cache or None,
            single_cls=self.args.single_cls or False, stride=32, pad=0.0,
            prefix=_ul.colorstr(f"{mode}: "), task=self.args.task, classes=self.args.classes,
            data=self.data, fraction=self.args.fraction if mode == "train" else 1.0)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = super().preprocess_batch(batch)  # type: ignore[misc]
        spread = self.detforge.multi_scale
        if self.detforge.shape is None or spread <= 0:
            return batch
        imgs = batch["img"]
        size = scaled_shape(tuple(imgs.shape[2:]), random.uniform(1 - spread, 1 + spread))
        if size != tuple(imgs.shape[2:]):
            batch["img"] = torch.nn.functional.interpolate(imgs, size=size, mode="bilinear",
                                                           align_corners=False)
        return batch

    # -- optimisation -------------------------------------------------------------------

    def _setup_scheduler(self) -> None:
        if self.detforge.lr_schedule != "multistep":
            super()._setup_scheduler()  # type: ignore[misc]
            return
        milestones, gamma = self.detforge.milestones, self.detforge.gamma

        def lf(epoch: float) -> float:
            return multistep_factor(epoch, milestones, gamma)

        self.lf = lf
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=lf)

    def optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.detforge.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                           max_norm=self.detforge.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(self.model)

    def _setup_train(self) -> None:
        super()._setup_train()  # type: ignore[misc]
        opts = self.detforge
        if not opts.ema:
            self.ema.decay = lambda updates: 0.0
        else:
            decay, tau = opts.ema_decay, opts.ema_tau
            self.ema.decay = lambda updates: decay * (1 - math.exp(-updates / tau))

    # -- records ------------------------------------------------------------------------

    def set_model_attributes(self) -> None:
        super().set_model_attributes()  # type: ignore[misc]
        shape = self.detforge.shape
        if shape is not None:
            model = _torch_utils.unwrap_model(self.model)
            model.yaml = {**model.yaml, MODEL_KEY: {"imgsz": list(shape), "letterbox": True}}

    def save_model(self) -> Any:
        shape = self.detforge.shape
        if shape is None:
            return super().save_model()  # type: ignore[misc]
        imgsz = self.args.imgsz
        self.args.imgsz = list(shape)  # the checkpoint's train_args name the real input
        try:
            return super().save_model()  # type: ignore[misc]
        finally:
            self.args.imgsz = imgsz

    def get_validator(self) -> Any:
        validator = super().get_validator()  # type: ignore[misc]
        if self.detforge.shape is not None:
            validator.args.imgsz = list(self.detforge.shape)
        return validator


class _RectValidatorHooks:
    """A validator that builds letterboxed datasets at ``args.imgsz`` = (height, width)."""

    args: Any
    data: Any

    def build_dataset(self, img_path: str, mode: str = "val", batch: int | None = None) -> Any:
        imgsz = self.args.imgsz
        shape = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[-1]))
        return RectDataset(img_path=img_path, shape=shape, batch_size=batch, augment=False,
                           hyp=self.args, rect=False, cache=self.args.cache or None,
                           single_cls=self.args.single_cls or False, stride=32, pad=0.0,
                           prefix=_ul.colorstr(f"{mode}: "), task="detect",
                           classes=self.args.classes, data=self.data)


def trainer_class(rtdetr: bool, options: TrainerOptions) -> type:
    """A trainer class for ``model.train(trainer=...)``: Ultralytics' detection or RT-DETR
    trainer with detforge's hooks and these options."""
    base = _rtdetr_train.RTDETRTrainer if rtdetr else _detect.DetectionTrainer
    name = "DetforgeRTDETRTrainer" if rtdetr else "DetforgeDetectionTrainer"
    return type(name, (_Hooks, base), {"detforge": options})


def validator_class(rtdetr: bool) -> type:
    """A validator class for ``model.val(validator=...)`` on letterboxed inputs."""
    base = _rtdetr_val.RTDETRValidator if rtdetr else _detect.DetectionValidator
    name = "DetforgeRTDETRValidator" if rtdetr else "DetforgeDetectionValidator"
    return type(name, (_RectValidatorHooks, base), {})
