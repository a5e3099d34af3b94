"""Target devices: what each can run, and the rules that follow.

The table is data, validated on import: compute capability, memory, precision and DLA
support, the JetPack / TensorRT / DeepStream versions of the software stack each target
ships, and a recommended model size, precision and batch. ``tensorrt`` keys the TensorRT
compatibility rules (:mod:`detforge.export.trt_compat`). :func:`check_precision`
enforces the hardware rules: INT8 needs compute capability 6.1 or 7.0 and above, so Jetson
Nano (sm_53) and TX2 (sm_62) have none.

Sources for the versions: JetPack 4.6.4 ships TensorRT 8.2.1 and DeepStream 6.0.1;
JetPack 5.1.3 TensorRT 8.5.2 and DeepStream 6.3; JetPack 6.2 TensorRT 10.3.0 and
DeepStream 7.1 (as the x86 DeepStream 7.1 container); Blackwell (sm_120) needs DeepStream
8.0, which ships TensorRT 10.9. DLA cores: Xavier NX/AGX and Orin NX 16 GB / AGX have two,
Orin NX 8 GB one, Orin Nano none.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

from detforge.core.errors import ConfigError, TargetCapabilityError

__all__ = ["PRECISIONS", "TARGETS", "Target", "check_precision", "get_target", "memory_warning",
           "resolve_precision", "supported_precisions"]

PRECISIONS = ("fp32", "fp16", "int8")


class Target(BaseModel):
    """One deployment target.

    Attributes:
        name: Key used on the command line (``orin-nano``).
        title: Human name.
        kind: ``jetson`` or ``x86``.
        compute_capability: (major, minor), e.g. (8, 7).
        memory_gb: Memory available to the GPU (shared on Jetson).
        fp16: Fast FP16 supported.
        dla_cores: Deep-learning accelerator cores (Jetson Xavier/Orin).
        jetpack: JetPack release (None on x86).
        tensorrt: TensorRT version on that software stack; keys the TensorRT rules.
        deepstream: DeepStream version.
        model_size: Recommended YOLO size letter (n, s, m, l).
        precision: Recommended precision.
        batch: Recommended batch size.
        expected_ips: Rough images/s range for a YOLO n-size model at 640 with the
            recommended precision, used by ``deploy verify`` as a sanity band.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    kind: Literal["jetson", "x86"]
    compute_capability: tuple[int, int]
    memory_gb: float = Field(gt=0)
    fp16: bool = True
    dla_cores: NonNegativeInt = 0
    jetpack: str | None
    tensorrt: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    deepstream: str
    model_size: Literal["n", "s", "m", "l", "x"]
    precision: Literal["fp32", "fp16", "int8"]
    batch: PositiveInt
    expected_ips: tuple[float, float]

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if self.precision not in supported_precisions(self):
            raise ValueError(f"{self.name}: recommended precision {self.precision} is not one "
                             f"it supports")
        if (self.kind == "jetson") != (self.jetpack is not None):
            raise ValueError(f"{self.name}: a Jetson has a JetPack version, an x86 GPU none")
        return self

    @property
    def sm(self) -> str:
        """Compute capability as ``sm_87``."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def cc(self) -> str:
        """Compute capability as ``8.7`` (what ``nvidia-smi`` and manifests show)."""
        return "{}.{}".format(*self.compute_capability)

    @property
    def int8(self) -> bool:
        """INT8 tensor ops: compute capability 6.1, or 7.0 and above."""
        return self.compute_capability == (6, 1) or self.compute_capability >= (7, 0)

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt.split(".")[0])

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d.update(sm=self.sm, int8=self.int8, precisions=supported_precisions(self))
        return d


def get_target(name: str) -> Target:
    """The target called ``name``.

    Raises:
        ConfigError: Unknown name; the message lists the valid ones.
    """
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown target {name!r}; choose one of {sorted(TARGETS)} "
                          "(see `detforge targets`)") from None


def supported_precisions(target: Target) -> list[str]:
    """Precisions the target can run, fastest last."""
    out = ["fp32"]
    if target.fp16:
        out.append("fp16")
    if target.int8:
        out.append("int8")
    return out


def check_precision(target: Target, precision: str) -> None:
    """Refuse a precision the target cannot run.

    Raises:
        ConfigError: ``precision`` is not one of fp32/fp16/int8.
        TargetCapabilityError: The target lacks it; the message names what it supports.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    ok = supported_precisions(target)
    if precision not in ok:
        hint = " Use --precision fp16." if precision == "int8" and target.fp16 else ""
        raise TargetCapabilityError(
            f"{target.title} ({target.sm}) cannot run {precision}: INT8 needs compute capability "
            f"6.1 or 7.0+. Supported precisions: {', '.join(ok)}.{hint}")


