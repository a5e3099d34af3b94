"""GPU figures through NVML, with a fake ``pynvml`` module (there is no GPU here): predict
stats, `--batch auto` from free memory, serve /metrics; and clean degradation without one."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from detforge.runtime import gpu as gpu_mod
from detforge.runtime.hardware import choose_batch, detect_hardware
from detforge.runtime.stats import RunStats

GiB = 2**30


class FakeNvml(types.ModuleType):
    """The parts of nvidia-ml-py detforge calls; memory use grows by 1 GiB per read."""

    class NVMLError(Exception):
        pass

    def __init__(self, total: int = 16 * GiB, used: int = 2 * GiB, count: int = 1) -> None:
        super().__init__("pynvml")
        self.total, self.used, self.count, self.reads = total, used, count, 0

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        if i >= self.count:
            raise self.NVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:  # noqa: N802
        self.reads += 1
        used = min(self.total, self.used + (self.reads - 1) * GiB)
        return types.SimpleNamespace(total=self.total, used=used, free=self.total - used)

    def nvmlDeviceGetName(self, h: int) -> bytes:  # noqa: N802
        return b"NVIDIA L4"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:  # noqa: N802
        return types.SimpleNamespace(gpu=75, memory=20)


@pytest.fixture()
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpu_mod.reset()
    yield fake
    gpu_mod.reset()


@pytest.fixture()
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    gpu_mod.reset()
    yield
    gpu_mod.reset()


def test_sample_reads_memory_and_utilisation(fake_nvml: FakeNvml) -> None:
    s = gpu_mod.gpu_sample(0)
    assert s is not None and s.name == "NVIDIA L4" and s.total_bytes == 16 * GiB
    assert s.used_bytes == 2 * GiB and s.free_bytes == 14 * GiB and s.utilization == 0.75
    assert gpu_mod.gpu_sample(3) is None
    assert [x.index for x in gpu_mod.gpu_samples()] == [0]


def test_monitor_tracks_the_peak(fake_nvml: FakeNvml) -> None:
    with gpu_mod.GpuMonitor("cuda:0", interval_s=0.001) as mon:
        while mon.samples < 4:
            pass
    summary = mon.summary()
    assert summary["vram_peak_mb"] >= summary["vram_used_mb"] >= 2048 + 3 * 1024
    assert summary["util_mean"] == 0.75 and summary["name"] == "NVIDIA L4"
    stats = RunStats(images=1, gpu=summary)
    assert "gpu 0 (NVIDIA L4): VRAM" in stats.format()
    assert stats.summary()["gpu"]["vram_total_mb"] == 16384


def test_cuda_visible_devices_maps_to_nvml_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_mod.gpu_index("cuda:1") == 3 and gpu_mod.gpu_index("cuda") == 2


def test_batch_auto_uses_free_memory(fake_nvml: FakeNvml) -> None:
    fake_nvml.used = 14 * GiB  # another process holds most of the card
    profile = detect_hardware()
    assert profile.gpu_free_bytes == 2 * GiB and profile.gpu_memory_bytes == 16 * GiB
    small = choose_batch(profile, device="cuda", fixed_batch=None, max_batch=None,
                         input_hw=(640, 640))
    fake_nvml.used, fake_nvml.reads = 0, 0
    gpu_mod.reset()
    big = choose_batch(detect_hardware(), device="cuda", fixed_batch=None, max_batch=None,
                       input_hw=(640, 640))
    assert small == 4 and big == 32


def test_everything_degrades_without_nvml(no_nvml: None) -> None:
    from detforge.testing import FakeBackend, fake_model

    assert gpu_mod.nvml() is None and gpu_mod.gpu_samples() == []
    backend = FakeBackend.echo()
    backend.device = "cuda:0"
    assert "gpu" not in fake_model(backend).statistics()
    with gpu_mod.GpuMonitor("cuda:0") as mon:
        pass
    assert mon.summary() == {}
    assert detect_hardware().gpu_free_bytes is None
    assert "gpu" not in RunStats(images=1).format()


def test_serve_metrics_export_gpu_figures(fake_nvml: FakeNvml) -> None:
    from detforge.serve import ServeConfig, create_app
    from detforge.testing import FakeBackend, fake_model

    from ..serve.conftest import running_server

    backend = FakeBackend.echo()
    backend.device = "cuda:0"
    config = ServeConfig(model="fake", api_key_env=None)
    with running_server(create_app(config, load=lambda: fake_model(backend))) as url:
        text = httpx.get(f"{url}/metrics").text
        info = httpx.get(f"{url}/v1/model").json()
    assert info["gpu"]["name"] == "NVIDIA L4" and info["gpu"]["vram_total_mb"] == 16384
    total = float(text.split('detforge_gpu_memory_total_bytes{gpu="0"} ')[1].split()[0])
    assert total == 16 * GiB
    assert 'detforge_gpu_utilization_ratio{gpu="0"} 0.75' in text
    peak = float(text.split('detforge_gpu_memory_peak_bytes{gpu="0"} ')[1].split()[0])
    used = float(text.split('detforge_gpu_memory_used_bytes{gpu="0"} ')[1].split()[0])
    assert peak >= used > 0


def test_predict_stats_carry_gpu_figures(fake_nvml: FakeNvml, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from detforge.runtime import predict as predict_mod
    from detforge.testing import FakeBackend, fake_model, random_image, write_image

    backend = FakeBackend.echo()
    backend.device = "cuda:0"
    monkeypatch.setattr(predict_mod, "load_model", lambda *a, **k: fake_model(backend))
    write_image(tmp_path / "a.png", random_image(32, 32))
    stats = predict_mod.predict("m.onnx", tmp_path / "a.png", out=tmp_path / "d.jsonl",
                                progress=False, batch=1, streams=1)
    assert stats.gpu["name"] == "NVIDIA L4" and stats.gpu["vram_peak_mb"] >= 2048
