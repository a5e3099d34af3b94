"""Typed training config: presets, a YAML file, CLI flags and ``key.sub=value`` overrides.

Precedence, lowest first: the model defaults, the preset (``--preset`` or ``preset:`` in the
file), the config file (``--config``), the CLI flags, then ``--set key.sub=value``. Every
layer goes through :class:`TrainConfig`, which rejects unknown keys and names the valid ones.

Image size: ``imgsz`` is an int or ``[height, width]``. A YOLO model trains on square
mosaics by default, so a rectangular size (the traffic preset's ``[384, 640]``) trains at its
longer side (:attr:`TrainConfig.train_imgsz`) and is kept in the config for export, which
builds the rectangular input. ``rect: true`` (and every RT-DETR model) trains at exactly
``[height, width]`` instead: images keep their aspect ratio inside a grey letterbox, mosaics
are ``2H x 2W``, and multi-scale (``augment.multi_scale``) keeps the aspect ratio
(:attr:`TrainConfig.train_shape`; see ``docs/decisions/0037-rtdetr-rectangular-training.md``).
Both sides must then be multiples of the model stride (32); a size that is not is refused
with the nearest multiples (1080 -> 1088).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from detforge.core.config import StrictModel, apply_overrides, load_config
from detforge.core.errors import ConfigError
from detforge.core.imgsz import parse_imgsz as core_parse_imgsz

__all__ = ["DETFORGE_MODELS", "OVERFIT_STOP_MAP50", "PRESETS", "STRIDE", "AugmentConfig",
           "EmaConfig", "OptimConfig", "TrackingConfig", "TrainConfig", "config_to_yaml",
           "is_rtdetr", "load_preset", "load_train_config", "model_for_size", "model_source",
           "nearest_shape", "overfit_config", "overfit_done", "parse_imgsz", "parse_sizes"]

PRESETS = ("industrial", "ppe", "traffic", "traffic-rtdetr", "wildlife")
"""Names of the presets shipped in ``detforge/train/presets/``."""

DETFORGE_MODELS = ("rtdetr-tiny.yaml",)
"""Model YAMLs shipped with detforge (``detforge/train/models/``), named like Ultralytics'.
``rtdetr-tiny.yaml`` is an RT-DETR of 0.8 M parameters that trains on a CPU in minutes
(tests, demos and the learning check)."""

STRIDE = 32
"""Largest stride of every supported model: a trained input side is a multiple of it."""

# Ultralytics model YAMLs detforge supports by name (built from scratch, no download).
_MODEL_NAME = re.compile(r"^(?P<family>yolov8|yolo11)(?P<size>[nsmlx])\.yaml$"
                         r"|^rtdetr-(?P<rsize>[lx])\.yaml$")
_SIZES = ("n", "s", "m", "l", "x")


class OptimConfig(StrictModel):
    """Optimiser, learning-rate schedule, warm-up and nominal batch (gradient accumulation)."""

    optimizer: Literal["auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] = "auto"
    lr0: float = Field(0.01, gt=0)
    lrf: float = Field(0.01, gt=0, le=1)
    momentum: float = Field(0.937, ge=0, lt=1)
    weight_decay: NonNegativeFloat = 0.0005
    warmup_epochs: NonNegativeFloat = 3.0
    """Epochs over which the learning rate ramps up from 0 (biases down from 0.1)."""
    cos_lr: bool = False
    """Same as ``lr_schedule: cosine`` (kept for older configs)."""
    lr_schedule: Literal["linear", "cosine", "multistep"] = "linear"
    """``linear`` and ``cosine`` decay from ``lr0`` to ``lr0 * lrf`` over the run;
    ``multistep`` multiplies ``lr0`` by ``lr_gamma`` at each epoch of ``lr_milestones`` (as
    torch's ``MultiStepLR``; ``lrf`` is then unused)."""
    lr_milestones: list[PositiveInt] = Field(default_factory=list)
    """Epochs (0-based, increasing) at which a ``multistep`` schedule steps down."""
    lr_gamma: float = Field(0.1, gt=0, le=1)
    """Factor of each ``multistep`` step."""
    max_grad_norm: PositiveFloat | None = 10.0
    """Gradients are clipped to this total L2 norm before each step (Ultralytics' own value
    is 10; RT-DETR's reference recipe uses 0.1); None turns clipping off."""
    nbs: PositiveInt = 64
    """Nominal batch: gradients accumulate over ``round(nbs / batch)`` batches per step."""

    @model_validator(mode="before")
    @classmethod
    def _schedule_alias(cls, data: Any) -> Any:
        """``cos_lr: true`` is ``lr_schedule: cosine``; the two must not disagree."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        schedule = data.get("lr_schedule")
        if data.get("cos_lr") is True:
            if schedule not in (None, "cosine"):
                raise ValueError(f"cos_lr is true but lr_schedule is {schedule!r}; drop cos_lr "
                                 "(lr_schedule names the schedule)")
            data["lr_schedule"] = "cosine"
        elif schedule == "cosine":
            data["cos_lr"] = True
        return data

    @model_validator(mode="after")
    def _check_milestones(self) -> OptimConfig:
        ms = self.lr_milestones
        if self.lr_schedule == "multistep" and not ms:
            raise ValueError("lr_schedule multistep needs lr_milestones, e.g. [60, 80] (epochs)")
        if ms and self.lr_schedule != "multistep":
            raise ValueError(f"lr_milestones {ms} apply to lr_schedule multistep, not "
                             f"{self.lr_schedule!r}; set lr_schedule: multistep or drop them")
        if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
            raise ValueError(f"lr_milestones {ms} must increase strictly")
        return self


class EmaConfig(StrictModel):
    """Exponential moving average of the weights, which validation and the saved model use.

    The weight given to the running average after ``n`` optimiser steps is
    ``decay * (1 - exp(-n / tau))`` (Ultralytics' ``ModelEMA``): small early on, ``decay``
    once ``n`` is a few ``tau``. Off, the saved model is the last step's weights.
    """

    enabled: bool = True
    decay: float = Field(0.9999, ge=0, lt=1)
    tau: PositiveFloat = 2000.0


class AugmentConfig(StrictModel):
    """Training-time augmentation (probabilities and fractions)."""

    hsv_h: float = Field(0.015, ge=0, le=1)
    hsv_s: float = Field(0.7, ge=0, le=1)
    hsv_v: float = Field(0.4, ge=0, le=1)
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.1, ge=0, le=1)
    scale: float = Field(0.5, ge=0)
    fliplr: float = Field(0.5, ge=0, le=1)
    flipud: float = Field(0.0, ge=0, le=1)
    mosaic: float = Field(1.0, ge=0, le=1)
    mixup: float = Field(0.0, ge=0, le=1)
    close_mosaic: NonNegativeInt = 10
    multi_scale: float = Field(0.0, ge=0, lt=1)
    """Each training batch is resized by a random factor in ``1 +- multi_scale``, both sides
    rounded to multiples of 32 (the aspect ratio is kept); 0 trains at ``imgsz`` only."""


class TrackingConfig(StrictModel):
    """MLflow tracking. ``uri`` None: ``$MLFLOW_TRACKING_URI``, else ``<out>/mlflow.db``."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "detforge"
    registered_model: str | None = None
    """Name the best model is registered under; None: the run name."""


class TrainConfig(StrictModel):
    """Everything one training run needs; saved as ``config.yaml`` in the run directory.

    Example:
        >>> cfg = TrainConfig(data=Path("ds"), model="yolo11n.yaml", epochs=3, imgsz=320)
        >>> cfg.train_imgsz
        320
    """

    data: Path | None = None
    model: str = "yolo11n.yaml"
    activation: Literal["silu", "relu"] | None = None
    """Activation of every convolution block of a model built from a YAML; None: the
    YAML's own (SiLU for YOLOv8 / YOLO11). ``relu`` makes the INT8 model faster on CPUs
    (docs/decisions/0007-activation-for-cpu-int8.md); weights keep what they were trained with."""
    preset: str | None = None
    classes: list[str] | None = None
    """Expected class names (presets set them); training refuses a dataset whose differ."""
    sizes: list[Literal["n", "s", "m", "l", "x"]] = Field(default_factory=list)
    epochs: PositiveInt = 100
    imgsz: PositiveInt | tuple[PositiveInt, PositiveInt] = 640
    rect: bool = False
    """Train at exactly ``imgsz`` (letterboxed), not on square mosaics; always on for
    RT-DETR models."""
    batch: PositiveInt = 16
    device: str = "cpu"
    seed: int = 0
    deterministic: bool = False
    patience: PositiveInt = 50
    amp: bool = True
    """Mixed precision; only ever used on a GPU."""
    ema: EmaConfig = Field(default_factory=EmaConfig)
    workers: NonNegativeInt = 4
    """Dataloader workers on a GPU (on CPU, Ultralytics loads in the training process)."""
    threads: PositiveInt | None = None
    """CPU threads for torch; None: every core this process may use."""
    cache: bool = False
    overfit: NonNegativeInt = 0
    """Train on this many images with train = val, augmentation off, until they are
    memorised (a sanity check, see :func:`overfit_config`); 0 disables."""
    val: bool = True
    plots: bool = True
    name: str = "train"
    out: Path = Path("runs")
    resume: bool = False
    optim: OptimConfig = Field(default_factory=OptimConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if _MODEL_NAME.match(value) or value in DETFORGE_MODELS or (
                Path(value).suffix in {".pt", ".yaml"} and Path(value).is_file()):
            return value
        raise ValueError(
            f"model {value!r} is neither a supported model YAML (yolov8n.yaml..yolov8x.yaml, "
            "yolo11n.yaml..yolo11x.yaml, rtdetr-l.yaml, rtdetr-x.yaml, rtdetr-tiny.yaml) nor an "
            "existing local .pt/.yaml file; nothing is downloaded, so give a YAML name or a "
            "local weights path")

    @model_validator(mode="after")
    def _check_shape(self) -> TrainConfig:
        """A letterboxed shape must be trainable as given: each side a stride multiple."""
        if not self.letterboxed:
            return self
        h, w = self.train_shape
        why = "an RT-DETR model" if self.is_rtdetr else "rect"
        if h % STRIDE or w % STRIDE:
            nh, nw = nearest_shape((h, w))
            raise ValueError(
                f"imgsz {h},{w} cannot be trained as given ({why} trains at exactly HEIGHT,"
                f"WIDTH): both sides must be multiples of {STRIDE}. Use --imgsz {nh},{nw} "
                f"(the nearest; e.g. 1088,1920 for 1080p video)")
        if "," in self.device:
            raise ValueError(f"letterboxed training ({why}) runs on one device, not "
                             f"{self.device!r}: Ultralytics' DDP workers rebuild their own "
                             "square trainer. Pass one GPU index")
        return self

    @model_validator(mode="after")
    def _check_activation(self) -> TrainConfig:
        if self.activation is not None and self.model.endswith(".pt"):
            raise ValueError(f"activation {self.activation!r} applies to a model built from a "
                             f"YAML, but model is the weights file {self.model!r} (they keep the "
                             "activation they were trained with); drop activation or give a YAML")
        if self.activation is not None and "rtdetr" in Path(self.model).name.lower():
            raise ValueError(f"activation applies to YOLOv8 / YOLO11 models, not {self.model!r} "
                             "(RT-DETR's backbone sets its own); drop activation")
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value == "cpu" or re.fullmatch(r"\d+(,\d+)*", value):
            return value
        raise ValueError(f"device {value!r} must be 'cpu' or GPU indices like '0' or '0,1'")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"run name {value!r} must be letters, digits, '_', '.', '-'")
        return value

    @property
    def train_imgsz(self) -> int:
        """The longer side of the training input (Ultralytics' own ``imgsz``)."""
        return self.imgsz if isinstance(self.imgsz, int) else max(self.imgsz)

    @property
    def is_rtdetr(self) -> bool:
        """True when ``model`` is an RT-DETR (by name, as Ultralytics decides)."""
        return is_rtdetr(self.model)

    @property
    def letterboxed(self) -> bool:
        """True when training runs at exactly ``imgsz`` with letterboxed images (``rect``,
        or any RT-DETR model) instead of Ultralytics' square mosaics."""
        return self.rect or self.is_rtdetr

    @property
    def train_shape(self) -> tuple[int, int]:
        """(height, width) of the network input during training (before multi-scale)."""
        if isinstance(self.imgsz, int):
            return (self.imgsz, self.imgsz)
        if self.letterboxed:
            return (int(self.imgsz[0]), int(self.imgsz[1]))
        return (self.train_imgsz, self.train_imgsz)

    @property
    def on_gpu(self) -> bool:
        """True when ``device`` names CUDA devices."""
        return self.device != "cpu"


def is_rtdetr(model: str | Path) -> bool:
    """Whether a model name or path is an RT-DETR (Ultralytics picks its class by the name).

    Example:
        >>> is_rtdetr("rtdetr-tiny.yaml"), is_rtdetr("yolo11n.yaml")
        (True, False)
    """
    return "rtdetr" in Path(str(model)).name.lower()


def model_source(model: str) -> str:
    """The file Ultralytics builds ``model`` from: a YAML shipped with detforge
    (:data:`DETFORGE_MODELS`) resolves to its packaged path; anything else is unchanged."""
    if model in DETFORGE_MODELS:
        return str(resources.files("detforge.train").joinpath("models", model))
    return model


def nearest_shape(shape: tuple[int, int], stride: int = STRIDE) -> tuple[int, int]:
    """Each side rounded to the nearest multiple of ``stride`` (at least one stride).

    Example:
        >>> nearest_shape((1080, 1920))
        (1088, 1920)
    """
    return (max(stride, round(shape[0] / stride) * stride),
            max(stride, round(shape[1] / stride) * stride))


OVERFIT_STOP_MAP50 = 0.99
"""An ``--overfit`` run stops once its mAP50 on the images it trains on reaches this."""

_NO_AUGMENT = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0,
               "scale": 0.0, "fliplr": 0.0, "flipud": 0.0, "mosaic": 0.0, "mixup": 0.0,
               "close_mosaic": 0}


def overfit_config(config: TrainConfig) -> TrainConfig:
    """The config an ``overfit`` run trains with (``config`` itself when overfit is 0).

    Memorising N images is the quickest check that data, labels and the training loop
    fit together: augmentation is turned off (the network sees exactly the images it is
    scored on), the optimiser steps after every batch (a nominal batch ``optim.nbs`` of 64
    would step once per 32 epochs on 2 images) and validation runs every epoch, so the run
    can stop as soon as its mAP50 on those images reaches :data:`OVERFIT_STOP_MAP50`;
    ``epochs`` is the cap.

    Args:
        config: A resolved config.

    Returns:
        The config to train and save.

    Example:
        >>> overfit_config(TrainConfig(overfit=4)).augment.mosaic
        0.0
    """
    if not config.overfit:
        return config
    optim = config.optim.model_copy(update={"nbs": min(config.optim.nbs, config.batch)})
    return config.model_copy(update={"augment": AugmentConfig(**_NO_AUGMENT), "val": True,
                                     "optim": optim})


def overfit_done(config: TrainConfig, metrics: Mapping[str, float]) -> bool:
    """Whether an ``overfit`` run has memorised its images.

    Args:
        config: The run's config.
        metrics: The epoch's validation metrics (on the training images in overfit mode).

    Returns:
        True when ``config.overfit`` is set and mAP50 reached :data:`OVERFIT_STOP_MAP50`;
        always False for a normal run.

    Example:
        >>> overfit_done(TrainConfig(overfit=2), {"mAP50": 0.995})
        True
    """
    return bool(config.overfit) and metrics.get("mAP50", 0.0) >= OVERFIT_STOP_MAP50


def model_for_size(model: str, size: str) -> str:
    """The model YAML of the same family at another size (``yolo11n.yaml``, s -> ``yolo11s.yaml``).

    Raises:
        ConfigError: ``model`` is a local file or the family has no such size.
    """
    if model in DETFORGE_MODELS:
        raise ConfigError(f"{model} comes in one size; train it without --sizes")
    match = _MODEL_NAME.match(model)
    if not match:
        raise ConfigError(f"--sizes needs a model YAML name such as yolo11n.yaml, got {model!r}; "
                          "train local weights one at a time without --sizes")
    if match["family"]:
        return f"{match['family']}{size}.yaml"
    if size not in {"l", "x"}:
        raise ConfigError(f"RT-DETR comes in sizes l and x, not {size!r}; use --sizes l,x")
    return f"rtdetr-{size}.yaml"


def load_preset(name: str) -> dict[str, Any]:
    """The raw mapping of preset ``name`` (package data ``detforge/train/presets/<name>.yaml``).

    Raises:
        ConfigError: Unknown preset; the message lists the valid names.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    text = resources.files("detforge.train").joinpath("presets", f"{name}.yaml").read_text(
        encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name!r} is not a mapping; reinstall detforge")
    data["preset"] = name
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}; check the path and YAML") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_train_config(path: str | Path | None = None, *, preset: str | None = None,
                      flags: Mapping[str, Any] | None = None,
                      overrides: Sequence[str] = ()) -> TrainConfig:
    """Resolve a :class:`TrainConfig` from a preset, a file, flags and overrides.

    Args:
        path: A YAML config file (may name a ``preset:`` of its own).
        preset: A preset name; wins over the file's ``preset:``.
        flags: Keys set by CLI flags (``None`` values are skipped), nested with dicts.
        overrides: ``key.sub=value`` strings, applied last.

    Returns:
        The validated config.

    Raises:
        ConfigError: Unreadable file, unknown preset, malformed override, unknown key or
            invalid value; the message names the key and the valid choices.

    Example:
        >>> cfg = load_train_config(preset="traffic", overrides=["epochs=5"])
        >>> cfg.imgsz, cfg.epochs
        ((384, 640), 5)
    """
    file_data = _read_yaml(Path(path)) if path is not None else {}
    preset_name = preset or file_data.get("preset")
    if preset_name is not None and not isinstance(preset_name, str):
        raise ConfigError(f"{path}: preset must be a name, one of {list(PRESETS)}")
    data = load_preset(preset_name) if preset_name else {}
    _check_keys(TrainConfig, file_data, f"{path}: ")
    data = _merge(data, file_data)
    if preset_name:
        data["preset"] = preset_name
    data = _merge(data, {k: v for k, v in (flags or {}).items() if v is not None})
    data = apply_overrides(data, overrides)
    _check_keys(TrainConfig, data, "")
    return load_config(TrainConfig, None, base=data)


def _check_keys(model: type[StrictModel], data: Mapping[str, Any], where: str,
                prefix: str = "") -> None:
    """Refuse a key ``model`` lacks, naming the valid keys of that (nested) section."""
    fields = model.model_fields
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            section = f" under {prefix[:-1]!r}" if prefix else ""
            raise ConfigError(f"{where}unknown key {name!r}{hint}; valid keys{section}: "
                              f"{sorted(fields)}. Fix the config file, flag or --set override")
        sub = fields[key].annotation
        if isinstance(value, Mapping) and isinstance(sub, type) and issubclass(sub, StrictModel):
            _check_keys(sub, value, where, f"{name}.")


def config_to_yaml(config: TrainConfig) -> str:
    """The config as YAML text that :func:`load_train_config` reads back to an equal config."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)


def parse_imgsz(text: str) -> int | tuple[int, int]:
    """``"320"`` -> 320; ``"384,640"`` -> (384, 640) (height, width); the grammar of
    :func:`detforge.core.imgsz.parse_imgsz`.

    Raises:
        ConfigError: Not one or two positive integers.
    """
    h, w = core_parse_imgsz(text)
    return h if h == w else (h, w)


def parse_sizes(text: str) -> list[str]:
    """``"n,s"`` -> ``["n", "s"]``.

    Raises:
        ConfigError: A size is not one of n, s, m, l, x, or one repeats.
    """
    sizes = [p.strip() for p in text.split(",") if p.strip()]
    bad = [s for s in sizes if s not in _SIZES]
    if bad or not sizes or len(set(sizes)) != len(sizes):
        raise ConfigError(
            f"--sizes {text!r} must be distinct sizes from {list(_SIZES)}, e.g. n,s,m")
    return sizes
