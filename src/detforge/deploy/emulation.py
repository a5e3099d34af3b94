"""DeepStream's pipeline, emulated on ONNX Runtime, to predict what a device will detect.

A frame reaches nvinfer's parser through three steps detforge's own inference does not
take, and a box comes back through their inverse:

1. **streammux** scales every source to its ``width`` x ``height``; ``enable-padding=1``
   keeps the aspect ratio with black bands (placed right and bottom here: the legacy
   nvstreammux is closed source, and at the source resolution, the bundle's default, it
   does not scale at all), ``enable-padding=0`` stretches. A reference image stands for a
   frame of the configured source, so it gets that source's scale factors.
2. **nvinfer** crops the frame to even width and height (``GST_ROUND_DOWN_2``), scales it
   to the network input keeping the aspect ratio when ``maintain-aspect-ratio=1`` (the
   scaled size truncated to whole pixels), centres it when ``symmetric-padding=1`` (offsets
   ``(W - w) / 2`` rounded down), pads with **black** (cudaMemset 0), then computes
   ``net-scale-factor * (x - offsets)`` (gstnvinfer.cpp ``get_converted_buffer``).
3. The **parser** turns the output into objects in network pixels, nvinfer applies
   pre-cluster-threshold and its clustering with topk (cluster-mode=2: NMS; 4: none, for
   end2end and RT-DETR outputs; nvdsinfer_context_impl_output_parsing.cpp), maps each box
   back with ``(x - offset) / ratio``, and drops a box that leaves the frame unless
   ``crop-objects-to-roi-boundary=1`` clips it (gstnvinfer_meta_utils.cpp
   ``attach_metadata_detector``).

:func:`emulate` runs these stages on reference images and returns the detections after
each one, so ``deploy verify`` can say which stage changes what the workstation saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.deploy import verify_on_device as twin
from detforge.deploy.dsconfig import Pipeline

__all__ = ["STAGES", "Geometry", "StageResult", "emulate", "nvinfer_scale", "streammux"]

Image = NDArray[np.uint8]
Infer = Callable[[NDArray[np.float32]], NDArray[np.float32]]
Parse = Callable[[NDArray[np.float32], int, int, list[float]], NDArray[np.float32]]

STAGES = ("nvinfer scaling, grey padding", "black padding", "streammux",
          "parser and clustering")
"""Cumulative: each stage adds one device difference to the ones before it."""

_NEAREST = (0, 6)  # NvBufSurfTransformInter_Nearest and _Default (GPU-Nearest, VIC-Nearest)


@dataclass(frozen=True)
class Geometry:
    """How one scaling step placed a (w, h) picture inside an output of ``out_size``.

    Attributes:
        ratio_x: Scaled width / source width.
        ratio_y: Scaled height / source height.
        left: Columns of padding left of the picture.
        top: Rows of padding above it.
        out_size: (width, height) of the output.
    """

    ratio_x: float
    ratio_y: float
    left: int
    top: int
    out_size: tuple[int, int]


def _resize(image: Image, size: tuple[int, int], nearest: bool) -> Image:
    import cv2

    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    method = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, size, interpolation=method), np.uint8)


def _place(image: Image, size: tuple[int, int], offset: tuple[int, int], pad: int) -> Image:
    out = np.full((size[1], size[0], 3), pad, np.uint8)
    h, w = image.shape[:2]
    out[offset[1]:offset[1] + h, offset[0]:offset[0] + w] = image
    return out


def streammux(image: Image, pipe: Pipeline,
              source_size: tuple[int, int] | None = None) -> tuple[Image, Geometry]:
    """The frame nvstreammux makes when ``image`` is a frame of the configured source.

    The reference image stands for a frame of a ``source_size`` video (default: its own
    size): the muxer's scale factors for that source, ``width / source width`` and
    ``height / source height``, are applied to the image's own pixels. With
    ``enable-padding=1`` both axes take the smaller factor and the rest of the frame is
    black (right and bottom); with 0 each axis keeps its own factor, which stretches.
    """
    h, w = image.shape[:2]
    sw, sh = source_size or (w, h)
    mw, mh = pipe.mux_size
    fx, fy = mw / sw, mh / sh
    if pipe.mux_padding:
        r = min(fx, fy)
        fw, fh = max(w, round(w * fx / r)), max(h, round(h * fy / r))
        if (fw, fh) == (w, h):
            return image, Geometry(1.0, 1.0, 0, 0, (w, h))
        return _place(image, (fw, fh), (0, 0), 0), Geometry(1.0, 1.0, 0, 0, (fw, fh))
    sx, sy = (fx / fy, 1.0) if fx >= fy else (1.0, fy / fx)
    size = (max(1, round(w * sx)), max(1, round(h * sy)))
    return _resize(image, size, False), Geometry(size[0] / w, size[1] / h, 0, 0, size)


def nvinfer_scale(frame: Image, pipe: Pipeline, *, pad: int = 0) -> tuple[Image, Geometry]:
    """The network-sized picture nvinfer makes from a frame (before net-scale-factor).

    Args:
        frame: The streammux frame, RGB.
        pipe: The configs.
        pad: Padding grey level (0 on a device; 114 to measure the workstation's choice).
    """
    src_h, src_w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
    frame = frame[:src_h, :src_w]
    nw, nh = pipe.net_size
    if pipe.maintain_aspect:
        hdest = nw * src_h / src_w
        if hdest <= nh:
            dw, dh = nw, int(hdest)
        else:
            dw, dh = int(nh * src_w / src_h), nh
    else:
        dw, dh = nw, nh
    left, top = ((nw - dw) // 2, (nh - dh) // 2) if pipe.symmetric else (0, 0)
    scaled = _resize(frame, (dw, dh), pipe.scaling_filter in _NEAREST)
    out = _place(scaled, (nw, nh), (left, top), pad)
    if pipe.bgr:
        out = np.ascontiguousarray(out[..., ::-1])
    return out, Geometry(dw / src_w, dh / src_h, left, top, (nw, nh))


def _nvinfer_back(objects: NDArray[np.float32], geo: Geometry, frame_size: tuple[int, int],
                  crop: bool) -> NDArray[np.float32]:
    """Objects (class, left, top, width, height, conf) in network pixels -> frame pixels,
    with nvinfer's keep-or-drop rule for boxes that leave the frame."""
    o = objects.astype(np.float64).copy()
    o[:, 1] = (o[:, 1] - geo.left) / geo.ratio_x
    o[:, 2] = (o[:, 2] - geo.top) / geo.ratio_y
    o[:, 3] /= geo.ratio_x
    o[:, 4] /= geo.ratio_y
    fw, fh = frame_size
    if crop:
        o[:, 1] = np.maximum(o[:, 1], 0)
        o[:, 2] = np.maximum(o[:, 2], 0)
        o[:, 3] = np.where(o[:, 1] + o[:, 3] >= fw, fw - o[:, 1], o[:, 3])
        o[:, 4] = np.where(o[:, 2] + o[:, 4] > fh, fh - o[:, 2], o[:, 4])
    else:
        o = o[(o[:, 2] >= 0) & (o[:, 2] + o[:, 4] <= fh)]
    return o.astype(np.float32)


def _to_source(xyxy: NDArray[Any], mux: Geometry, size: tuple[int, int]) -> NDArray[np.float32]:
    """Frame pixels -> source pixels (streammux undone), clipped to the source."""
    out = np.asarray(xyxy, np.float64).reshape(-1, 4).copy()
    out[:, 0::2] = np.clip((out[:, 0::2] - mux.left) / mux.ratio_x, 0, size[0])
    out[:, 1::2] = np.clip((out[:, 1::2] - mux.top) / mux.ratio_y, 0, size[1])
    return out.astype(np.float32)


def _detections(xyxy: NDArray[Any], scores: NDArray[Any], cls: NDArray[Any]) -> Detections:
    return Detections(xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
                      scores=np.asarray(scores, np.float32),
                      class_ids=np.asarray(cls, np.int32))


@dataclass(frozen=True)
class StageResult:
    """Detections (in source pixels) after one stage, per image."""

    stage: str
    detections: list[Detections]


@dataclass(frozen=True)
class DeviceInput:
    """What nvinfer feeds the network for one image, and the objects it should return."""

    pixels: Image
    objects: NDArray[np.float32]


def emulate(images: Sequence[Image], pipe: Pipeline, infer: Infer, *, conf: float, iou: float,
            max_det: int, source_size: tuple[int, int] | None = None,
            parse: Parse | None = None,
            device_inputs: list[DeviceInput] | None = None) -> list[StageResult]:
    """Run the reference images through the emulated pipeline, stage by stage.

    Args:
        images: Source images, RGB.
        pipe: The bundle's configs.
        infer: The model: a ``[1, 3, H, W]`` float32 batch -> its ``[1, N, 6]`` output.
        conf: The workstation's score threshold (stages before the parser decode with it).
        iou: The workstation's NMS IoU.
        max_det: The workstation's most detections per image.
        source_size: The video the configs are set for (default: each image's own size).
        parse: The compiled parser (:meth:`HostParser.parse`); default the numpy twin.
        device_inputs: When given, receives the last stage's network input and objects.

    Returns:
        One :class:`StageResult` per entry of :data:`STAGES`.
    """
    from detforge.runtime.postprocess import decode_batch

    spec = {"net_scale_factor": pipe.scale, "offsets": list(pipe.offsets)}
    nw, nh = pipe.net_size
    pre = [pipe.pre_cluster] * pipe.num_classes
    unclustered = pipe.cluster_mode == 4  # end2end / rtdetr rows: no NMS anywhere
    results: list[list[Detections]] = [[] for _ in STAGES]
    for image in images:
        size = (image.shape[1], image.shape[0])
        direct = Geometry(1.0, 1.0, 0, 0, size)
        muxed, mux = streammux(image, pipe, source_size)
        for k, (frame, mgeo, pad) in enumerate(((image, direct, 114), (image, direct, 0),
                                                (muxed, mux, 0), (muxed, mux, 0))):
            net, geo = nvinfer_scale(frame, pipe, pad=pad)
            x = twin.network_input(net, spec)
            output = np.asarray(infer(x), np.float32).reshape(-1, 6)
            fsize = (frame.shape[1], frame.shape[0])
            if k < 3:  # detforge's decode and NMS: only the geometry differs so far
                layout = "end2end" if unclustered else "deepstream"
                xyxy, scores, cls = decode_batch([output[None]], layout=layout,
                                                 num_classes=pipe.num_classes,
                                                 input_hw=(nh, nw), conf=conf, iou=iou,
                                                 max_det=max_det)[0]
                objects = np.concatenate([cls[:, None].astype(np.float32), xyxy[:, :2],
                                          xyxy[:, 2:] - xyxy[:, :2], scores[:, None]], axis=1)
            else:
                parsed = (parse(output, nw, nh, pre) if parse is not None
                          else twin.parse_rows(output, nw, nh, pre, pipe.num_classes))
                objects = (twin.unclustered(parsed, pipe.num_classes, pipe.topk, pre)
                           if unclustered else
                           twin.cluster_nms(parsed, pipe.num_classes, pipe.nms_iou, pipe.topk,
                                            pipe.post_cluster, pre))
                if device_inputs is not None:
                    device_inputs.append(DeviceInput(net, objects))
            back = _nvinfer_back(objects, geo, fsize, pipe.crop_to_frame or k < 3)
            boxes = _to_source(twin.xyxy(back)[:, :4], mgeo, size)
            results[k].append(_detections(boxes, back[:, 5], back[:, 0]))
    return [StageResult(s, d) for s, d in zip(STAGES, results, strict=True)]
