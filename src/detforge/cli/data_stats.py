"""``detforge data stats DS``: class counts per split, box sizes, an optional HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.cli.data_options import AllowOutsideRoot

__all__ = ["register", "stats"]


def stats(
    dataset: Annotated[Path, typer.Argument(help="Dataset to describe (format auto-detected).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")
                       ] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here.")
                    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Format of DS.")] = None,
    allow_outside_root: AllowOutsideRoot = False,
) -> None:
    """Describe DS: images, boxes and classes per split, box size and aspect distributions.

    Example: detforge data stats ds --html ds_stats.html
    """
    from detforge.data.formats import read_dataset
    from detforge.data.stats import dataset_stats, format_stats, render_stats_html

    result = dataset_stats(read_dataset(dataset, from_, allow_outside_root=allow_outside_root))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(format_stats(result))
    if html is not None:
        typer.echo(f"report: {render_stats_html(result, html)}", err=as_json)


def register(app: typer.Typer) -> None:
    """Add ``stats`` to the ``detforge data`` group."""
    app.command("stats")(stats)
