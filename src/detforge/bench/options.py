"""Parsing of the benchmark's command-line values: batch lists, size lists and tolerances."""

from __future__ import annotations

import math
from collections.abc import Sequence

from detforge.core.errors import ConfigError
from detforge.core.imgsz import parse_imgszs as core_parse_imgszs

__all__ = ["format_imgsz", "parse_batches", "parse_imgszs", "parse_tolerance"]


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8"`` -> ``(1, 8)``: positive batch sizes, duplicates dropped, order kept.

    Args:
        text: Comma-separated positive integers.

    Returns:
        The batch sizes.

    Raises:
        ConfigError: An entry is not a positive integer, or the list is empty.

    Example:
        >>> parse_batches("1, 8,1")
        (1, 8)
    """
    parts = [p.strip() for p in text.split(",")]
    values: list[int] = []
    for p in parts:
        if not p.isdigit() or int(p) < 1:
            raise ConfigError(f"--batch {text!r}: {p!r} is not a positive integer; write "
                              f"batch sizes separated by commas, e.g. 1,8")
        if int(p) not in values:
            values.append(int(p))
    return tuple(values)


def parse_imgszs(text: str | Sequence[str] | None) -> tuple[tuple[int, int], ...] | None:
    """``"320;384,640"`` (or ``["320", "384,640"]``) -> ``((320, 320), (384, 640))``.

    The grammar of :func:`detforge.core.imgsz.parse_imgszs`: each size is ``N`` or ``H,W``,
    sizes come from a repeated option or are separated by ``;``. None (no ``--imgsz``)
    means "each model's own input size" and is returned as None.

    Args:
        text: The option value(s), or None.

    Returns:
        ``(height, width)`` pairs, duplicates dropped, or None.

    Raises:
        ConfigError: An entry is not a positive integer or ``HxW`` pair.

    Example:
        >>> parse_imgszs("320; 384,640")
        ((320, 320), (384, 640))
    """
    return core_parse_imgszs(text)


def format_imgsz(size: tuple[int, int]) -> int | list[int]:
    """The JSON form of an input size: an int when square, else ``[height, width]``."""
    return size[0] if size[0] == size[1] else [size[0], size[1]]


def parse_tolerance(text: str | float) -> float:
    """A regression tolerance as a fraction: ``"5%"`` and ``"0.05"`` both give ``0.05``.

    Args:
        text: A percentage with ``%`` (``"5%"``), or a fraction below 1 (``"0.05"``).

    Returns:
        The fraction, in ``[0, 1)``.

    Raises:
        ConfigError: Not a number, negative, or 1 (100%) and above; a bare number of 1 or
            more is refused too, since ``"5"`` could mean 5% or 500%.

    Example:
        >>> parse_tolerance("5%"), parse_tolerance("0.05")
        (0.05, 0.05)
    """
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"--tolerance {raw!r} is not a number; write a percentage such as "
                          f"5% or a fraction such as 0.05")
    if percent:
        value = round(value / 100, 12)
    elif value >= 1:
        raise ConfigError(f"--tolerance {raw!r} is ambiguous (a fraction must be below 1); "
                          f"write {raw}% for a percentage or e.g. 0.05 for a fraction")
    if not 0 <= value < 1:
        raise ConfigError(f"--tolerance {raw!r} must lie in [0%, 100%); e.g. 5% lets "
                          f"throughput drop 5% below the baseline before failing")
    return value
