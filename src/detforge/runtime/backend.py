"""The runtime backend protocol: a loaded network that turns a float batch into raw outputs.

Only :meth:`Backend.infer` is on the hot path. Decoding and NMS are shared by every backend
and live in :mod:`detforge.runtime.postprocess`. Backends are registered by name in
:data:`BACKENDS` as ``"module:Class"`` strings and imported on first use, so this table never
imports torch or TensorRT.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from detforge.core.errors import ConfigError

__all__ = ["BACKENDS", "Backend", "BackendBase", "InputSpec", "RawOutput", "backend_class",
           "register_backend"]

RawOutput = list[NDArray[np.floating[Any]]]
"""The network's outputs for one batch, in graph order, as numpy arrays."""


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a backend's input tensor expects.

    Attributes:
        name: Input tensor name in the graph.
        height: Input height in pixels, or None when the graph accepts any height.
        width: Input width in pixels, or None when the graph accepts any width.
        min_batch: Smallest batch the graph accepts.
        max_batch: Largest batch the graph accepts, or None when unbounded (dynamic).
        dtype: ``"float32"`` or ``"float16"``; the batch is cast to it before inference.
    """

    name: str = "images"
    height: int | None = 640
    width: int | None = 640
    min_batch: int = 1
    max_batch: int | None = 1
    dtype: str = "float32"

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the graph accepts, or None when the batch is dynamic."""
        if self.max_batch is not None and self.max_batch == self.min_batch:
            return self.max_batch
        return None


@runtime_checkable
class Backend(Protocol):
    """A loaded detection network.

    Attributes:
        name: Registry name of the backend (``"onnxruntime"``, ``"tensorrt"``, ...).
        input_spec: Shape, batch range and dtype of the input.
        device: Where it runs, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    name: str
    input_spec: InputSpec
    device: str

    def infer(self, batch: NDArray[np.float32]) -> RawOutput:
        """Run the network on a normalised ``[B, 3, H, W]`` batch."""
        ...

    def close(self) -> None:
        """Release the session, engine or device memory."""
        ...


class BackendBase:
    """Gives a backend ``with`` support that calls :meth:`close`, and no concurrent streams."""

    def close(self) -> None:
        """Release resources; the default has none."""

    def concurrent(self, streams: int) -> Backend | None:
        """A backend that ``streams`` threads may call at once, each on its share of the
        device, or None when concurrent calls gain nothing (the default)."""
        return None

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


BACKENDS: dict[str, str] = {
    "onnxruntime": "detforge.runtime.backends.onnxruntime:OrtBackend",
    "tensorrt": "detforge.runtime.backends.tensorrt:TrtBackend",
    "torch": "detforge.runtime.backends.torch:TorchBackend",
}


def register_backend(name: str, target: str) -> None:
    """Add a backend to :data:`BACKENDS`.

    Args:
        name: Registry name.
        target: ``"package.module:Class"``, imported on first use.

    Raises:
        ConfigError: ``name`` is already registered, or ``target`` has no ``:``.
    """
    if name in BACKENDS:
        raise ConfigError(f"backend {name!r} is already registered as {BACKENDS[name]}; "
                          f"choose another name")
    if ":" not in target:
        raise ConfigError(f"backend target {target!r} must look like 'package.module:Class'")
    BACKENDS[name] = target


def backend_class(name: str) -> type[Any]:
    """Import and return the class registered as ``name``.

    Raises:
        ConfigError: Unknown backend; the message lists the valid names.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, _, attr = BACKENDS[name].partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls
