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
    from detforge.data.formats._common import convert as run

    r = run(src, out, to=to, source_format=source_format)
    typer.echo(f"converted {r.src_format} -> {r.dst_format}: {r.images} images, {r.boxes} "
               f"boxes, {r.classes} classes -> {r.out}")


def register(app: typer.Typer) -> None:
    """Add ``convert`` to the ``detforge data`` group."""
    app.command("convert")(convert)
