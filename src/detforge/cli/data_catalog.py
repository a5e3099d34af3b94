"""``detforge data catalog add|list|show``: the local dataset catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["add", "catalog_app", "list_entries", "register", "show"]

catalog_app = typer.Typer(
    help="Dataset catalogue: versions (content hashes), sources, licences, counts, findings. "
         "Stored in $DETFORGE_HOME/catalog.sqlite (default ~/.detforge).",
    no_args_is_help=True)

CatalogOption = Annotated[Path | None, typer.Option(
    "--catalog", help="Catalogue file (default: $DETFORGE_HOME/catalog.sqlite).")]


@catalog_app.command("add")
def add(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder or COCO JSON.")],
    name: Annotated[str, typer.Option("--name", help="Catalogue name.")],
    source: Annotated[str | None, typer.Option("--source", help="Where it came from.")] = None,
    licence: Annotated[str | None, typer.Option("--licence", help="Its licence.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Format; detected if omitted.")
                   ] = None,
    catalog: CatalogOption = None,
) -> None:
    """Hash, count and validate DS and record it under NAME.

    Example: detforge data catalog add ds --name shapes --licence CC0-1.0
    """
    from detforge.data.catalog import Catalog

    e = Catalog(catalog).add(dataset, name=name, source=source, licence=licence, fmt=fmt)
    typer.echo(f"{e.name}@{e.version}: {e.num_images} images, {e.num_boxes} boxes, "
               f"{len(e.classes)} classes ({e.format}) -> {Catalog(catalog).path}")


@catalog_app.command("list")
def list_entries(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    catalog: CatalogOption = None,
) -> None:
    """List every dataset version in the catalogue."""
    from detforge.data.catalog import Catalog, format_entries

    entries = Catalog(catalog).list()
    typer.echo(json.dumps([e.to_dict(with_findings=False) for e in entries], indent=2)
               if as_json else format_entries(entries))


@catalog_app.command("show")
def show(
    name_or_version: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or VERSION.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    catalog: CatalogOption = None,
) -> None:
    """Show one dataset version (a name gives its latest version)."""
    from detforge.data.catalog import Catalog

    entry = Catalog(catalog).show(name_or_version)
    typer.echo(json.dumps(entry.to_dict(), indent=2) if as_json else entry.to_text())


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` group to the ``detforge data`` group."""
    app.add_typer(catalog_app, name="catalog")
