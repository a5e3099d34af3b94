"""Reading a bundle's DeepStream configs the way deepstream-app and nvinfer read them.

Both files are GLib key files (``g_key_file_load_from_file``): ``[group]`` headers,
``key=value`` lines, ``#`` comments on their own line only (a ``#`` after a value is part
of the value), lists separated by ``;``, and ``g_key_file_get_integer`` / ``_boolean`` /
``_double`` rejecting a value that is not wholly a number (``1.5`` is no integer). Relative
paths resolve against the folder of the file that names them (nvinfer's and
deepstream-app's ``get_absolute_file_path``). :func:`read_pipeline` gathers what decides
what the device detects into one :class:`Pipeline`, which the emulation runs and the rules
check.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from detforge.core.errors import ConfigError

__all__ = ["APP_CONFIG", "INFER_CONFIG", "KeyFile", "Pipeline", "read_keyfile", "read_pipeline"]

APP_CONFIG = "deepstream_app_config.txt"
INFER_CONFIG = "config_infer_primary.txt"


class KeyFile:
    """One key file: group -> key -> raw value, and typed getters with GLib's rules."""

    def __init__(self, path: Path, groups: dict[str, dict[str, str]]) -> None:
        self.path = path
        self.groups = groups

    def get(self, group: str, key: str) -> str | None:
        return self.groups.get(group, {}).get(key)

    def _bad(self, group: str, key: str, value: str, kind: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{group}] {key}={value!r} is not {kind}; "
                           f"DeepStream refuses it")

    def integer(self, group: str, key: str, default: int) -> int:
        value = self.get(group, key)
        if value is None:
            return default
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise self._bad(group, key, value, "an integer") from None

    def double(self, group: str, key: str, default: float) -> float:
        value = self.get(group, key)
        if value is None:
            return default
        try:
            return float(value.strip())
        except ValueError:
            raise self._bad(group, key, value, "a number") from None

    def boolean(self, group: str, key: str, default: bool) -> bool:
        value = self.get(group, key)
        if value is None:
            return default
        text = value.strip().lower()
        if text in ("1", "true"):
            return True
        if text in ("0", "false"):
            return False
        raise self._bad(group, key, value, "a boolean (0, 1, true or false)")

    def doubles(self, group: str, key: str) -> list[float] | None:
        value = self.get(group, key)
        if value is None:
            return None
        try:
            return [float(v) for v in value.strip().rstrip(";").split(";")]
        except ValueError:
            raise self._bad(group, key, value, "a ;-separated list of numbers") from None


def read_keyfile(path: Path) -> KeyFile:
    """Parse a key file (later duplicate keys win, as in GLib).

    Raises:
        ConfigError: The file is missing or not a key file; the message names the line.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",),
                                       comment_prefixes=("#",), inline_comment_prefixes=None,
                                       empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); re-copy the bundle") from exc
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not a DeepStream key file ({first})") from exc
    return KeyFile(path, {s: dict(parser[s]) for s in parser.sections()})


@dataclass(frozen=True)
class Pipeline:
    """What decides the device's detections, as the bundle's configs say.

    Attributes:
        app: deepstream_app_config.txt.
        infer: The nvinfer config [primary-gie] config-file names.
        mux_size: streammux (width, height).
        mux_padding: streammux enable-padding.
        mux_batch: streammux batch-size.
        live_source: streammux live-source.
        net_size: Network input (width, height), from infer-dims.
        maintain_aspect: maintain-aspect-ratio.
        symmetric: symmetric-padding.
        scale: net-scale-factor.
        offsets: Per-channel offsets.
        bgr: model-color-format=1.
        scaling_filter: scaling-filter (NvBufSurfTransform_Inter).
        crop_to_frame: crop-objects-to-roi-boundary.
        num_classes: num-detected-classes.
        cluster_mode: cluster-mode.
        pre_cluster: [class-attrs-all] pre-cluster-threshold.
        post_cluster: post-cluster-threshold.
        nms_iou: nms-iou-threshold.
        topk: topk (-1: all).
    """

    app: KeyFile
    infer: KeyFile
    mux_size: tuple[int, int]
    mux_padding: bool
    mux_batch: int
    live_source: bool
    net_size: tuple[int, int]
    maintain_aspect: bool
    symmetric: bool
    scale: float
    offsets: tuple[float, float, float]
    bgr: bool
    scaling_filter: int
    crop_to_frame: bool
    num_classes: int
    cluster_mode: int
    pre_cluster: float
    post_cluster: float
    nms_iou: float
    topk: int

    def thresholds(self) -> dict[str, float | int]:
        """The thresholds in verify_on_device.py's terms."""
        return {"num_classes": self.num_classes, "pre_cluster": self.pre_cluster,
                "post_cluster": self.post_cluster, "nms_iou": self.nms_iou, "topk": self.topk,
                "cluster_mode": self.cluster_mode}


def read_pipeline(folder: Path, app_config: str = APP_CONFIG) -> Pipeline:
    """Read deepstream_app_config.txt and the nvinfer config it points at.

    Defaults are nvinfer's and deepstream-app's own (gstnvinfer_property_parser.h:
    pre-cluster-threshold 0.2, nms-iou-threshold 0.3, topk -1; maintain-aspect-ratio,
    symmetric-padding and crop-objects-to-roi-boundary off; scaling-filter default).

    Raises:
        ConfigError: A file is missing or a value is malformed.
    """
    app = read_keyfile(folder / app_config)
    infer_name = app.get("primary-gie", "config-file")
    if not infer_name:
        raise ConfigError(f"{app.path}: [primary-gie] has no config-file; nvinfer has no "
                          f"config. Set config-file={INFER_CONFIG}")
    infer = read_keyfile(folder / infer_name)
    dims = infer.get("property", "infer-dims")
    try:
        _, h, w = (int(v) for v in (dims or "").split(";"))
    except ValueError:
        raise ConfigError(f"{infer.path}: [property] infer-dims={dims!r} must be C;H;W") from None
    offsets = infer.doubles("property", "offsets") or [0.0, 0.0, 0.0]
    if len(offsets) != 3:
        raise ConfigError(f"{infer.path}: [property] offsets needs 3 values, got {offsets}")
    group = "class-attrs-all"
    return Pipeline(
        app=app, infer=infer,
        mux_size=(app.integer("streammux", "width", 0), app.integer("streammux", "height", 0)),
        mux_padding=app.boolean("streammux", "enable-padding", False),
        mux_batch=app.integer("streammux", "batch-size", 1),
        live_source=app.boolean("streammux", "live-source", False),
        net_size=(w, h),
        maintain_aspect=infer.boolean("property", "maintain-aspect-ratio", False),
        symmetric=infer.boolean("property", "symmetric-padding", False),
        scale=infer.double("property", "net-scale-factor", 1.0),
        offsets=(offsets[0], offsets[1], offsets[2]),
        bgr=infer.integer("property", "model-color-format", 0) == 1,
        scaling_filter=infer.integer("property", "scaling-filter", 6),
        crop_to_frame=infer.boolean("property", "crop-objects-to-roi-boundary", False),
        num_classes=infer.integer("property", "num-detected-classes", 0),
        cluster_mode=infer.integer("property", "cluster-mode", 0),
        pre_cluster=infer.double(group, "pre-cluster-threshold",
                                 infer.double(group, "threshold", 0.2)),
        post_cluster=infer.double(group, "post-cluster-threshold", 0.0),
        nms_iou=infer.double(group, "nms-iou-threshold", 0.3),
        topk=infer.integer(group, "topk", -1))
