"""``detforge data``: synth, convert, validate, split, stats, catalog."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets: synthesise, convert, validate, split, describe, catalogue.",
                  no_args_is_help=True)
