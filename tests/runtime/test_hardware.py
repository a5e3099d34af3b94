"""``--batch auto``: the batch size chosen from the machine and the model's limits."""

from __future__ import annotations

import pytest

from detforge.runtime.hardware import (
    HardwareProfile,
    choose_batch,
    choose_streams,
    cpu_cores,
    detect_hardware,
)


def _profile(cores: int = 2, gpu_gib: float | None = None) -> HardwareProfile:
    return HardwareProfile(cpu_cores=cores, memory_bytes=24 * 2**30,
                           gpu_name="GPU" if gpu_gib else None,
                           gpu_memory_bytes=int(gpu_gib * 2**30) if gpu_gib else None,
                           ort_providers=("CPUExecutionProvider",))


@pytest.mark.parametrize(("hw", "batch"), [
    ((320, 320), 4), ((256, 320), 4), ((384, 640), 1), ((480, 640), 1), ((640, 640), 1),
    ((960, 960), 1), ((64, 64), 8)])
def test_cpu_batch_two_single_thread_streams(hw: tuple[int, int], batch: int) -> None:
    assert choose_batch(_profile(2), device="cpu", fixed_batch=None, max_batch=None,
                        input_hw=hw, streams=2) == batch


@pytest.mark.parametrize(("cores", "streams", "hw", "batch"), [
    (2, 1, (320, 320), 8), (2, 1, (640, 640), 2), (2, 1, (480, 640), 2),
    (16, 2, (640, 640), 8), (16, 2, (1280, 1280), 2), (1, 1, (640, 640), 1),
    (1, 2, (320, 320), 4)])
def test_cpu_batch_grows_with_the_threads_of_a_stream(cores: int, streams: int,
                                                      hw: tuple[int, int], batch: int) -> None:
    assert choose_batch(_profile(cores), device="cpu", fixed_batch=None, max_batch=None,
                        input_hw=hw, streams=streams) == batch


def test_streams_two_on_a_multicore_cpu_one_on_a_gpu_or_one_core() -> None:
    assert choose_streams(_profile(2), device="cpu") == 2
    assert choose_streams(_profile(16), device="cpu") == 2
    assert choose_streams(_profile(1), device="cpu") == 1
    assert choose_streams(_profile(16, gpu_gib=80), device="cuda:0") == 1


def test_model_limits_win() -> None:
    args = {"device": "cpu", "input_hw": (320, 320)}
    assert choose_batch(_profile(), fixed_batch=1, max_batch=None, **args) == 1
    assert choose_batch(_profile(), fixed_batch=None, max_batch=2, **args) == 2


def test_gpu_batch_grows_with_memory_and_is_a_power_of_two() -> None:
    small = choose_batch(_profile(gpu_gib=4), device="cuda:0", fixed_batch=None,
                         max_batch=None, input_hw=(640, 640))
    large = choose_batch(_profile(gpu_gib=80), device="cuda:0", fixed_batch=None,
                         max_batch=None, input_hw=(640, 640))
    assert small == 8 and large == 32


def test_detect_hardware_sees_this_machine() -> None:
    hw = detect_hardware()
    assert hw.cpu_cores == cpu_cores() >= 1
    assert "CPUExecutionProvider" in hw.ort_providers
