"""``--imgsz``: one grammar for the input size of every command.

One size is ``N`` (square) or ``H,W`` (height, width; ``HxW`` is the same size), in
pixels, each a positive integer::

    --imgsz 640        (640, 640)
    --imgsz 384,640    (384, 640)   height 384, width 640 (16:9 video)
    --imgsz 384x640    (384, 640)

A command that takes several sizes (``detforge benchmark``) takes the option again, or
sizes separated by ``;``, so that ``384,640`` always means one size::

    --imgsz 320 --imgsz 384,640      two sizes
    --imgsz "320;384,640"            the same two sizes
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from detforge.core.errors import ConfigError

__all__ = ["IMGSZ_HELP", "IMGSZS_HELP", "format_imgsz", "parse_imgsz", "parse_imgszs",
           "parse_optional_imgsz"]

IMGSZ_HELP = "Input size: N, or H,W in pixels (e.g. 640 or 384,640)."
IMGSZS_HELP = ("Input size N or H,W (e.g. 384,640); repeat the option, or separate sizes with "
               "';', for several.")
MAX_SIDE = 16384
"""Largest side accepted (TensorRT's own limit on one dimension of a profile is far above
any detector's input; this catches a typo such as 6400)."""

_SIZE = re.compile(r"\s*(\d+)\s*(?:[,xX]\s*(\d+)\s*)?")


def parse_imgsz(text: str, *, option: str = "--imgsz") -> tuple[int, int]:
    """Parse one input size.

    Args:
        text: ``N``, ``H,W`` or ``HxW``.
        option: The option name shown in errors.

    Returns:
        ``(height, width)``.

    Raises:
        ConfigError: Not one or two positive integers up to :data:`MAX_SIDE`; the
            message shows the grammar.

    Example:
        >>> parse_imgsz("640"), parse_imgsz("384,640"), parse_imgsz("384x640")
        ((640, 640), (384, 640), (384, 640))
    """
    match = _SIZE.fullmatch(text)
    sides = [int(g) for g in match.groups() if g is not None] if match else []
    if not sides or not all(0 < s <= MAX_SIDE for s in sides):
        hint = " (several sizes: repeat the option, or separate them with ';')" \
            if text.count(",") > 1 else ""
        raise ConfigError(f"{option} {text!r} is not an input size: write N or H,W with "
                          f"positive integers up to {MAX_SIDE}, e.g. 640 or 384,640{hint}")
    return (sides[0], sides[-1])


def parse_optional_imgsz(text: str | None, *, option: str = "--imgsz",
                         ) -> tuple[int, int] | None:
    """:func:`parse_imgsz`, with None (the option not given) passed through.

    Example:
        >>> parse_optional_imgsz(None), parse_optional_imgsz("320")
        (None, (320, 320))
    """
    return None if text is None else parse_imgsz(text, option=option)


def parse_imgszs(values: str | Iterable[str] | None, *, option: str = "--imgsz",
                 ) -> tuple[tuple[int, int], ...] | None:
    """Parse several input sizes: each value, split at ``;``, is one size.

    Args:
        values: The option's values (a repeated option gives several), or None.
        option: The option name shown in errors.

    Returns:
        ``(height, width)`` sizes in order, duplicates dropped; None when no value is given.

    Raises:
        ConfigError: A part is not a size (see :func:`parse_imgsz`).

    Example:
        >>> parse_imgszs(["320", "384,640;640"])
        ((320, 320), (384, 640), (640, 640))
    """
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        return None
    sizes: list[tuple[int, int]] = []
    for item in items:
        for part in item.split(";"):
            if part.strip():
                size = parse_imgsz(part, option=option)
                if size not in sizes:
                    sizes.append(size)
    if not sizes:
        raise ConfigError(f"{option} {items!r} holds no size; write e.g. 640 or 384,640")
    return tuple(sizes)


def format_imgsz(size: tuple[int, int]) -> str:
    """The size in the ``--imgsz`` grammar: ``N`` when square, else ``H,W``.

    Example:
        >>> format_imgsz((384, 640)), format_imgsz((640, 640))
        ('384,640', '640')
    """
    return str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"
