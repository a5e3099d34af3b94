"""ONNX Runtime backend: TensorRT, CUDA or CPU execution providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import BackendError, ConfigError, MissingExtraError
from detforge.runtime.backend import BackendBase, InputSpec, RawOutput
from detforge.runtime.hardware import cpu_cores

__all__ = ["OrtBackend", "ort_providers"]

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def ort_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device`` among ``available``, best first.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        available: ``onnxruntime.get_available_providers()``.

    Returns:
        The provider names to pass to the session.

    Raises:
        ConfigError: A GPU was asked for and ONNX Runtime has no GPU provider, or the device
            string is unknown.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto" or device.startswith("cuda"):
        gpu = [p for p in _GPU_PROVIDERS if p in available]
        if device.startswith("cuda") and not gpu:
            raise ConfigError(f"device {device!r} asked for, but ONNX Runtime has only "
                              f"{available}; install onnxruntime-gpu "
                              f"(pip install 'detforge[gpu]') or use --device cpu")
        return [*gpu, "CPUExecutionProvider"]
    raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


class OrtBackend(BackendBase):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        path: The ``.onnx`` file.
        device: ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: Intra-op threads; default: every usable core. Inter-op parallelism is off,
            since detection graphs are sequential chains and a second pool only contends.
        spin: Let idle intra-op threads spin. Off by default: on a CPU shared with decoding
            or other jobs spinning threads starve them. On a machine the process has to
            itself it is faster for small inputs.

    Raises:
        MissingExtraError: onnxruntime is not installed.
        BackendError: The file cannot be loaded.

    Example:
        >>> with OrtBackend("model.onnx", device="cpu") as b:  # doctest: +SKIP
        ...     outputs = b.infer(np.zeros((1, 3, 640, 640), np.float32))
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None,
                 spin: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingExtraError("onnxruntime is not installed: pip install onnxruntime "
                                    "(or 'detforge[gpu]' for onnxruntime-gpu)") from exc
        self.path = Path(path)
        self.threads, self.spin = threads or cpu_cores(), spin
        self._streams: dict[int, OrtBackend] = {}
        providers = ort_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # By default idle intra-op threads sleep instead of spinning: spinning workers take
        # the cores the pipeline's decode threads need (and any other job's). Shared 2-core
        # CPU, YOLO11n 320: pipeline 9.9 -> 22.1 img/s. On an idle machine spinning wins
        # at small inputs (same CPU idle, 320: 50 -> 56 img/s; 640: no difference).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options: list[dict[str, Any]] = []
        device_id = device.partition(":")[2] or "0"
        for p in providers:
            options.append({"device_id": device_id} if p in _GPU_PROVIDERS else {})
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=providers, provider_options=options)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise BackendError(f"{self.path}: ONNX Runtime cannot load it ({exc}). Check the "
                               f"file is a complete ONNX model (re-export it if not).") from exc
        used = self.session.get_providers()
        self.device = f"cuda:{device_id}" if used and used[0] in _GPU_PROVIDERS else "cpu"
        inp = self.session.get_inputs()[0]
        self._output_names = [o.name for o in self.session.get_outputs()]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise BackendError(f"{self.path}: input {inp.name!r} has shape {shape}; a detector "
                               f"takes [B, 3, H, W]")
        batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.input_spec = InputSpec(
            name=inp.name,
            height=shape[2] if isinstance(shape[2], int) and shape[2] > 0 else None,
            width=shape[3] if isinstance(shape[3], int) and shape[3] > 0 else None,
            min_batch=batch or 1, max_batch=batch,
            dtype="float16" if "float16" in inp.type else "float32")
        self._dtype = np.float16 if self.input_spec.dtype == "float16" else np.float32

    def metadata(self) -> dict[str, str]:
        """The file's ``metadata_props`` as a dict."""
        props: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        return props

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        """Run the session on a ``[B, 3, H, W]`` batch.

        Raises:
            BackendError: ONNX Runtime rejected the batch (shape or type).
        """
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        try:
            outs = self.session.run(self._output_names, {self.input_spec.name: batch})
        except Exception as exc:
            raise BackendError(f"{self.path}: inference failed on a batch of shape "
                               f"{tuple(batch.shape)} ({exc}); the input spec is "
                               f"{self.input_spec}") from exc
        return [np.asarray(o) for o in outs]

    def concurrent(self, streams: int) -> OrtBackend | None:
        """A CPU session with ``threads // streams`` intra-op threads, which ``streams``
        threads call at once (built on first use, kept until :meth:`close`).

        Whole batches in parallel beat one batch split across every core: the threads of a
        split op wait for each other at every node, while streams never meet. YOLO11n,
        2-core CPU, model-only against one default session: 1.10-1.24x (BENCHMARKS.md,
        Inference streams). None on a GPU, for one stream, or with a thread per stream
        already.
        """
        if self.device != "cpu" or streams <= 1 or self.threads <= 1:
            return None
        if streams not in self._streams:
            self._streams[streams] = OrtBackend(self.path, device="cpu",
                                                threads=max(1, self.threads // streams),
                                                spin=self.spin)
        return self._streams[streams]

    def close(self) -> None:
        """Drop the session and the stream sessions."""
        for b in self._streams.values():
            b.close()
        self._streams.clear()
        self.__dict__.pop("session", None)
