"""verify_on_device.py: Python 3.6 and numpy only, and it checks an engine the way the
device runs it -- here with a stand-in trtexec that computes the outputs with ONNX Runtime
and writes them in trtexec's --exportOutput format."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from detforge.deploy import verify_on_device
from detforge.deploy.bundle import bundle_model
from detforge.deploy.manifest import SIGNING_KEY_ENV
from detforge.testing import tiny_onnx_model

SCRIPT = Path(verify_on_device.__file__)
TARGET = "xavier-nx"
STDLIB_36 = {"argparse", "hashlib", "hmac", "json", "os", "re", "shutil", "subprocess", "sys",
             "tempfile", "typing", "ctypes", "ctypes.util"}

FAKE_TRTEXEC = r'''#!{python}
"""Stands in for trtexec: runs the engine's ONNX (env FAKE_ONNX) on --loadInputs and writes
--exportOutput as TensorRT's sampleReporting.cpp does (C++ stream formatting)."""
import os, sys
import numpy as np
import onnxruntime as ort
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
assert os.path.isfile(args["loadEngine"]), "no engine"
name, path = args["loadInputs"].split(":", 1)
shape = [int(d) for d in args["shapes"].split(":", 1)[1].split("x")]
x = np.fromfile(path, "<f4").reshape(shape)
sess = ort.InferenceSession(os.environ["FAKE_ONNX"], providers=["CPUExecutionProvider"])
out = sess.run(None, {{name: x}})[0].astype(np.float32)
out[..., :4] += float(os.environ.get("FAKE_SHIFT", "0"))
values = ", ".join("%g" % v for v in out.ravel())  # C++ streams: 6 significant digits
with open(args["exportOutput"], "w") as fh:
    fh.write('[\n  {{ "name" : "output"\n  , "dimensions" : "%s"\n  , "values" : [ %s ]\n  }}\n]\n'
             % ("x".join(map(str, out.shape)), values))
'''


def test_script_is_python36_and_numpy_only() -> None:
    src = SCRIPT.read_text()
    tree = ast.parse(src, feature_version=(3, 6))  # no walrus, no positional-only, ...
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= STDLIB_36 | {"numpy", "numpy.typing", "tensorrt"}, imported
    assert "__future__" not in imported and "dataclasses" not in imported
    assert not re.search(r"\{[^{}]*=\}", src)  # f"{x=}" is 3.8
    assert not re.search(r"\b(capture_output|text)=", src)  # subprocess.run keywords of 3.7
    assert "kind=\"stable\"" not in src  # numpy >= 1.15; JetPack 4 ships 1.13
    header = src.splitlines()[0]
    assert header == "#!/usr/bin/env python3"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ondevice")
    model = tiny_onnx_model(root / "tiny.onnx", classes=("a", "b", "c"), imgsz=(64, 96))
    bundle_model(model, targets=[TARGET], out=root / "out", reference_images=3)
    return root / "out" / TARGET


@pytest.fixture
def device(bundle: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the bundle with an 'engine' built, and a PATH holding the fake trtexec."""
    folder = Path(shutil.copytree(bundle, tmp_path / TARGET))
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / manifest["engine"]["file"]).write_bytes(b"plan")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FAKE_ONNX": str(folder / manifest["model"]["file"])}
    env.pop(SIGNING_KEY_ENV, None)
    return folder, env


def _run(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(folder / "verify_on_device.py"), *args],
                          capture_output=True, text=True, env=env, check=False, cwd=folder)


def test_on_device_check_passes_with_trtexec(device: tuple[Path, dict[str, str]]) -> None:
    folder, env = device
    done = _run(folder, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "PASS"
    assert "[ok] box agreement 1.000" in done.stdout and "via trtexec" in done.stdout


def test_on_device_check_fails_on_a_wrong_engine(device: tuple[Path, dict[str, str]]) -> None:
    folder, env = device
    done = _run(folder, {**env, "FAKE_SHIFT": "6"})  # every box moved 6 px
    assert done.returncode == 1
    assert "[FAIL] box agreement 0.000" in done.stdout and done.stdout.endswith("FAIL\n")


def test_on_device_check_reads_exported_outputs(device: tuple[Path, dict[str, str]],
                                                tmp_path: Path) -> None:
    folder, env = device
    ref, inputs = verify_on_device.load_device_reference(str(folder))
    trtexec = shutil.which("trtexec", path=env["PATH"])
    assert trtexec is not None
    os.environ["FAKE_ONNX"] = env["FAKE_ONNX"]
    try:
        outs = verify_on_device.run_trtexec(str(next(folder.glob("*.engine"))), inputs,
                                            ref["input"]["name"], ref["output"]["name"],
                                            str(tmp_path), exe=trtexec)
    finally:
        del os.environ["FAKE_ONNX"]
    assert len(outs) == len(inputs)
    files = sorted(str(p) for p in tmp_path.glob("output_*.json"))
    done = _run(folder, {**env, "PATH": "/usr/bin:/bin"}, "--trtexec-output", *files)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(("change", "reason"), [
    (lambda f: (f / "labels.txt").write_text("x\n"), "files changed: labels.txt"),
    (lambda f: (f / "model.onnx").unlink(), "files missing: model.onnx"),
    (lambda f: (f / "reference" / "device" / "expected.json").write_text("{"),
     "unreadable device reference"),
], ids=["changed", "missing", "broken-reference"])
def test_on_device_check_fails_with_reason(device: tuple[Path, dict[str, str]],
                                           change: object, reason: str) -> None:
    folder, env = device
    change(folder)  # type: ignore[operator]
    done = _run(folder, env)
    assert done.returncode == 1 and reason in done.stdout, done.stdout


def test_on_device_check_requires_signature_when_keyed(
        device: tuple[Path, dict[str, str]]) -> None:
    folder, env = device
    done = _run(folder, {**env, SIGNING_KEY_ENV: "fleet secret"})
    assert done.returncode == 1 and "[FAIL] signature" in done.stdout


def test_trtexec_json_with_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text('[\n  { "name" : "output"\n  , "dimensions" : "1x2x6"\n  , "values" : '
                    '[ 1, 2, 3, 4, nan, 0, -inf, 2, inf, 4, 0.5, 1 ]\n  }\n]\n')
    out = verify_on_device.read_trtexec_output(str(path), "output")
    assert out.shape == (1, 2, 6) and str(out[0, 0, 4]) == "nan"
    with pytest.raises(verify_on_device.DeviceCheckError, match="no output tensor named"):
        verify_on_device.read_trtexec_output(str(path), "boxes")
