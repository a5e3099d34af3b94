"""``detforge data convert SRC OUT --to FORMAT [--from FORMAT]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["convert", "register"]


def convert(
    src: Annotated[Path, typer.Argument(help="Source dataset (folder or COCO JSON).")],
    out: Annotated[Path, typer.Argument(help="New output folder (must not exist or be empty).")],
    to: Annotated[str, typer.Option("--to", help="Output format: coco, yolo, voc, kitti.")],
    source_format: Annotated[str | None, typer.Option(
        "--from", help="Source format; detected when omitted.")] = None,
) -> None:
    """Convert a dataset to another format (images are hard-linked, else copied).

    Example: detforge data convert voc_ds coco_ds --to coco
    """
    from detforge.core.storage import storage_errors, tree_size
    from detforge.data.formats._common import convert as run

    with storage_errors(out, needed=lambda: tree_size(src)):  # images copied when not linked
        r = run(src, out, to=to, source_format=source_format)
    typer.echo(f"converted {r.src_format} -> {r.dst_format}: {r.images} images, {r.boxes} "
               f"boxes, {r.classes} classes -> {r.out}")


def register(app: typer.Typer) -> None:
    """Add ``convert`` to the ``detforge data`` group."""
    app.command("convert")(convert)
