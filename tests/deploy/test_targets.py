from __future__ import annotations

import contextlib

import pytest

from detforge.core.errors import ConfigError, TargetCapabilityError
from detforge.deploy.targets import (
    TARGETS,
    check_precision,
    get_target,
    memory_warning,
    resolve_precision,
    supported_precisions,
)

NO_INT8 = {"jetson-nano", "jetson-tx2"}
REQUIRED = {"jetson-nano", "jetson-tx2", "xavier-nx", "xavier-agx", "orin-nano", "orin-nx",
            "orin-agx", "t4", "a2", "a10", "l4", "a100", "h100", "rtx-30", "rtx-40", "rtx-50"}


def test_table_covers_required_targets() -> None:
    assert REQUIRED <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS), ids=sorted(TARGETS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_precision_rules(name: str, precision: str) -> None:
    target = get_target(name)
    cc = target.compute_capability
    can = precision != "int8" or cc == (6, 1) or cc >= (7, 0)
    assert (precision in supported_precisions(target)) == can
    assert (name in NO_INT8) == (not target.int8)
    expect = contextlib.nullcontext() if can else pytest.raises(
        TargetCapabilityError, match="Supported precisions: fp32, fp16.*--precision fp16")
    with expect:
        check_precision(target, precision)


@pytest.mark.parametrize("name", sorted(TARGETS), ids=sorted(TARGETS))
def test_recommended_precision_is_supported(name: str) -> None:
    t = get_target(name)
    assert resolve_precision(t, "auto") in supported_precisions(t)
    assert t.expected_ips[0] < t.expected_ips[1]


def test_unknown_target_and_precision() -> None:
    with pytest.raises(ConfigError, match="orin-nano"):
        get_target("orin-nanoo")
    with pytest.raises(ConfigError, match="fp32"):
        check_precision(get_target("t4"), "int4")


def test_memory_warning() -> None:
    nano = get_target("jetson-nano")
    assert memory_warning(nano, 10 * 1024**2) is None
    assert "smaller model" in (memory_warning(nano, 400 * 1024**2, batch=4) or "")
