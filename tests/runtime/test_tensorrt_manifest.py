"""The engine manifest check, on fabricated manifests and devices (no GPU needed)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import EngineMismatchError
from detforge.runtime.backends.tensorrt import (
    check_engine_file,
    check_engine_manifest,
    manifest_path,
)

T4 = {"gpu_name": "Tesla T4", "compute_capability": "7.5", "tensorrt_version": "10.3.0",
      "cuda_version": "12.4"}
ok = contextlib.nullcontext()


def _mismatch(match: str) -> Any:
    return pytest.raises(EngineMismatchError, match=match)


@pytest.mark.parametrize(("manifest", "ctx"), [
    ({"compute_capability": "7.5", "tensorrt_version": "10.3.0"}, ok),
    ({"compute_capability": "7.5", "tensorrt_version": "10.3.0.26"}, ok),
    ({"compute_capability": "8.7", "tensorrt_version": "10.3.0", "gpu_name": "Orin"},
     _mismatch(r"built for sm_87 \(Orin\) / TensorRT 10.3.0, this device is sm_75 "
               r"\(Tesla T4\) / TensorRT 10.3.0.*detforge engine build")),
    ({"compute_capability": "7.5", "tensorrt_version": "10.8.0"}, _mismatch("TensorRT 10.8.0")),
    ({"compute_capability": "7.5", "tensorrt_version": "10.1.0", "version_compatible": True},
     ok),
    ({"compute_capability": "7.5", "tensorrt_version": "10.5.0", "version_compatible": True},
     _mismatch("TensorRT 10.5.0")),
    ({"compute_capability": "7.5", "tensorrt_version": "9.3.0", "version_compatible": True},
     _mismatch("TensorRT 9.3.0")),
    ({"compute_capability": "8.6", "tensorrt_version": "10.3.0",
      "hardware_compatibility": "ampere_plus"}, _mismatch("sm_86")),
    ({"tensorrt_version": "10.3.0", "onnx": "m.onnx"},
     _mismatch(r"lacks \[.compute_capability.\].*engine build m.onnx --target")),
], ids=["same", "build-suffix", "other-gpu", "other-trt", "version-compatible",
        "version-compatible-newer-build", "other-major", "ampere-plus-on-turing", "missing-key"])
def test_check_engine_manifest(manifest: dict[str, Any], ctx: Any) -> None:
    with ctx:
        check_engine_manifest(manifest, T4, engine="m.engine")


def test_ampere_plus_engine_runs_on_any_ampere_or_newer() -> None:
    manifest = {"compute_capability": "8.0", "tensorrt_version": "10.3.0",
                "hardware_compatibility": "ampere_plus"}
    check_engine_manifest(manifest, {**T4, "compute_capability": "8.9"})


def test_engine_without_manifest_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    assert manifest_path(engine) == tmp_path / "m.engine.json"
    with pytest.raises(EngineMismatchError, match="no manifest m.engine.json"):
        check_engine_file(engine)
    manifest_path(engine).write_text("{broken")
    with pytest.raises(EngineMismatchError, match="unreadable manifest"):
        check_engine_file(engine)
