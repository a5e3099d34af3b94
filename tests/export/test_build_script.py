"""``build_engine.sh`` per TensorRT version, run here against a fake ``trtexec``.

The fake checks its command line against the option table of the TensorRT version it
plays (``FAKE_TRT_VERSION``), refuses any option that version's ``trtexec`` does not
know (as trtexec's ``Unknown option`` exit does), prints the version and device lines the
real one prints, and writes the engine. A wrong flag for a version therefore fails the
script, and the manifest the script writes must validate and pass the device check that
``deploy verify`` applies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from detforge.core.artefacts import TARGETS, get_target, read_engine_sidecar
from detforge.export.engine import build_or_script
from detforge.export.engine_check import check_build_script
from detforge.export.trt_compat import rules_for
from detforge.runtime.backends.tensorrt import check_engine_manifest

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

FAKE_TRTEXEC = '''#!{python}
"""A stand-in for trtexec: checks argv against one TensorRT version's option table."""
import json, os, sys
from pathlib import Path

version = os.environ["FAKE_TRT_VERSION"]
table = json.loads(Path(os.environ["FAKE_TABLE"]).read_text())[version]
args = sys.argv[1:]
stamp = "[12/03/2026-10:00:00]"
print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{{version}}] # trtexec " + " ".join(args))
Path(os.environ["FAKE_ARGV"]).write_text("\\n".join(args))
opts = {{}}
for arg in args:
    name, _, value = arg[2:].partition("=")
    if not arg.startswith("--") or name not in table["options"]:
        print(f"{{stamp}} [E] Unknown option: {{arg}}")
        sys.exit(1)
    if name == "memPoolSize" and not table["pool_units"] and \\
            not value.partition(":")[2].replace(".", "", 1).isdigit():
        print(f"{{stamp}} [E] Invalid --memPoolSize {{value}}")
        sys.exit(1)
    opts[name] = value
if not Path(opts["onnx"]).is_file():
    print(f"{{stamp}} [E] Could not open file {{opts['onnx']}}")
    sys.exit(1)
if os.environ.get("FAKE_QUIET") != "1":
    print(f"{{stamp}} [I] === Device Information ===")
    print(f"{{stamp}} [I] Selected Device: {{os.environ.get('FAKE_GPU', 'Orin')}}")
    print(f"{{stamp}} [I] Compute Capability: {{os.environ.get('FAKE_CC', '8.7')}}")
    print(f"{{stamp}} [I] TensorRT version: {{version}}")
Path(opts["saveEngine"]).write_bytes(b"plan")
if "timingCacheFile" in opts:
    Path(opts["timingCacheFile"]).write_bytes(b"cache")