def resolve_precision(target: Target, precision: str) -> str:
    """``auto`` -> the target's recommended precision; anything else is checked."""
    if precision == "auto":
        return target.precision
    check_precision(target, precision)
    return precision


def memory_warning(target: Target, model_bytes: int, batch: int = 1) -> str | None:
    """A warning when a model is unlikely to fit the target's memory, else None.

    The estimate is deliberately rough: weights plus workspace and activations are taken
    as 8x the ONNX size per batch item, against half the device memory (Jetson memory is
    shared with the OS and the video pipeline).
    """
    need = model_bytes * 8 * max(batch, 1)
    budget = target.memory_gb * 1024**3 / 2
    if need > budget:
        return (f"{target.title}: model needs about {need / 1024**3:.1f} GiB at batch {batch}, "
                f"more than half its {target.memory_gb:g} GiB; use a smaller model or batch")
    return None


def _t(name: str, title: str, kind: Literal["jetson", "x86"], cc: tuple[int, int], mem: float,
       dla: int, jetpack: str | None, trt: str, ds: str, size: str, prec: str, batch: int,
       ips: tuple[float, float]) -> Target:
    return Target.model_validate(dict(
        name=name, title=title, kind=kind, compute_capability=cc, memory_gb=mem, dla_cores=dla,
        jetpack=jetpack, tensorrt=trt, deepstream=ds, model_size=size, precision=prec,
        batch=batch, expected_ips=ips))


_ROWS = [
    _t("jetson-nano", "Jetson Nano", "jetson", (5, 3), 4, 0, "4.6.4", "8.2.1", "6.0.1",
       "n", "fp16", 1, (8, 40)),
    _t("jetson-tx2", "Jetson TX2", "jetson", (6, 2), 8, 0, "4.6.4", "8.2.1", "6.0.1",
       "n", "fp16", 1, (15, 70)),
    _t("xavier-nx", "Jetson Xavier NX", "jetson", (7, 2), 8, 2, "5.1.3", "8.5.2", "6.3",
       "s", "int8", 1, (60, 300)),
    _t("xavier-agx", "Jetson AGX Xavier", "jetson", (7, 2), 32, 2, "5.1.3", "8.5.2", "6.3",
       "s", "int8", 4, (100, 500)),
    _t("orin-nano", "Jetson Orin Nano", "jetson", (8, 7), 8, 0, "6.2", "10.3.0", "7.1",
       "s", "int8", 1, (80, 400)),
    _t("orin-nx-8gb", "Jetson Orin NX 8GB", "jetson", (8, 7), 8, 1, "6.2", "10.3.0", "7.1",
       "s", "int8", 2, (120, 550)),
    _t("orin-nx", "Jetson Orin NX 16GB", "jetson", (8, 7), 16, 2, "6.2", "10.3.0", "7.1",
       "s", "int8", 4, (150, 700)),
    _t("orin-agx", "Jetson AGX Orin", "jetson", (8, 7), 64, 2, "6.2", "10.3.0", "7.1",
       "m", "int8", 8, (300, 1500)),
    _t("t4", "NVIDIA T4", "x86", (7, 5), 16, 0, None, "10.3.0", "7.1",
       "m", "int8", 8, (400, 2000)),
    _t("a2", "NVIDIA A2", "x86", (8, 6), 16, 0, None, "10.3.0", "7.1",
       "s", "int8", 8, (300, 1500)),
    _t("a10", "NVIDIA A10", "x86", (8, 6), 24, 0, None, "10.3.0", "7.1",
       "m", "int8", 16, (800, 4000)),
    _t("l4", "NVIDIA L4", "x86", (8, 9), 24, 0, None, "10.3.0", "7.1",
       "m", "int8", 16, (800, 4500)),
    _t("a100", "NVIDIA A100", "x86", (8, 0), 80, 0, None, "10.3.0", "7.1",
       "l", "fp16", 32, (1500, 8000)),
    _t("h100", "NVIDIA H100", "x86", (9, 0), 80, 0, None, "10.3.0", "7.1",
       "l", "fp16", 32, (2500, 12000)),
    _t("rtx-30", "GeForce RTX 30 series", "x86", (8, 6), 12, 0, None, "10.3.0", "7.1",
       "m", "fp16", 8, (600, 3000)),
    _t("rtx-40", "GeForce RTX 40 series", "x86", (8, 9), 16, 0, None, "10.3.0", "7.1",
       "m", "fp16", 8, (900, 5000)),
    _t("rtx-50", "GeForce RTX 50 series", "x86", (12, 0), 16, 0, None, "10.9.0", "8.0",
       "m", "fp16", 8, (1200, 7000)),
]

TARGETS: dict[str, Target] = {t.name: t for t in _ROWS}
