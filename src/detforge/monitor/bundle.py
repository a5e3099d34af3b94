"""The ``monitor/`` folder of every deployment bundle target.

Beside the model, each target folder gets the monitoring files of
:func:`~detforge.monitor.assets.write_assets` (compose mounts the target folder into the
server at ``/models``) and, when the bundle is built with ``--data``, ``reference.json``:
the bundled model's own reference statistics on the dataset's validation split, computed
with the bundled file itself (so ``serve --reference`` accepts it for that model and no
other). Without ``--data`` a note says how to build one: a reference on synthetic images
would describe nothing the model will see. A reference that cannot be computed (the
model detects nothing on the split at the bundle's ``--conf``) is a note in the bundle's
summary, not a failed bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detforge.core.errors import ConfigError
from detforge.monitor.assets import AssetOptions, write_assets

__all__ = ["REFERENCE_MAX_IMAGES", "MonitorFiles"]

REFERENCE_MAX_IMAGES = 256
"""Validation images a bundle's reference is computed on, at most."""


class MonitorFiles:
    """Wraps a bundle's reference writer: also writes ``monitor/`` into the target folder.

    Args:
        inner: ``fn(folder, onnx_path) -> notes``, the bundle's reference writer.
        data: The bundle's dataset, or None.
        conf: The bundle's score threshold.
        iou: Its NMS IoU threshold.
    """

    def __init__(self, inner: Callable[[Path, Path], list[str]], *, data: str | Path | None,
                 conf: float, iou: float) -> None:
        self.inner, self.data, self.conf, self.iou = inner, data, conf, iou

    def __call__(self, folder: Path, onnx_path: Path) -> list[str]:
        from detforge.data.formats import read_dataset
        from detforge.monitor.build import build_reference

        notes = list(self.inner(folder, onnx_path))
        out = folder / "monitor"
        write_assets(out, AssetOptions(reference="/models/monitor/reference.json"),
                     model_dir="..")
        if self.data is None:
            notes.append(f"monitor/reference.json not written (no --data); build it with "
                         f"`detforge monitor reference {onnx_path.name} --data DATASET --out "
                         f"monitor/reference.json --conf {self.conf:g}`")
            return notes
        split = "val" if "val" in read_dataset(self.data).split_names() else None
        try:
            ref = build_reference(onnx_path, self.data, split=split, conf=self.conf,
                                  iou=self.iou, device="cpu", max_images=REFERENCE_MAX_IMAGES,
                                  min_images=1, batch=1)
        except ConfigError as exc:  # e.g. a barely trained model detects nothing at --conf
            notes.append(f"monitor/reference.json not written: {exc}")
            return notes
        ref.write(out / "reference.json")
        return notes
