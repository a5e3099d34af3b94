"""PyTorch backend: an Ultralytics ``.pt`` checkpoint run through torch (imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import BackendError, ConfigError, MissingExtraError
from detforge.runtime.backend import BackendBase, InputSpec, RawOutput
from detforge.runtime.metadata import LetterboxSpec, ModelMeta

__all__ = ["TorchBackend", "trained_input"]


def trained_input(net: Any) -> tuple[tuple[int, int] | None, bool]:
    """(height, width) an Ultralytics model was trained at, and whether letterboxed.

    detforge's trainer records both in the model's ``yaml`` (``detforge: {imgsz,
    letterbox}``, :mod:`detforge.train.backends.ul_trainer`). Without that record the size
    is the checkpoint's ``args.imgsz`` and the images were not letterboxed by detforge (an
    RT-DETR trained by Ultralytics itself saw them stretched to a square).

    Example:
        >>> class Net: yaml = {"detforge": {"imgsz": [256, 448], "letterbox": True}}
        >>> trained_input(Net())
        ((256, 448), True)
    """
    yaml = getattr(net, "yaml", None) or {}
    record = yaml.get("detforge") if isinstance(yaml, dict) else None
    if isinstance(record, dict) and isinstance(record.get("imgsz"), list | tuple):
        h, w = record["imgsz"][:2]
        return (int(h), int(w)), bool(record.get("letterbox", True))
    args = getattr(net, "args", None) or {}
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    if isinstance(imgsz, int):
        return (imgsz, imgsz), False
    if isinstance(imgsz, list | tuple) and imgsz:
        return (int(imgsz[0]), int(imgsz[-1])), False
    return None, False


class TorchBackend(BackendBase):
    """Runs an Ultralytics detection checkpoint (YOLOv8/11 ``raw`` or RT-DETR head).

    An RT-DETR's output is Ultralytics' ``[B, Q, 6]`` (normalised cx, cy, w, h, score,
    class: layout ``rtdetr-normalized``); its input is letterboxed when detforge trained it
    and stretched to the input size when Ultralytics did (:func:`trained_input`), as in
    training.

    Args:
        path: The ``.pt`` file.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        half: On a GPU, run in FP16 with channels-last memory (the checkpoint's own
            precision; tensor cores); None means yes on a GPU. Ignored on the CPU.

    Raises:
        MissingExtraError: torch or Ultralytics is not installed.
        BackendError: The checkpoint cannot be loaded or is not a detector.
    """

    name = "torch"

    def __init__(self, path: str | Path, *, device: str = "auto", half: bool | None = None,
                 ) -> None:
        try:
            import torch

            from detforge.integrations.ultralytics import import_ultralytics

            YOLO = import_ultralytics().YOLO
        except ImportError as exc:
            raise MissingExtraError(".pt models need torch and Ultralytics: pip install "
                                    "'detforge[train]', or load the exported .onnx") from exc
        self.path = Path(path)
        if device == "auto":
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU; "
                              f"use --device cpu")
        try:
            yolo = YOLO(str(self.path))
        except Exception as exc:  # Ultralytics raises many types for a bad checkpoint
            raise BackendError(f"{self.path}: Ultralytics cannot load it ({exc})") from exc
        if yolo.task != "detect":
            raise BackendError(f"{self.path}: a {yolo.task!r} model; detforge runs detectors")
        self._torch = torch
        self.device = "cpu" if device == "cpu" else device if ":" in device else "cuda:0"
        net: Any = yolo.model
        self.half = self.device != "cpu" and half is not False
        net = net.to(self.device).eval()
        if hasattr(net, "fuse"):  # conv + batch-norm folded, as Ultralytics' own predict does
            net = net.fuse(verbose=False)
        if self.half:
            net = net.half().to(memory_format=torch.channels_last)
        else:
            net = net.float()
        self._net: Any = net
        head: Any = net.model[-1] if hasattr(net, "model") else None
        if type(head).__name__ == "RTDETRDecoder":
            # A checkpoint keeps the decoder's anchors of the last input it saw, rounded to
            # FP16 when it was saved (up to 1e-3 off); rebuilt at the first call, as the
            # ONNX export builds them, the .pt and the ONNX give the same scores.
            head.shapes = []
        imgsz = (yolo.overrides or {}).get("imgsz") or 640
        hw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[-1]))
        trained, letterboxed = trained_input(net)
        is_rtdetr = "rtdetr" in type(self._net).__name__.lower()
        names = self._net.names
        self.meta = ModelMeta(
            classes=tuple(str(names[k]) for k in sorted(names)), imgsz=trained or hw,
            layout="rtdetr-normalized" if is_rtdetr else "raw",
            stride=int(max(self._net.stride)),
            letterbox=LetterboxSpec(scale_fill=is_rtdetr and not letterboxed),
            dynamic_batch=True)
        self.input_spec = InputSpec(name="images", height=None, width=None, max_batch=None)

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        """Run the network on ``[B, 3, H, W]``; returns its first output as numpy."""
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
            if self.half:
                x = x.half().contiguous(memory_format=torch.channels_last)
            out = self._net(x)
        if isinstance(out, list | tuple):
            out = out[0]
        return [out.float().cpu().numpy()]
