"""build_engine.sh run as a device runs it (with a stand-in trtexec): it installs the Triton
plan model into a version folder with its record, and verify trusts what it made."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from detforge.deploy.bundle import bundle_model
from detforge.deploy.verify import verify_bundle
from detforge.testing import tiny_onnx_model

FAKE = r'''#!{python}
import os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
with open(args["saveEngine"], "wb") as fh:
    fh.write(("plan from %s, %s" % (args["onnx"], args.get("maxShapes"))).encode())
# the device lines a real trtexec prints, which build_engine.sh records in ENGINE.json
print("[I] Selected Device: " + os.environ["FAKE_GPU"])
print("[I] Compute Capability: " + os.environ["FAKE_CC"])
print("[I] TensorRT version: " + os.environ["FAKE_TRT"])
'''


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("script")
    model = tiny_onnx_model(root / "tiny.onnx", classes=("a", "b"), imgsz=(64, 96))
    bundle_model(model, targets=["orin-nano", "a10"], out=root / "out", reference_images=1,
                 precision="fp16")
    return root / "out"


def _run_script(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    target = json.loads((folder / "manifest.json").read_text())["target"]
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "TRTEXEC": str(fake), "FAKE_GPU": target["name"],
           "FAKE_CC": target["compute_capability"], "FAKE_TRT": target["tensorrt"]}
    return subprocess.run(["bash", str(folder / "build_engine.sh")], capture_output=True,
                          text=True, env=env, check=False)


def _pbtxt(path: Path) -> object:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("target", ["orin-nano", "a10"], ids=str)
def test_build_script_installs_the_triton_plan(bundles: Path, target: str,
                                               tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(bundles / target, tmp_path / target))
    done = _run_script(folder, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    engine = folder / manifest["engine"]["file"]
    assert engine.is_file()
    assert (folder / f"{engine.name}.json").is_file()  # the sidecar build_engine.sh records
    plan_model = manifest["triton"]["plan_model"]
    cfg = _pbtxt(folder / "model_repository" / plan_model / "config.pbtxt")
    plan = cfg.cc_model_filenames[manifest["target"]["compute_capability"]]  # type: ignore[attr-defined]
    installed = folder / "model_repository" / plan_model / "1" / plan
    assert installed.is_file()
    if manifest["target"]["batch"] < cfg.max_batch_size:  # type: ignore[attr-defined]
        assert f"x{cfg.max_batch_size}x" not in engine.read_text()  # type: ignore[attr-defined]
        assert f"input:{cfg.max_batch_size}x3x64x96" in installed.read_text()  # type: ignore[attr-defined]
    else:
        assert installed.read_bytes() == engine.read_bytes()
    for model_dir in (folder / "model_repository").iterdir():  # every model has a version
        assert (model_dir / "1").is_dir()
    report = verify_bundle(folder, speed_seconds=0.05)
    assert report.passed, report.reasons
    assert "built on the device" in report.checks[0].detail
    installed.write_bytes(b"another plan")  # replaced after the build
    reasons = verify_bundle(folder, speed_seconds=0.05).reasons
    assert any(f"{plan} differs from" in r for r in reasons), reasons
