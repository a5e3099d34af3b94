"""The Python builder on the API shape of each TensorRT version, through fake ``tensorrt``
modules.

Each fake carries only what that version's bindings define (``NVIDIA/TensorRT``
``python/src/infer/pyCore.cpp`` at 8.2.1, 8.5.2, v8.6.1, v10.3.0 and v11.0): 8.2 has
``max_workspace_size`` but no ``set_memory_pool_limit``; 8.x needs an explicit-batch network
for its ONNX parser; 10.x keeps ``EXPLICIT_BATCH`` only as a deprecated no-op; 11.x has no
``EXPLICIT_BATCH``, no ``BuilderFlag.FP16``/``INT8`` and no calibrators. Touching a name a
version lacks raises ``AttributeError`` as the real module would.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from detforge.core.artefacts import get_target, read_engine_sidecar
from detforge.core.errors import ExportError, TargetCapabilityError
from detforge.export.engine_plan import plan_engine, sha256_file
from detforge.export.tensorrt import build_engine

DEVICE = {"gpu_name": "Orin", "compute_capability": "8.7", "cuda_version": "12.6"}


class _Enum:
    def __init__(self, **members: int) -> None:
        self.__dict__.update(members)


def fake_tensorrt(version: str) -> Any:
    """A module with the API surface of TensorRT ``version`` (8.2, 8.5, 8.6, 10, 11)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    v8, v11 = major == 8, major >= 11
    calls: dict[str, Any] = {"flags": set(), "warnings": []}
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version  # type: ignore[attr-defined]
    mod.calls = calls  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    creation = {"STRONGLY_TYPED": 1} if major >= 10 else {}
    if not v11:
        creation["EXPLICIT_BATCH"] = 0
    builder_flags = {"GPU_FALLBACK": 3}
    if not v11:
        builder_flags.update(FP16=0, INT8=1)
    mod.NetworkDefinitionCreationFlag = _Enum(**creation)  # type: ignore[attr-defined]
    mod.BuilderFlag = _Enum(**builder_flags)  # type: ignore[attr-defined]
    mod.MemoryPoolType = _Enum(WORKSPACE=0)  # type: ignore[attr-defined]
    mod.DeviceType = _Enum(GPU=0, DLA=1)  # type: ignore[attr-defined]
    mod.Logger = Logger  # type: ignore[attr-defined]

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            if major == 10 and flags & 1:
                calls["warnings"].append("EXPLICIT_BATCH is deprecated")

    class Parser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network

        def parse(self, model: bytes, path: str | None = None) -> bool:
            calls["parsed"] = path
            if v8 and not self.network.flags & 1:  # ModelImporter.cpp: explicit batch only
                self.num_errors = 1
                return False
            return True

        def get_error(self, i: int) -> str:
            return "This version of the ONNX parser only supports TensorRT " \
                   "INetworkDefinitions with an explicit batch dimension"

    class Cache:
        def serialize(self) -> bytes:
            return b"timing"

    class Config:
        def __init__(self) -> None:
            self.DLA_core = -1
            self.default_device_type = mod.DeviceType.GPU  # type: ignore[attr-defined]
            if v8 and minor < 4:
                self.max_workspace_size = 0
            if not v11:
                self.int8_calibrator = None

        def set_flag(self, flag: int) -> None:
            calls["flags"].add(flag)

        def create_timing_cache(self, data: bytes) -> Cache:
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self) -> Cache:
            return Cache()

        def add_optimization_profile(self, profile: Any) -> int:
            calls["profile"] = profile.shapes
            return 0

    if not (v8 and minor < 4):
        def set_memory_pool_limit(self: Config, pool: int, size: int) -> None:
            calls["workspace"] = size
        Config.set_memory_pool_limit = set_memory_pool_limit  # type: ignore[attr-defined]

    class Profile:
        shapes: tuple[Any, ...] = ()

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            calls["network_flags"] = flags
            return Network(flags)

        def create_builder_config(self) -> Config:
            calls["config"] = Config()
            return calls["config"]  # type: ignore[no-any-return]

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            return f"plan-{version}".encode()

    mod.Builder = Builder  # type: ignore[attr-defined]
    mod.OnnxParser = Parser  # type: ignore[attr-defined]
    if not v11:
        class IInt8EntropyCalibrator2:
            pass
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def use_tensorrt(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(version: str) -> Any:
        mod = fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", mod)
        return mod
    return install


@pytest.mark.parametrize(("version", "precision", "flags", "network_flags"), [
    ("8.5.2", "fp16", {0}, 1),
    ("8.5.2", "int8", {0, 1}, 1),
    ("8.6.1", "int8", {0, 1}, 1),
    ("10.3.0", "fp16", {0}, 0),
    ("10.9.0", "int8", {0, 1}, 0),
    ("11.0", "int8", set(), 0),
    ("11.1.0", "fp16", set(), 0),
])
def test_builds_on_each_api(tmp_path: Path, conv_onnx_factory: Any, use_tensorrt: Any,
                            version: str, precision: str, flags: set[int],
                            network_flags: int) -> None:
    trt = use_tensorrt(version)
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", qdq=precision == "int8")
    if version.startswith("11") and precision == "fp16":  # strongly typed: an FP16 ONNX
        from detforge.export.quantize import convert_fp16

        convert_fp16(onnx_path, onnx_path)
    plan = plan_engine(onnx_path, get_target("orin-nx"), precision, batch=(1, 4, 4),
                       tensorrt=version)
    sidecar = build_engine(plan, device=DEVICE)
    assert trt.calls["network_flags"] == network_flags and trt.calls["warnings"] == []
    assert trt.calls["flags"] == flags
    assert trt.calls["workspace"] == 2048 << 20
    assert trt.calls["profile"] == ("images", (1, 3, 32, 48), (4, 3, 32, 48), (4, 3, 32, 48))
    assert plan.engine.read_bytes() == f"plan-{version}".encode()
    written = read_engine_sidecar(plan.engine)
    assert written == sidecar and written.builder == "python-api"
    assert (written.tensorrt_version, written.compute_capability) == (version, "8.7")
    assert written.engine_sha256 == sha256_file(plan.engine)
    assert written.onnx_sha256 == sha256_file(onnx_path)


def test_dla_on_the_python_api(tmp_path: Path, conv_onnx_factory: Any,
                               use_tensorrt: Any) -> None:
    trt = use_tensorrt("10.3.0")
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx")
    plan = plan_engine(onnx_path, get_target("orin-agx"), "fp16", dla_core=1)
    build_engine(plan, device=DEVICE)
    config = trt.calls["config"]
    assert config.DLA_core == 1 and config.default_device_type == trt.DeviceType.DLA
    assert trt.BuilderFlag.GPU_FALLBACK in trt.calls["flags"]
    assert read_engine_sidecar(plan.engine).dla_core == 1


def test_tensorrt_8_2_is_refused_with_the_script(tmp_path: Path, conv_onnx_factory: Any,
                                                 use_tensorrt: Any) -> None:
    use_tensorrt("8.2.1")
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx", opset=13)
    plan = plan_engine(onnx_path, get_target("jetson-nano"), "fp16")
    with pytest.raises(ExportError, match=r"set_memory_pool_limit.*model_b1_gpu0_fp16.build.sh"):
        build_engine(plan, device=DEVICE)
    assert not plan.engine.exists()


def test_installed_tensorrt_rules_apply(tmp_path: Path, conv_onnx_factory: Any,
                                        use_tensorrt: Any) -> None:
    """Planned for the target's 10.3, built where TensorRT 11 is installed: 11's rules."""
    use_tensorrt("11.1.0")
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx")
    plan = plan_engine(onnx_path, get_target("t4"), "fp16")
    with pytest.raises(TargetCapabilityError, match="strongly-typed"):
        build_engine(plan, device=DEVICE)


def test_parser_errors_are_reported(tmp_path: Path, conv_onnx_factory: Any,
                                    use_tensorrt: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = use_tensorrt("8.6.1")
    monkeypatch.setattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", 5)  # bit 32
    onnx_path = conv_onnx_factory(tmp_path / "model.onnx")
    plan = plan_engine(onnx_path, get_target("t4"), "fp16", tensorrt="8.6.1")
    with pytest.raises(ExportError, match="explicit batch dimension"):
        build_engine(plan, device=DEVICE)
