"""Letterboxed training data at a fixed (height, width), for RT-DETR and ``rect`` YOLO runs.

Ultralytics trains a YOLO on square mosaics and an RT-DETR on images stretched to a square
(its ``RTDETRDataset`` resizes without keeping the aspect ratio, and its trainer forces
``rect=False``). :class:`RectDataset` trains at exactly ``(H, W)`` instead, with the
preprocessing detforge's runtime applies at inference:

* every image is resized to fit inside ``H x W`` keeping its aspect ratio (``round(side *
  r)``, as :func:`detforge.runtime.preprocess.letterbox` does) and padded with grey 114,
  centred;
* a mosaic (:class:`RectMosaic`) places four such images on a ``2H x 2W`` canvas around a
  random centre; the affine step then crops ``H x W`` around the canvas centre with random
  scale and translation, as Ultralytics' square mosaic does with ``2S x 2S``;
* without mosaic (probability, ``close_mosaic``), the affine step centres the fitted image
  in ``H x W``: a letterbox with scale and translation jitter;
* validation letterboxes to ``H x W`` exactly.

Mix-up, HSV and flips are Ultralytics' own transforms; cut-mix, copy-paste and
Albumentations (not in detforge's config) are left out. Import this module after
:func:`detforge.train.offline.import_ultralytics`.
"""

from __future__ import annotations

import importlib
import random
from typing import Any

import cv2
import numpy as np

# Ultralytics is untyped here on purpose (Any): detforge relies on its documented behaviour.
_aug: Any = importlib.import_module("ultralytics.data.augment")
_dataset: Any = importlib.import_module("ultralytics.data.dataset")
_instance: Any = importlib.import_module("ultralytics.utils.instance")
_patches: Any = importlib.import_module("ultralytics.utils.patches")

__all__ = ["RectDataset", "RectMosaic", "fit_size"]


def fit_size(h: int, w: int, shape: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an ``h x w`` image resized to fit inside ``shape`` keeping its
    aspect ratio, rounded as the runtime's letterbox rounds.

    Example:
        >>> fit_size(1080, 1920, (1088, 1920))
        (1080, 1920)
        >>> fit_size(480, 640, (256, 448))
        (256, 341)
    """
    r = min(shape[0] / h, shape[1] / w)
    return max(1, min(shape[0], round(h * r))), max(1, min(shape[1], round(w * r)))


class RectMosaic(_aug.Mosaic):  # type: ignore[misc]
    """Ultralytics' 2x2 mosaic on a ``2H x 2W`` canvas (its own is ``2S x 2S``)."""

    def __init__(self, dataset: Any, shape: tuple[int, int], p: float = 1.0) -> None:
        super().__init__(dataset, imgsz=max(shape), p=p, n=4)
        self.shape = shape
        self.border = (-shape[0] // 2, -shape[1] // 2)

    def get_params(self, labels: dict[str, Any]) -> dict[str, Any]:
        """The four patches around a random centre (Ultralytics' layout, per axis)."""
        params: dict[str, Any] = super(_aug.Mosaic, self).get_params(labels)
        sh, sw = self.shape
        yc = int(random.uniform(sh // 2, 2 * sh - sh // 2))
        xc = int(random.uniform(sw // 2, 2 * sw - sw // 2))
        layout = []
        for i in range(4):
            patch = labels if i == 0 else labels["mix_labels"][i - 1]
            h, w = patch.get("resized_shape", patch["img"].shape[:2])
            if i == 0:  # top left
                a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
                b = (w - (a[2] - a[0]), h - (a[3] - a[1]), w, h)
            elif i == 1:  # top right
                a = (xc, max(yc - h, 0), min(xc + w, sw * 2), yc)
                b = (0, h - (a[3] - a[1]), min(w, a[2] - a[0]), h)
            elif i == 2:  # bottom left
                a = (max(xc - w, 0), yc, xc, min(sh * 2, yc + h))
                b = (w - (a[2] - a[0]), 0, w, min(a[3] - a[1], h))
            else:  # bottom right
                a = (xc, yc, min(xc + w, sw * 2), min(sh * 2, yc + h))
                b = (0, 0, min(w, a[2] - a[0]), min(a[3] - a[1], h))
            layout.append({"labels_patch": patch, "x1a": a[0], "y1a": a[1], "x2a": a[2],
                           "y2a": a[3], "x1b": b[0], "y1b": b[1], "x2b": b[2], "y2b": b[3],
                           "padw": a[0] - b[0], "padh": a[1] - b[1], "img_shape": (h, w)})
        params["layout"] = layout
        return params

    def apply_image(self, labels: dict[str, Any],
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Paste the patches on a grey ``2H x 2W`` canvas."""
        sh, sw = self.shape
        canvas = np.full((sh * 2, sw * 2, labels["img"].shape[2]), 114, dtype=np.uint8)
        for item in (params or {})["layout"]:
            img = item["labels_patch"]["img"]
            canvas[item["y1a"]:item["y2a"], item["x1a"]:item["x2a"]] = \
                img[item["y1b"]:item["y2b"], item["x1b"]:item["x2b"]]
        labels["img"] = canvas
        return labels

    def apply_semantic(self, labels: dict[str, Any],
                       params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Detection only: nothing to paste."""
        return labels

    def _cat_labels(self, mosaic_labels: list[dict[str, Any]]) -> dict[str, Any]:
        """Concatenate the patches' boxes, clipped to the canvas."""
        if not mosaic_labels:
            return {}
        sh, sw = self.shape
        out = {"im_file": mosaic_labels[0]["im_file"],
               "ori_shape": mosaic_labels[0]["ori_shape"],
               "resized_shape": (sh * 2, sw * 2),
               "cls": np.concatenate([m["cls"] for m in mosaic_labels], 0),
               "instances": _instance.Instances.concatenate([m["instances"] for m in mosaic_labels],
                                                  axis=0)}
        out["instances"].clip(sw * 2, sh * 2)
        good = out["instances"].remove_zero_area_boxes()
        out["cls"] = out["cls"][good]
        return out


class RectDataset(_dataset.YOLODataset):  # type: ignore[misc]
    """A YOLO-format dataset served letterboxed at ``shape`` (see the module docstring).

    Args:
        shape: (height, width) of the network input.
        *args: :class:`ultralytics.data.dataset.YOLODataset` arguments (``rect`` must be
            False).
        **kwargs: Likewise.
    """

    def __init__(self, *args: Any, shape: tuple[int, int], **kwargs: Any) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        kwargs["imgsz"] = max(self.shape)
        super().__init__(*args, **kwargs)

    def load_image(self, i: int, rect_mode: bool = True,
                   resize_short: bool = False) -> tuple[Any, tuple[int, int], tuple[int, int]]:
        """Image ``i`` (BGR) fitted inside ``shape``, its original and its fitted size."""
        if self.ims[i] is not None:
            cached: tuple[Any, tuple[int, int], tuple[int, int]] = (
                self.ims[i], self.im_hw0[i], self.im_hw[i])
            return cached
        im = _patches.imread(self.im_files[i], flags=self.cv2_flag)
        if im is None:
            raise FileNotFoundError(f"Image Not Found {self.im_files[i]}")
        h0, w0 = im.shape[:2]
        h, w = fit_size(h0, w0, self.shape)
        if (h, w) != (h0, w0):
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
        if im.ndim == 2:
            im = im[..., None]
        if self.augment and self.cache != "ram":  # Ultralytics' mosaic buffer
            self.ims[i], self.im_hw0[i], self.im_hw[i] = im, (h0, w0), im.shape[:2]
            self.buffer.append(i)
            if 1 < len(self.buffer) >= self.max_buffer_length:
                j = self.buffer.pop(0)
                self.ims[j], self.im_hw0[j], self.im_hw[j] = None, None, None
        return im, (h0, w0), im.shape[:2]

    def build_transforms(self, hyp: Any = None) -> Any:
        """Training: mosaic, affine, mix-up, HSV, flips at ``shape``; else a letterbox."""
        h, w = self.shape
        if self.augment:
            mosaic = RectMosaic(self, self.shape, p=hyp.mosaic)
            affine = _aug.RandomPerspective(degrees=hyp.degrees, translate=hyp.translate,
                                            scale=hyp.scale, shear=hyp.shear,
                                            perspective=hyp.perspective, size=(w, h))
            pre = _aug.Compose([mosaic, affine])
            transforms = _aug.Compose([
                pre, _aug.MixUp(self, pre_transform=pre, p=hyp.mixup),
                _aug.RandomHSV(hgain=hyp.hsv_h, sgain=hyp.hsv_s, vgain=hyp.hsv_v),
                _aug.RandomFlip(direction="vertical", p=hyp.flipud),
                _aug.RandomFlip(direction="horizontal", p=hyp.fliplr)])
        else:
            transforms = _aug.Compose([_aug.LetterBox(new_shape=self.shape, scaleup=False)])
        transforms.append(_aug.Format(
            bbox_format="xywh", normalize=True, return_mask=False, return_keypoint=False,
            return_obb=False, batch_idx=True, mask_ratio=hyp.mask_ratio,
            mask_overlap=hyp.overlap_mask, bgr=hyp.bgr if self.augment else 0.0))
        return transforms
