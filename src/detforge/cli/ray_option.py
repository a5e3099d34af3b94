"""``--ray [ADDRESS]``: the option shared by the commands that scale out on Ray.

The command-line parser has no option whose value may be left out, so commands that take
``--ray`` use :class:`RayCommand`, which completes a bare ``--ray`` with ``local`` before
parsing. A word after ``--ray`` is its ADDRESS only when it looks like one (``local``,
``auto``, ``HOST:PORT``, ``ray://...``); anything else (an option, a file) leaves the bare
``--ray``.
"""

from __future__ import annotations

import re

from typer._click.core import Context
from typer.core import TyperCommand

__all__ = ["RAY_HELP", "RayCommand", "complete_ray", "looks_like_address"]

RAY_HELP = ("Run on a Ray cluster: alone, a local one started for this run (loopback only, "
            "no usage statistics, no dashboard); or ADDRESS: auto, HOST:PORT, "
            "ray://HOST:PORT. Needs pip install 'detforge[scale]'.")

_ADDRESS = re.compile(r"(local|auto|ray://\S+|\[[0-9A-Fa-f:.]+\]:\d+|[\w.-]+:\d+)")


def looks_like_address(word: str) -> bool:
    """True for the forms a Ray address takes (``auto``, ``10.0.0.5:6379``, ...)."""
    return _ADDRESS.fullmatch(word) is not None


def complete_ray(args: list[str]) -> list[str]:
    """``args`` with every bare ``--ray`` given the value ``local``.

    Example:
        >>> complete_ray(["m.onnx", "img/", "--ray", "--out", "o.jsonl"])
        ['m.onnx', 'img/', '--ray', 'local', '--out', 'o.jsonl']
        >>> complete_ray(["--ray", "auto", "m.onnx"])
        ['--ray', 'auto', 'm.onnx']
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            out += args[i + 1:]
            break
        if arg == "--ray" and (i + 1 == len(args) or not looks_like_address(args[i + 1])):
            out.append("local")
    return out


class RayCommand(TyperCommand):
    """A command whose ``--ray`` option may be given without a value."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """Complete a bare ``--ray``, then parse as usual."""
        return super().parse_args(ctx, complete_ray(args))
