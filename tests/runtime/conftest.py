"""Runtime fixtures: a YOLO11n ONNX exported once per session by Ultralytics (offline)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from detforge.testing import random_image


def _ultralytics_env(root: Path) -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / "yolo-config"))
    os.environ.setdefault("MPLCONFIGDIR", str(root / "mpl"))


@pytest.fixture(scope="session")
def yolo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``yolo11n.onnx`` (320x320, 80 classes) from a seeded random init.

    Batch-norm statistics are recalibrated on a few synthetic images and the class biases
    raised, so scores spread over (0, 1) instead of all sitting near 1e-5: the parity test
    then compares meaningful rankings.
    """
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("yolo")
    _ultralytics_env(root)
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    torch.manual_seed(0)
    yolo = YOLO("yolo11n.yaml")
    net = yolo.model
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    imgs = np.stack([random_image(320, 320, seed=s).transpose(2, 0, 1) for s in range(4)])
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(imgs.astype(np.float32) / 255))
        for branch in net.model[-1].cv3:
            branch[-1].bias.add_(3.0)
    net.eval()
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with warnings.catch_warnings():  # torch's legacy-exporter DeprecationWarning
            warnings.simplefilter("ignore")
            out = Path(yolo.export(format="onnx", imgsz=320, simplify=False, verbose=False))
        yolo.save(str(root / "yolo11n.pt"))
    finally:
        os.chdir(cwd)
    return out if out.is_absolute() else root / out
