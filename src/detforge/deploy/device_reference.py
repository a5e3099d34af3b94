"""What the workstation sees and what the device should see, written into ``reference/``.

For each target folder :class:`References` writes the reference images, the workstation's
detections on them (``detections.json``, detforge's own inference on the CPU), and the
device's side (``device/``): the network input nvinfer makes from each image under the
folder's own DeepStream configs, and the objects the parser and nvinfer's clustering return
for it. It also runs the emulated pipeline stage by stage, so a bundle already says how
closely the device will agree with the workstation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.detections import Detections
from detforge.core.errors import DetforgeError
from detforge.deploy.dsconfig import Pipeline, read_pipeline
from detforge.deploy.emulation import DeviceInput, StageResult, emulate
from detforge.deploy.reference import (
    compare_detections,
    read_rgb,
    write_device_reference,
    write_reference,
)
from detforge.export.engine_plan import sha256_file

__all__ = ["StageAgreement", "References", "host_parse", "onnx_infer", "run_emulation",
           "stage_agreements"]

Infer = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def onnx_infer(onnx_path: Path) -> tuple[Infer, str, str]:
    """An ONNX Runtime CPU session as ``infer(batch) -> first output``, with the model's
    input and output names."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name, out_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def infer(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(session.run([out_name], {in_name: x})[0], np.float32)

    return infer, in_name, out_name


def host_parse(folder: Path) -> tuple[Any, str]:
    """The bundle's own parser compiled here (``parse`` callable, "compiled parser"), or the
    numpy twin (None, and why) when no compiler is present."""
    from detforge.deploy.parser import PARSER_DIR, SOURCES, HostParser, host_library

    source = folder / PARSER_DIR / SOURCES[0]
    try:
        parser = HostParser(host_library(source if source.is_file() else None))
    except DetforgeError as exc:
        return None, f"numpy twin of the parser ({exc})"
    return parser.parse, "compiled parser"


@dataclass(frozen=True)
class StageAgreement:
    """Agreement of one emulated stage's detections with the workstation's."""

    stage: str
    agreement: float
    matched: int
    missing: int
    extra: int


def stage_agreements(reference: Sequence[Detections], stages: Sequence[StageResult], *,
                     iou: float, borderline: float) -> list[StageAgreement]:
    """Compare every stage with the reference (same class, IoU >= ``iou``)."""
    out = []
    for s in stages:
        c = compare_detections(reference, s.detections, iou=iou, borderline=borderline)
        out.append(StageAgreement(s.stage, c.agreement, c.matched, c.missing, c.extra))
    return out


def run_emulation(folder: Path, images: Sequence[NDArray[np.uint8]], infer: Infer,
                  thresholds: dict[str, Any], source_size: tuple[int, int], *,
                  pipe: Pipeline | None = None,
                  device: list[DeviceInput] | None = None) -> tuple[list[StageResult], str]:
    """The emulated pipeline under ``folder``'s configs; also says which parser ran."""
    pipe = pipe or read_pipeline(folder)
    parse, how = host_parse(folder)
    stages = emulate(images, pipe, infer, conf=float(thresholds["conf"]),
                     iou=float(thresholds["iou"]), max_det=int(thresholds["max_det"]),
                     source_size=source_size, parse=parse, device_inputs=device)
    return stages, how


class References:
    """Writes ``reference/`` into target folders; the workstation's detections are computed
    once per distinct model."""

    def __init__(self, images: Sequence[Path], thresholds: dict[str, Any], work: Path,
                 source_size: tuple[int, int]) -> None:
        self.images = list(images)
        self.thresholds = thresholds
        self.source_size = source_size
        self.work = work
        self.pixels = [read_rgb(p) for p in self.images]
        self._detections: dict[str, tuple[Path, list[Detections]]] = {}

    def _workstation(self, onnx_path: Path) -> tuple[Path, list[Detections]]:
        from detforge.runtime import load_model

        key = sha256_file(onnx_path)
        if key not in self._detections:
            t = self.thresholds
            with load_model(onnx_path, device="cpu", conf=t["conf"], iou=t["iou"],
                            max_det=t["max_det"]) as m:
                dets = [m.predict([p])[0] for p in self.pixels]
            folder = self.work / f"ref-{key[:12]}"
            folder.mkdir()
            path = write_reference(folder, self.images, dets, model=onnx_path.name,
                                   thresholds=t)
            self._detections[key] = (path, dets)
        return self._detections[key]

    def __call__(self, folder: Path, onnx_path: Path) -> list[str]:
        """Write ``folder/reference``; returns notes (the predicted device agreement)."""
        ref = folder / "reference"
        ref.mkdir(parents=True, exist_ok=True)
        for img in self.images:
            shutil.copyfile(img, ref / img.name)
        path, dets = self._workstation(onnx_path)
        shutil.copyfile(path, ref / path.name)
        infer, in_name, out_name = onnx_infer(onnx_path)
        pipe = read_pipeline(folder)
        device: list[DeviceInput] = []
        stages, how = run_emulation(folder, self.pixels, infer, self.thresholds,
                                    self.source_size, pipe=pipe, device=device)
        write_device_reference(ref, [d.pixels for d in device], [d.objects for d in device],
                               sources=self.images, input_name=in_name, output_name=out_name,
                               scale=pipe.scale, offsets=pipe.offsets,
                               thresholds=pipe.thresholds())
        final = stage_agreements(dets, stages[-1:], iou=0.9,
                                 borderline=float(self.thresholds["conf"]) + 0.05)[0]
        notes = [f"emulated DeepStream pipeline agrees with the workstation on "
                 f"{final.agreement:.1%} of boxes ({how}); `detforge deploy verify` shows "
                 f"each stage"]
        return notes
