"""GPU memory and utilisation through NVML (``nvidia-ml-py``, the ``gpu`` extra).

NVML reads what the driver knows, with no CUDA context and no torch: memory used, free and
total per device, and the share of the last sample period a kernel was running
(utilisation). Without the package, a driver or a GPU every function here returns nothing
(``None``, an empty list), so callers print and export GPU figures only where there are
some. Device numbers follow CUDA's: ``cuda:1`` is the second device CUDA sees, mapped
through ``$CUDA_VISIBLE_DEVICES`` to NVML's own numbering when that variable lists indices.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

__all__ = ["GpuMonitor", "GpuSample", "gpu_index", "gpu_sample", "gpu_samples", "nvml"]

_lock = threading.Lock()
_state: dict[str, Any] = {"module": None, "tried": False}


def nvml() -> ModuleType | None:
    """The initialised ``pynvml`` module, or None without the package, driver or GPU."""
    with _lock:
        if _state["tried"]:
            return _state["module"]  # type: ignore[no-any-return]
        _state["tried"] = True
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() < 1:
                return None
        except Exception:  # noqa: BLE001 - ImportError, NVMLError (no driver), OSError
            return None
        module: ModuleType = pynvml
        _state["module"] = module
        return module


def reset() -> None:
    """Forget the NVML state (the next call initialises again); for tests."""
    with _lock:
        _state.update(module=None, tried=False)


def gpu_index(device: str) -> int | None:
    """The NVML index of a ``cuda[:N]`` device (None for ``cpu`` and other devices).

    Example:
        >>> gpu_index("cuda:1"), gpu_index("cpu")
        (1, None)
    """
    if not device.startswith("cuda"):
        return None
    _, _, rest = device.partition(":")
    index = int(rest) if rest.isdigit() else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if v.strip()]
    if visible and all(v.isdigit() for v in visible) and index < len(visible):
        return int(visible[index])
    return index


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of one GPU.

    Attributes:
        index: NVML device index.
        name: Device name.
        used_bytes: Memory in use (every process).
        free_bytes: Memory free.
        total_bytes: Memory of the device.
        utilization: Share of the last sample period a kernel ran, 0..1 (None: unknown).
    """

    index: int
    name: str
    used_bytes: int
    free_bytes: int
    total_bytes: int
    utilization: float | None


def gpu_sample(index: int = 0) -> GpuSample | None:
    """Read GPU ``index`` (None when NVML or that device is unavailable)."""
    lib = nvml()
    if lib is None:
        return None
    try:
        handle = lib.nvmlDeviceGetHandleByIndex(index)
        mem = lib.nvmlDeviceGetMemoryInfo(handle)
        name = lib.nvmlDeviceGetName(handle)
        try:
            util: float | None = float(lib.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
        except Exception:  # noqa: BLE001 - some devices (MIG, vGPU) do not report it
            util = None
    except Exception:  # noqa: BLE001 - NVMLError: no such device, lost GPU
        return None
    return GpuSample(index, name.decode() if isinstance(name, bytes) else str(name),
                     int(mem.used), int(mem.free), int(mem.total), util)


def gpu_samples() -> list[GpuSample]:
    """Every GPU NVML sees (empty without NVML)."""
    lib = nvml()
    if lib is None:
        return []
    try:
        count = int(lib.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001
        return []
    return [s for s in (gpu_sample(i) for i in range(count)) if s is not None]


class GpuMonitor:
    """Samples one GPU on a thread while a run lasts: current and peak memory, utilisation.

    A CPU device, or no NVML, makes it a no-op whose :meth:`summary` is empty.

    Args:
        device: The run's device (``cpu``, ``cuda``, ``cuda:N``).
        interval_s: Seconds between samples.

    Example:
        >>> with GpuMonitor("cpu") as gpu:
        ...     pass
        >>> gpu.summary()
        {}
    """

    def __init__(self, device: str, *, interval_s: float = 0.2) -> None:
        self.index = gpu_index(device)
        self.interval_s = interval_s
        self.samples = 0
        self.peak_used = 0
        self.last: GpuSample | None = None
        self._util: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> GpuSample | None:
        """Take one sample now (also updates the peak)."""
        if self.index is None:
            return None
        s = gpu_sample(self.index)
        if s is not None:
            self.samples += 1
            self.last = s
            self.peak_used = max(self.peak_used, s.used_bytes)
            if s.utilization is not None:
                self._util.append(s.utilization)
        return s

    def __enter__(self) -> GpuMonitor:
        if self.sample() is not None:
            self._thread = threading.Thread(target=self._run, name="detforge-gpu", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.sample()

    def summary(self) -> dict[str, Any]:
        """``{}`` without samples, else the device, memory (MiB) and utilisation figures."""
        if self.last is None:
            return {}
        mib = 2**20
        return {"gpu": self.last.index, "name": self.last.name,
                "vram_used_mb": round(self.last.used_bytes / mib, 1),
                "vram_peak_mb": round(self.peak_used / mib, 1),
                "vram_total_mb": round(self.last.total_bytes / mib, 1),
                "util_mean": round(sum(self._util) / len(self._util), 3) if self._util else None,
                "util_peak": round(max(self._util), 3) if self._util else None,
                "samples": self.samples}


