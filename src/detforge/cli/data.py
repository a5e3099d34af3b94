"""``detforge data``: synth, convert, validate, split, stats, catalog.

Each command lives in its own module ``detforge.cli.data_<name>`` with ``register(app)``.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Datasets: synthesise, convert, validate, split, describe, catalogue.",
                  no_args_is_help=True)

_COMMANDS = ("synth", "convert", "validate", "split", "stats", "catalog")

for _name in _COMMANDS:
    _module = f"detforge.cli.data_{_name}"
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
