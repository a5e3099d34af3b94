"""The ``detforge`` command line: a thin Typer layer over the library.

Each command group lives in its own module and is added here. A ``DetforgeError``
raised anywhere below is printed as ``ErrorName: message`` on stderr, without a
traceback, and the process exits with the error's ``exit_code``. So is an ``OSError`` for a
full disk, a quota, a read-only file system or a permission (as a ``StorageError``).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer._click.core import Context
from typer.core import TyperGroup

from detforge.core.errors import DetforgeError
from detforge.core.storage import storage_error

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """Root group that turns DetforgeError into a one-line message and an exit code."""

    def invoke(self, ctx: Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except OSError as exc:
                translated = storage_error(exc)
                if translated is None or isinstance(exc, DetforgeError):
                    raise
                raise translated from exc
        except DetforgeError as exc:
            typer.echo(f"{type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(
    cls=_Group,
    name="detforge",
    help="From labelled images to a validated, optimised object detector.\n\n"
         "Example: detforge data synth ds --images 64 --classes 3 --seed 0",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Command modules, each with ``register(app)``; ``data`` is a group of its own.
_COMMAND_MODULES = ("train", "evaluate", "export", "parity", "engine", "predict", "benchmark",
                    "deploy", "registry", "serve", "demo", "library", "monitor", "active")


def _register() -> None:
    from detforge.cli.data import app as data_app

    app.add_typer(data_app, name="data")
    for name in _COMMAND_MODULES:
        module = f"detforge.cli.{name}"
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency: keep the error
                raise
            continue
        mod.register(app)


_register()


def main() -> None:
    """Entry point of the ``detforge`` script."""
    sys.exit(app())