print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{{version}}]")
'''
VERSIONS = ("8.2.1", "8.5.2", "8.6.1", "10.3.0", "10.9.0", "11.0", "11.1.0")


@pytest.fixture
def fake_path(tmp_path: Path) -> Path:
    """A bin folder holding the fake trtexec and its option table (from trt_compat)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    exe = bin_dir / "trtexec"
    exe.write_text(FAKE_TRTEXEC.format(python=sys.executable))
    exe.chmod(0o755)
    table = {v: {"options": sorted(rules_for(v).trtexec.options),
                 "pool_units": rules_for(v).trtexec.pool_units} for v in VERSIONS}
    (bin_dir / "table.json").write_text(json.dumps(table))
    return bin_dir


def run_script(script: Path, bin_dir: Path, version: str, *, cwd: Path, **env: str) -> Any:
    full = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_TRT_VERSION": version, "FAKE_ARGV": str(bin_dir / "argv"),
            "FAKE_TABLE": str(bin_dir / "table.json"), **env}
    full.pop("TRTEXEC", None)
    return subprocess.run([BASH, str(script)], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=60)


def _model(tmp_path: Path, factory: Any, target_name: str, precision: str) -> Path:
    opset = 13 if get_target(target_name).tensorrt.startswith("8.2") else 17
    return factory(tmp_path / "bundle" / "model.onnx", qdq=precision == "int8", opset=opset)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_script_per_target_parses_and_has_its_versions_options(
        tmp_path: Path, conv_onnx_factory: Any, name: str) -> None:
    target = get_target(name)
    for precision in ("fp16", target.precision):
        onnx_path = _model(tmp_path, conv_onnx_factory, name, precision)
        script = build_or_script(onnx_path, target, precision, batch=f"1-{target.batch}",
                                 script_only=True).script
        assert subprocess.run([BASH, "-n", str(script)]).returncode == 0
        assert check_build_script(script, rules_for(target.tensorrt)) == []
        assert f"TensorRT {target.tensorrt}" in script.read_text()


# one run per distinct trtexec (version, precision), and the versions no target ships
CASES = [("jetson-nano", "8.2.1", "fp16"), ("xavier-agx", "8.5.2", "int8"),
         ("t4", "8.6.1", "int8"), ("orin-nano", "10.3.0", "int8"), ("a100", "10.3.0", "fp16"),
         ("rtx-50", "10.9.0", "fp16"), ("t4", "11.1.0", "int8"), ("rtx-50", "11.0", "fp32")]


@pytest.mark.parametrize(("name", "version", "precision"), CASES,
                         ids=[f"{n}-{v}-{p}" for n, v, p in CASES])
def test_script_runs_against_its_trtexec(tmp_path: Path, fake_path: Path,
                                         conv_onnx_factory: Any, name: str, version: str,
                                         precision: str) -> None:
    target = get_target(name)
    onnx_path = _model(tmp_path, conv_onnx_factory, name, precision)
    result = build_or_script(onnx_path, target, precision, batch="1-4", script_only=True,
                             tensorrt=None if version == target.tensorrt else version)
    script = result.script
    assert subprocess.run([BASH, "-n", str(script)], capture_output=True).returncode == 0
    assert check_build_script(script, rules_for(version)) == []
    run = run_script(script, fake_path, version, cwd=tmp_path, FAKE_CC=target.cc,
                     FAKE_GPU=target.title)
    assert run.returncode == 0, run.stdout + run.stderr
    argv = (fake_path / "argv").read_text().split("\n")
    assert "--optShapes=images:4x3x32x48" in argv  # opt = max: full batches
    sidecar = read_engine_sidecar(result.plan.engine)
    assert (sidecar.tensorrt_version, sidecar.compute_capability) == (version, target.cc)
    assert sidecar.builder == "trtexec" and sidecar.precision == precision
    assert sidecar.gpu_name == target.title and len(sidecar.onnx_sha256 or "") == 64
    assert sidecar.engine_sha256 == hashlib.sha256(b"plan").hexdigest()
    assert sidecar.batch.opt == sidecar.batch.max == 4
    # what deploy verify checks before it loads (never rebuilds) the engine
    check_engine_manifest(sidecar.model_dump(), {"compute_capability": target.cc,
                                                 "tensorrt_version": version})


@pytest.mark.parametrize(("script_for", "runs_on"), [("8.2.1", "10.3.0"), ("10.3.0", "8.2.1"),
                                                     ("10.3.0", "11.1.0")])
def test_script_for_another_version_fails(tmp_path: Path, fake_path: Path,
                                          conv_onnx_factory: Any, script_for: str,
                                          runs_on: str) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", opset=13)
    result = build_or_script(onnx_path, get_target("t4"), "fp16", script_only=True,
                             tensorrt=script_for)
    run = run_script(result.script, fake_path, runs_on, cwd=tmp_path)
    assert run.returncode != 0 and "Unknown option" in run.stdout
    assert not result.plan.engine.exists() and not (tmp_path / (result.plan.engine.name
                                                                + ".json")).exists()


def test_planted_mempoolsize_fails_the_8_2_build(tmp_path: Path, fake_path: Path,
                                                 conv_onnx_factory: Any) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", opset=13)
    script = build_or_script(onnx_path, get_target("jetson-nano"), "fp16",
                             script_only=True).script
    text = script.read_text()
    assert "--workspace=2048" in text and "--memPoolSize" not in text
    script.write_text(text.replace("--workspace=2048", "--memPoolSize=workspace:2048"))
    assert [v.rule for v in check_build_script(script, rules_for("8.2.1"))] == ["trtexec-option"]
    run = run_script(script, fake_path, "8.2.1", cwd=tmp_path)
    assert run.returncode == 1 and "Unknown option: --memPoolSize" in run.stdout
    assert "trtexec failed" in run.stderr


def test_out_and_timing_cache_in_other_folders(tmp_path: Path, fake_path: Path,
                                               conv_onnx_factory: Any) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "models" / "model.onnx", qdq=True)
    out = tmp_path / "engines" / "orin" / "my.engine"
    cache = tmp_path / "caches" / "orin.cache"
    cache.parent.mkdir()
    result = build_or_script(onnx_path, get_target("orin-nx"), "int8", batch="2-8",
                             engine=out, timing_cache=cache, script_only=True, dla_core=1)
    assert result.script == out.with_name("my.build.sh")
    text = result.script.read_text()
    assert f"--onnx={onnx_path}" in text and f"--timingCacheFile={cache}" in text
    assert "--saveEngine=my.engine" in text and "--useDLACore=1 --allowGPUFallback" in text
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    run = run_script(Path(os.path.relpath(result.script, elsewhere)), fake_path, "10.3.0",
                     cwd=elsewhere)
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_bytes() == b"plan" and cache.read_bytes() == b"cache"
    assert read_engine_sidecar(out).dla_core == 1
    assert sorted(p.name for p in elsewhere.iterdir()) == []


def test_bundle_layout_is_relative_and_moves(tmp_path: Path, fake_path: Path,
                                             conv_onnx_factory: Any) -> None:
    onnx_path = conv_onnx_factory(tmp_path / "bundle" / "model.onnx", opset=13)
    script = build_or_script(onnx_path, get_target("jetson-tx2"), "fp16",
                             script_only=True).script
    moved = tmp_path / "copied-to-device"
    shutil.copytree(tmp_path / "bundle", moved)
    shutil.rmtree(tmp_path / "bundle")
    run = run_script(moved / script.name, fake_path, "8.2.1", cwd=tmp_path, FAKE_CC="6.2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert read_engine_sidecar(moved / "model_b1_gpu0_fp16.engine").compute_capability == "6.2"


def test_manifest_from_fallbacks_or_none(tmp_path: Path, fake_path: Path,
                                         conv_onnx_factory: Any) -> None:
    """trtexec without its version lines: python3's tensorrt and nvidia-smi tell instead;
    with neither, the engine is kept but no manifest is written, and the script fails."""
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx")
    script = build_or_script(onnx_path, get_target("l4"), "fp16", script_only=True).script
    engine = tmp_path / "model_b1_gpu0_fp16.engine"
    run = run_script(script, fake_path, "10.3.0", cwd=tmp_path, FAKE_QUIET="1")
    assert run.returncode == 1 and "no manifest written" in run.stderr
    assert engine.exists() and not Path(f"{engine}.json").exists()
    fake_trt = tmp_path / "pylib" / "tensorrt"
    fake_trt.mkdir(parents=True)
    (fake_trt / "__init__.py").write_text('__version__ = "10.3.0.26"\n')
    smi = fake_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$1" in *compute_cap*) echo 8.9;; *) echo "NVIDIA L4";; '
                   'esac\n')
    smi.chmod(0o755)
    run = run_script(script, fake_path, "10.3.0", cwd=tmp_path, FAKE_QUIET="1",
                     PYTHONPATH=str(fake_trt.parent))
    assert run.returncode == 0, run.stdout + run.stderr
    sidecar = read_engine_sidecar(engine)
    assert (sidecar.tensorrt_version, sidecar.compute_capability, sidecar.gpu_name) == \
        ("10.3.0.26", "8.9", "NVIDIA L4")
