"""A full disk or a read-only one: one line naming the output, the free space and the space
needed, nothing left behind; checked on real size-limited tmpfs mounts."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.hostile_inputs import small_filesystem
from typer.testing import CliRunner

from detforge.cli import app
from detforge.core.errors import StorageError
from detforge.core.storage import storage_error, storage_errors, tree_size
from detforge.data.synth import synthesize

runner = CliRunner()
FORMATS = ("coco", "yolo", "voc", "kitti")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("storage") / "ds"
    synthesize(path, images=24, classes=2, seed=0, size=(160, 120))
    return path


def _one_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("StorageError: ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_on_a_full_disk_is_one_line_and_leaves_nothing(dataset: Path, tmp_path: Path,
                                                               fmt: str) -> None:
    with small_filesystem(tmp_path / "small", "64k") as small:
        out = small / "converted"
        result = runner.invoke(app, ["data", "convert", str(dataset), str(out), "--to", fmt])
        left = sorted(p.name for p in small.iterdir())
    assert result.exit_code == 1, result.output
    line = _one_line(result.output)
    needed = tree_size(dataset) / 2**10
    assert re.search(rf"{re.escape(str(out))}: no space left on device \([\d.]+ KiB free on "
                     rf"{re.escape(str(small))}; about [\d.]+ KiB needed\)", line), line
    assert float(re.findall(r"about ([\d.]+) KiB", line)[0]) == pytest.approx(needed, abs=0.1)
    assert left == []  # no output, no hidden staging folder


def test_convert_to_a_read_only_disk_names_it(dataset: Path, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "ro", "64k") as ro:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        out = ro / "converted"
        result = runner.invoke(app, ["data", "convert", str(dataset), str(out), "--to", "coco"])
    assert result.exit_code == 1, result.output
    line = _one_line(result.output)
    assert "read-only file system" in line and str(ro) in line


def test_killed_convert_staging_is_removed_by_the_next(dataset: Path, tmp_path: Path) -> None:
    child = ("import os, signal, sys\n"
             "from detforge.core.atomic import stage_dir\n"
             "(stage_dir(sys.argv[1]) / 'half.txt').write_text('x')\n"
             "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "parent" / "converted"
    assert subprocess.run([sys.executable, "-c", child, str(out)], check=False).returncode == -9
    [leftover] = list(out.parent.iterdir())
    assert leftover.name.startswith(".converted.") and leftover.name.endswith(".partial")
    result = runner.invoke(app, ["data", "convert", str(dataset), str(out), "--to", "yolo"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["converted"]


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    import torch

    from detforge.train.offline import import_ultralytics

    import_ultralytics(tmp_path / "cfg")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    model.names = {0: "a", 1: "b"}
    weights = tmp_path / "tiny.pt"
    torch.save({"model": model.half(), "train_args": {}, "epoch": -1}, weights)
    with small_filesystem(tmp_path / "small", "1m") as small:
        out = small / "model.onnx"
        result = runner.invoke(app, ["export", str(weights), "--out", str(out), "--imgsz",
                                     "64", "--no-simplify"])
        left = sorted(p.name for p in small.iterdir())
    assert result.exit_code == 1, result.output
    line = _one_line(result.output)
    needed = 2 * weights.stat().st_size / 2**20
    assert re.search(rf"{re.escape(str(out))}: no space left on device \([\d.]+ (KiB|MiB) "
                     rf"free on {re.escape(str(small))}; about [\d.]+ MiB needed\)", line), line
    assert float(re.findall(r"about ([\d.]+) MiB", line)[0]) == pytest.approx(needed, abs=0.1)
    assert left == []


@pytest.mark.parametrize(("code", "text"), [
    (errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded"),
    (errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system")])
def test_storage_errors_translate_only_their_errnos(tmp_path: Path, code: int, text: str) -> None:
    with pytest.raises(StorageError, match=f"^{re.escape(str(tmp_path / 'o'))}: {text}"):
        with storage_errors(tmp_path / "o", needed=2048):
            raise OSError(code, os.strerror(code))
    with pytest.raises(FileNotFoundError), storage_errors(tmp_path / "o"):
        raise FileNotFoundError(errno.ENOENT, "gone")
    assert storage_error(OSError(errno.EIO, "io")) is None
