"""Options shared by the ``detforge data`` commands that read or write datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from detforge.data.formats.policy import WriteOptions

__all__ = ["AllowLoss", "AllowOutsideRoot", "SplitMap", "ValSplit", "write_options"]

AllowLoss = Annotated[str | None, typer.Option(
    "--allow-loss", metavar="KINDS",
    help="Data the output format cannot hold that may be left out (and counted): comma-"
         "separated crowd, ignore, unsized, nonfinite, unknown-class, attributes, metadata, "
         "or all. Default: refuse, naming the first case.")]
AllowOutsideRoot = Annotated[bool, typer.Option(
    "--allow-outside-root",
    help="Let a YOLO data.yaml (or obj.data, list file) name folders and images outside "
         "the dataset folder.")]
SplitMap = Annotated[str | None, typer.Option(
    "--split-map", metavar="SRC=DST,...",
    help="Rename splits before writing, e.g. trainval=train,default=none (none: no split).")]
ValSplit = Annotated[str | None, typer.Option(
    "--val-split", metavar="SPLIT",
    help="YOLO: the split data.yaml's val: points at when there is no val split (train "
         "validates on the training images).")]


def write_options(allow_loss: str | None, val_split: str | None = None) -> WriteOptions:
    """The library's ``WriteOptions`` from the command-line values."""
    from detforge.data.formats.policy import WriteOptions, parse_allow_loss

    return WriteOptions(allow_loss=parse_allow_loss(allow_loss), val_split=val_split)
