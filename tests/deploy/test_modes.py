"""Bundles, reports and atomic writes get the modes ordinary files get (0644 / 0755 under
umask 022), so a DeepStream or Triton service running as another user can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from detforge.core.atomic import atomic_write_json, atomic_write_text, current_umask
from detforge.deploy.bundle import bundle_model
from detforge.testing import tiny_onnx_model


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["022", "077", "002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int) -> None:
    atomic_write_text(tmp_path / "a" / "report.html", "<p>x</p>")
    atomic_write_json(tmp_path / "metrics.json", {"x": 1})
    assert _mode(tmp_path / "a" / "report.html") == 0o666 & ~umask
    assert _mode(tmp_path / "metrics.json") == 0o666 & ~umask
    assert _mode(tmp_path / "a") == 0o777 & ~umask


def test_bundle_modes(tmp_path: Path, umask: int) -> None:
    model = tiny_onnx_model(tmp_path / "m.onnx")
    bundle_model(model, targets=["t4"], out=tmp_path / "out", reference_images=1)
    folder = tmp_path / "out" / "t4"
    executables = {"build_engine.sh", "verify_on_device.py"}
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            assert _mode(path) == 0o777 & ~umask, path
        elif path.name in executables:
            assert _mode(path) == 0o777 & ~umask, path
        else:
            assert _mode(path) == 0o666 & ~umask, path


def test_converted_dataset_folder_mode(tmp_path: Path, umask: int) -> None:
    from detforge.data.formats import read_dataset, write_dataset
    from detforge.data.synth import synthesize

    synthesize(tmp_path / "ds", images=4, classes=2, seed=0, size=(96, 64))
    write_dataset(read_dataset(tmp_path / "ds"), tmp_path / "coco", "coco")
    assert _mode(tmp_path / "coco") == 0o777 & ~umask  # staged in a temporary folder
