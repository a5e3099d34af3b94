"""``detforge data convert SRC OUT --to FORMAT [--from FORMAT]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.cli.data_options import (
    AllowLoss,
    AllowOutsideRoot,
    SplitMap,
    ValSplit,
    write_options,
)

__all__ = ["convert", "register"]


def convert(
    src: Annotated[Path, typer.Argument(help="Source dataset (folder or COCO JSON).")],
    out: Annotated[Path, typer.Argument(help="New output folder (must not exist or be empty).")],
    to: Annotated[str, typer.Option("--to", help="Output format: coco, yolo, voc, kitti.")],
    source_format: Annotated[str | None, typer.Option(
        "--from", help="Source format; detected when omitted.")] = None,
    allow_loss: AllowLoss = None,
    split_map: SplitMap = None,
    val_split: ValSplit = None,
    allow_outside_root: AllowOutsideRoot = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")
                       ] = False,
) -> None:
    """Convert a dataset to another format (images are hard-linked, else copied).

    Nothing is dropped silently: data OUT's format cannot hold is refused, naming the first
    case and the --allow-loss kind that accepts it; what was left out is counted.

    Example: detforge data convert voc_ds coco_ds --to coco
    """
    from detforge.core.storage import storage_errors, tree_size
    from detforge.data.formats.convert import convert as run
    from detforge.data.formats.policy import parse_split_map

    with storage_errors(out, needed=lambda: tree_size(src)):  # images copied when not linked
        r = run(src, out, to=to, source_format=source_format,
                options=write_options(allow_loss, val_split),
                split_map=parse_split_map(split_map), allow_outside_root=allow_outside_root)
    if as_json:
        typer.echo(json.dumps({"src_format": r.src_format, "out": str(r.out),
                               "source": {"images": r.source_images, "boxes": r.source_boxes},
                               "written": r.written.to_dict() if r.written else None},
                              indent=2))
    else:
        typer.echo(r.summary_line())


def register(app: typer.Typer) -> None:
    """Add ``convert`` to the ``detforge data`` group."""
    app.command("convert")(convert)
