"""DeepStream configuration files, derived from the model's metadata.

Two GLib key files per bundle (``key=value``, ``#`` comments; see :mod:`.dsconfig`):

* ``config_infer_primary.txt`` for the ``nvinfer`` element. It names detforge's own parser,
  ``NvDsInferParseCustomDetforge`` in ``nvdsinfer_custom_impl_detforge/`` (shipped in the
  bundle, built there with ``make``), which reads detforge's ``deepstream``, ``end2end`` and
  ``rtdetr`` layouts: one output ``[B, N, 6]`` = x1, y1, x2, y2, score, class in network
  pixels. ``deepstream`` rows need nvinfer's NMS (``cluster-mode=2``); ``end2end`` rows are
  already suppressed and ``rtdetr`` rows need none (``cluster-mode=4``).
* ``deepstream_app_config.txt`` for ``deepstream-app -c``: source, streammux, primary GIE,
  tracker, OSD and sink. streammux runs at the source resolution with padding, so no
  stretch happens before nvinfer's own letterbox.

Every value that describes the model (input size, colour order, normalisation, letterbox,
class count, layout) is read from :class:`~detforge.runtime.metadata.ModelMeta`; thresholds,
batch and precision come from the bundle options. The rules these values follow, with their
sources, are in :mod:`detforge.deploy.ds_rules`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detforge.core.errors import ConfigError
from detforge.deploy.parser import CUSTOM_LIB, FUNCTION
from detforge.runtime.metadata import ModelMeta

__all__ = ["CLUSTER_MODES", "DEEPSTREAM_ROOT", "DEFAULT_SOURCE_SIZE", "NETWORK_MODES",
           "SAMPLE_URI", "InferOptions", "app_config", "nvinfer_config", "render_ini"]

NETWORK_MODES: dict[str, int] = {"fp32": 0, "int8": 1, "fp16": 2}
"""nvinfer ``network-mode`` per precision."""

CLUSTER_MODES: dict[str, int] = {"raw": 2, "deepstream": 2, "end2end": 4, "rtdetr": 4}
"""nvinfer ``cluster-mode`` per layout: 2 = NMS, 4 = none (NMS already in the graph, or none
needed: RT-DETR's one-to-one queries). With 4 nvinfer keeps the ``topk`` best objects per
class (``nvdsinfer_context_impl_output_parsing.cpp`` ``fillUnclusteredOutput``)."""

DEEPSTREAM_ROOT = "/opt/nvidia/deepstream/deepstream"
"""Install prefix of DeepStream on Jetson and in NVIDIA's containers."""

SAMPLE_URI = f"file://{DEEPSTREAM_ROOT}/samples/streams/sample_1080p_h264.mp4"
"""DeepStream's own 1920x1080 sample clip, present in every install."""

DEFAULT_SOURCE_SIZE = (1920, 1080)
"""(width, height) of the video the bundle is configured for (``--source-size``)."""

Sections = dict[str, dict[str, str]]


@dataclass(frozen=True)
class InferOptions:
    """Deployment choices that are not properties of the model.

    Attributes:
        onnx_file: ONNX file name, relative to the config file.
        engine_file: Engine file name (``model_b{B}_gpu0_{precision}.engine``).
        labels_file: Labels file name.
        batch: nvinfer batch size (the engine's largest batch).
        precision: fp32, fp16 or int8.
        conf: Score threshold (``pre-cluster-threshold``).
        iou: NMS IoU threshold (``nms-iou-threshold``).
        topk: Most detections kept per frame.
        gpu_id: GPU index.
        custom_lib: Path of the parser library, relative to the config file.
    """

    onnx_file: str
    engine_file: str
    labels_file: str
    batch: int
    precision: str
    conf: float
    iou: float
    topk: int
    gpu_id: int = 0
    custom_lib: str = CUSTOM_LIB


def _num(value: float) -> str:
    """Shortest exact text of a float (``repr``), integers without a fraction."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _scale_and_offsets(meta: ModelMeta) -> tuple[float, tuple[float, float, float]]:
    """nvinfer computes ``y = net-scale-factor * (x - offsets)``; ours is
    ``(x * scale - mean) / std``, so ``net-scale-factor = scale / std`` and
    ``offsets = mean / scale``, which needs one std for all channels."""
    norm = meta.normalize
    if len(set(norm.std)) != 1:
        raise ConfigError(
            f"normalisation std {list(norm.std)} differs per channel; nvinfer takes one "
            f"net-scale-factor for all channels. Re-export the model with equal std values "
            f"(or fold the normalisation into the graph)")
    if norm.scale <= 0 or norm.std[0] <= 0:
        raise ConfigError(f"normalisation scale {norm.scale} and std {norm.std[0]} must be > 0; "
                          f"check the model's detforge metadata")
    return norm.scale / norm.std[0], (norm.mean[0] / norm.scale, norm.mean[1] / norm.scale,
                                      norm.mean[2] / norm.scale)


def nvinfer_config(meta: ModelMeta, options: InferOptions) -> Sections:
    """The ``[property]`` and ``[class-attrs-all]`` sections of ``config_infer_primary.txt``.

    The engine is named so nvinfer loads the plan ``build_engine.sh`` writes instead of
    building its own: nvinfer's built-in builder drops to FP16 for a Q/DQ INT8 model that
    has no calibration table. No ``engine-create-func-name`` is set: nvinfer parses the
    ONNX itself. ``scaling-filter=1`` (bilinear, as the workstation resizes) and
    ``crop-objects-to-roi-boundary=1`` (clip, not drop, a box that leaves the frame) are
    set explicitly; nvinfer's defaults are nearest-neighbour and drop.

    Args:
        meta: The bundled model's metadata.
        options: File names, batch, precision and thresholds.

    Returns:
        Section name -> key -> value, in file order.

    Raises:
        ConfigError: The layout has no parser (``rtdetr-normalized``: bundle converts it
            first), the precision is unknown, or the normalisation cannot be expressed by
            nvinfer.
    """
    if meta.layout not in CLUSTER_MODES:
        raise ConfigError(f"layout {meta.layout!r} has no DeepStream parser in detforge; "
                          f"bundle a raw, deepstream, end2end or rtdetr model "
                          f"(`detforge deploy bundle` converts the others)")
    if options.precision not in NETWORK_MODES:
        raise ConfigError(f"unknown precision {options.precision!r}; choose one of "
                          f"{list(NETWORK_MODES)}")
    scale, offsets = _scale_and_offsets(meta)
    h, w = meta.imgsz
    prop: dict[str, str] = {
        "gpu-id": str(options.gpu_id),
        "net-scale-factor": _num(scale),
    }
    if any(offsets):
        prop["offsets"] = ";".join(_num(o) for o in offsets)
    prop.update({
        "model-color-format": "0" if meta.color == "RGB" else "1",
        "onnx-file": options.onnx_file,
        "model-engine-file": options.engine_file,
        "labelfile-path": options.labels_file,
        "batch-size": str(options.batch),
        "network-mode": str(NETWORK_MODES[options.precision]),
        "num-detected-classes": str(len(meta.classes)),
        "interval": "0",
        "gie-unique-id": "1",
        "process-mode": "1",
        "network-type": "0",
        "cluster-mode": str(CLUSTER_MODES[meta.layout]),
        "maintain-aspect-ratio": "0" if meta.letterbox.scale_fill else "1",
        "symmetric-padding": "1" if meta.letterbox.center and not meta.letterbox.scale_fill
        else "0",
        "infer-dims": f"3;{h};{w}",
        "scaling-filter": "1",
        "crop-objects-to-roi-boundary": "1",
        "parse-bbox-func-name": FUNCTION,
        "custom-lib-path": options.custom_lib,
    })
    attrs = {"nms-iou-threshold": _num(options.iou),
             "pre-cluster-threshold": _num(options.conf),
             "topk": str(options.topk)}
    return {"property": prop, "class-attrs-all": attrs}


def app_config(meta: ModelMeta, *, batch: int, infer_config: str = "config_infer_primary.txt",
               source_size: tuple[int, int] = DEFAULT_SOURCE_SIZE, fps: float = 25.0,
               uri: str = SAMPLE_URI, gpu_id: int = 0) -> Sections:
    """The sections of ``deepstream_app_config.txt`` for ``deepstream-app -c``.

    Args:
        meta: The bundled model's metadata.
        batch: Streams batched together (streammux and nvinfer batch size).
        infer_config: The nvinfer config file, relative to this one.
        source_size: (width, height) of the video: streammux runs at it, so it scales
            nothing, and pads (keeping the aspect ratio) a source of another size.
        fps: Stream frame rate; ``batched-push-timeout`` is one frame interval.
        uri: The video: ``file://`` (a relative path resolves against this file's
            folder) or ``rtsp://`` (then ``live-source=1`` and an RTSP source).
        gpu_id: GPU index.

    Returns:
        Section name -> key -> value, in file order.

    Raises:
        ConfigError: ``batch``, ``fps`` or ``source_size`` is not positive, or the URI is
            neither ``file://`` nor ``rtsp://``.
    """
    if batch < 1 or fps <= 0 or min(source_size) < 1:
        raise ConfigError(f"batch ({batch}), fps ({fps}) and --source-size {source_size} "
                          f"must be positive")
    live = uri.startswith(("rtsp://", "rtsps://"))
    if not live and not uri.startswith("file://"):
        raise ConfigError(f"source URI {uri!r} must start with file:// or rtsp://")
    h, w = meta.imgsz
    sw, sh = source_size
    rows = math.isqrt(batch - 1) + 1  # a near-square tiling of the batch's streams
    gpu = str(gpu_id)
    source: dict[str, str] = {"enable": "1", "type": "4" if live else "3", "uri": uri,
                              "num-sources": str(batch), "gpu-id": gpu, "cudadec-memtype": "0"}
    if live:
        source.update({"latency": "200", "rtsp-reconnect-interval-sec": "10"})
    return {
        "application": {"enable-perf-measurement": "1", "perf-measurement-interval-sec": "5"},
        "tiled-display": {"enable": "1", "rows": str(rows),
                          "columns": str(-(-batch // rows)), "width": str(sw),
                          "height": str(sh), "gpu-id": gpu, "nvbuf-memory-type": "0"},
        "source0": source,
        "sink0": {"enable": "1", "type": "1", "sync": "0", "gpu-id": gpu,
                  "nvbuf-memory-type": "0"},
        "osd": {"enable": "1", "gpu-id": gpu, "border-width": "2", "text-size": "12",
                "text-color": "1;1;1;1", "text-bg-color": "0.3;0.3;0.3;1", "font": "Serif",
                "show-clock": "0", "nvbuf-memory-type": "0"},
        "streammux": {"gpu-id": gpu, "live-source": "1" if live else "0",
                      "batch-size": str(batch),
                      "batched-push-timeout": str(round(1_000_000 / fps)),
                      "width": str(sw), "height": str(sh), "enable-padding": "1",
                      "nvbuf-memory-type": "0"},
        "primary-gie": {"enable": "1", "gpu-id": gpu, "gie-unique-id": "1",
                        "nvbuf-memory-type": "0", "config-file": infer_config},
        "tracker": {"enable": "1", "tracker-width": str(_mult32(w)),
                    "tracker-height": str(_mult32(h)), "gpu-id": gpu,
                    "ll-lib-file": f"{DEEPSTREAM_ROOT}/lib/libnvds_nvmultiobjecttracker.so",
                    "ll-config-file": f"{DEEPSTREAM_ROOT}/samples/configs/deepstream-app/"
                                      "config_tracker_NvDCF_perf.yml",
                    "enable-batch-process": "1"},
        "tests": {"file-loop": "0"},
    }


def _mult32(value: int) -> int:
    """The tracker's input size must be a multiple of 32."""
    return max(32, value // 32 * 32)


def render_ini(sections: Mapping[str, Mapping[str, str]], *,
               header: Sequence[str] = (),
               notes: Mapping[str, Sequence[str]] | None = None) -> str:
    """INI text in DeepStream's style (``key=value``, ``#`` comments), configparser-readable.

    Args:
        sections: Section -> key -> value.
        header: Comment lines at the top of the file.
        notes: Comment lines written at the top of a section, by section name.

    Returns:
        The file text, ending with a newline.
    """
    lines = [f"# {h}" if h else "#" for h in header]
    for name, values in sections.items():
        if lines:
            lines.append("")
        lines.extend(f"# {n}" for n in (notes or {}).get(name, ()))
        lines.append(f"[{name}]")
        lines.extend(f"{k}={v}" for k, v in values.items())
    return "\n".join(lines) + "\n"
