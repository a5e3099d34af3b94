"""Hardware profile: CPU cores, memory and GPU, and the batch size they suggest."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["CPU_PIXELS_PER_THREAD", "HardwareProfile", "choose_batch", "choose_streams",
           "cpu_cores", "detect_hardware"]

CPU_PIXELS_PER_THREAD = 640 * 640
"""Input pixels per batch ``--batch auto`` aims at on a CPU, per thread of a stream."""


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
        gpu_free_bytes: Free memory of that GPU now (NVML), or None.
    """

    cpu_cores: int
    memory_bytes: int | None
    gpu_name: str | None
    gpu_memory_bytes: int | None
    ort_providers: tuple[str, ...]
    gpu_free_bytes: int | None = None

    @property
    def has_cuda(self) -> bool:
        """True when ONNX Runtime or torch can run on a CUDA GPU."""
        return self.gpu_name is not None or "CUDAExecutionProvider" in self.ort_providers


def detect_hardware(*, probe_torch: bool = False) -> HardwareProfile:
    """Detect CPU cores, memory and GPU.

    The GPU's name, total and free memory come from NVML (:mod:`detforge.runtime.gpu`)
    when it is there; torch is asked only when NVML is not and ``probe_torch`` is set or
    torch is already imported.

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
    from detforge.runtime.gpu import gpu_index, gpu_sample

    gpu_name: str | None = None
    gpu_mem: int | None = None
    sample = gpu_sample(gpu_index("cuda:0") or 0)
    if sample is not None:
        return HardwareProfile(cpu_cores=cpu_cores(), memory_bytes=_memory_bytes(),
                               gpu_name=sample.name, gpu_memory_bytes=sample.total_bytes,
                               ort_providers=providers, gpu_free_bytes=sample.free_bytes)
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
                 max_batch: int | None, input_hw: tuple[int, int], streams: int = 1) -> int:
    """The batch size for ``--batch auto``.

    A model with a fixed batch gets that batch. On a CPU a batch holds about
    :data:`CPU_PIXELS_PER_THREAD` of input for every thread of its stream, as a power of two
    of at most 8: with two single-thread streams (the CPU default on two cores) 4 at 320 and
    1 at 640 or 480x640; one stream on two threads takes 8 and 2. Small inputs then pay the
    per-call and hand-over costs once per batch instead of once per image, while large ones,
    where a bigger batch only crowds the caches, stay small. Measured end to end on a
    2-core CPU (640x480 JPEGs, YOLO11n; BENCHMARKS.md, Inference streams): two streams at
    640 ran batch 1 at 17.7 img/s, batch 2 at 17.5 and batch 4 at 16.9; at 320 batches 1,
    2 and 4 were within 3 %. The dynamic batcher only waits a few milliseconds for a batch to
    fill, so a slow stream still runs image by image. On a GPU the batch grows with the
    GPU's *free* memory (NVML; total memory when only that is known, 8 GiB when neither)
    and shrinks with input area: 2 images per free GiB at 640x640, at most 32, so another
    process holding most of the card leaves a small batch instead of an out-of-memory error.

    Args:
        profile: The machine.
        device: ``"cpu"`` or ``"cuda[:i]"``, where the backend runs.
        fixed_batch: The only batch the model accepts, if any.
        max_batch: The largest batch it accepts, or None when unbounded.
        input_hw: Input ``(height, width)``.
        streams: Batches inferred at once (:func:`choose_streams`); on a CPU they share the
            cores.

    Returns:
        A batch size of at least 1.
    """
    if fixed_batch is not None:
        return fixed_batch
    if device.startswith("cuda"):
        memory = profile.gpu_free_bytes if profile.gpu_free_bytes is not None else (
            profile.gpu_memory_bytes or 8 * 2**30)
        gib = memory / 2**30
        area = input_hw[0] * input_hw[1] / (640 * 640)
        batch = max(1, min(32, int(2 * gib / max(area, 0.25))))
    else:
        threads = max(1, profile.cpu_cores // max(1, streams))
        batch = max(1, min(8, threads * CPU_PIXELS_PER_THREAD // (input_hw[0] * input_hw[1])))
    batch = 1 << (batch.bit_length() - 1)  # a power of two
    return batch if max_batch is None else max(1, min(batch, max_batch))


def choose_streams(profile: HardwareProfile, *, device: str) -> int:
    """How many batches ``--streams auto`` runs at once.

    On a CPU with two or more cores, two: each stream runs a whole batch on half the cores,
    so the threads of one batch wait for each other at every node half as often, and one
    stream's hand-over (queueing, post-processing) overlaps the other's compute. Measured
    on a 2-core CPU (YOLO11n, end to end 1.10-1.18x one stream; BENCHMARKS.md, Inference
    streams). On a GPU, one: the device already runs a batch on all of itself.

    Args:
        profile: The machine.
        device: ``"cpu"`` or ``"cuda[:i]"``, where the backend runs.

    Returns:
        1 or 2.
    """
    return 2 if device == "cpu" and profile.cpu_cores >= 2 else 1
