"""Hardware profile: CPU cores, memory and GPU, and the batch size they suggest."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["CPU_BATCH_PIXELS", "HardwareProfile", "choose_batch", "cpu_cores",
           "detect_hardware"]

CPU_BATCH_PIXELS = 4 * 640 * 640
"""Input pixels per batch ``--batch auto`` aims at on a CPU."""


def cpu_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """What this machine offers to inference.

    Attributes:
        cpu_cores: Usable CPU cores.
        memory_bytes: Physical memory, or None when unknown.
        gpu_name: Name of CUDA device 0, or None without a usable GPU.
        gpu_memory_bytes: Memory of that GPU, or None.
        ort_providers: ONNX Runtime execution providers available here.
    """

    cpu_cores: int
    memory_bytes: int | None
    gpu_name: str | None
    gpu_memory_bytes: int | None
    ort_providers: tuple[str, ...]

    @property
    def has_cuda(self) -> bool:
        """True when ONNX Runtime or torch can run on a CUDA GPU."""
        return self.gpu_name is not None or "CUDAExecutionProvider" in self.ort_providers


def detect_hardware(*, probe_torch: bool = False) -> HardwareProfile:
    """Detect CPU cores, memory and GPU.

    Args:
        probe_torch: Import torch to read the GPU name and memory even when it is not
            imported yet (slow; off by default so ``predict`` with ONNX needs no torch).

    Returns:
        The :class:`HardwareProfile`.
    """
    try:
        import onnxruntime as ort

        providers: tuple[str, ...] = tuple(ort.get_available_providers())
    except ImportError:
        providers = ()
    gpu_name: str | None = None
    gpu_mem: int | None = None
    if probe_torch or "torch" in sys.modules:
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                gpu_name, gpu_mem = str(props.name), int(props.total_memory)
        except ImportError:
            pass
    return HardwareProfile(cpu_cores=cpu_cores(), memory_bytes=_memory_bytes(),
                           gpu_name=gpu_name, gpu_memory_bytes=gpu_mem, ort_providers=providers)


def choose_batch(profile: HardwareProfile, *, device: str, fixed_batch: int | None,
                 max_batch: int | None, input_hw: tuple[int, int]) -> int:
    """The batch size for ``--batch auto``.

    A model with a fixed batch gets that batch. On a CPU the batch holds about
    :data:`CPU_BATCH_PIXELS` of input (8 at 320x320, 4 at 640x640 or 480x640, 1 from about
    1280x1280), a power of two: small inputs then pay the per-call and hand-over costs once
    per batch instead of once per image, while large ones, where a bigger batch only
    crowds the caches, stay small. Measured end to end on a 2-core CPU (640x480 JPEGs,
    YOLO11n, share of ONNX Runtime's model-only speed; BENCHMARKS.md, Runtime throughput):
    320 FP32 0.81x at batch 1, 0.92x at 8; at 480x640 and 640 batch 1 and 4 within 2 %. The
    dynamic batcher only waits a few milliseconds for a batch to fill, so a slow stream
    still runs image by image. On a GPU the batch grows with GPU memory and shrinks with
    input area.

    Args:
        profile: The machine.
        device: ``"cpu"`` or ``"cuda[:i]"``, where the backend runs.
        fixed_batch: The only batch the model accepts, if any.
        max_batch: The largest batch it accepts, or None when unbounded.
        input_hw: Input ``(height, width)``.

    Returns:
        A batch size of at least 1.
    """
    if fixed_batch is not None:
        return fixed_batch
    if device.startswith("cuda"):
        gib = (profile.gpu_memory_bytes or 8 * 2**30) / 2**30
        area = input_hw[0] * input_hw[1] / (640 * 640)
        batch = max(1, min(32, int(2 * gib / max(area, 0.25))))
        batch = 1 << (batch.bit_length() - 1)  # a power of two
    else:
        batch = max(1, min(8, CPU_BATCH_PIXELS // (input_hw[0] * input_hw[1])))
        batch = 1 << (batch.bit_length() - 1)
    return batch if max_batch is None else max(1, min(batch, max_batch))
