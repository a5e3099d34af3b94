"""``detforge data split DS OUT``: a seeded, stratified, group-aware train/val/test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detforge.cli.data_options import AllowLoss, AllowOutsideRoot, write_options

__all__ = ["register", "split"]


def split(
    dataset: Annotated[Path, typer.Argument(help="Dataset to split (format auto-detected).")],
    out: Annotated[Path, typer.Argument(help="New folder for the split copy.")],
    ratios: Annotated[str, typer.Option(help="train,val[,test] fractions summing to 1.")
                      ] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same split.")] = 0,
    group_by: Annotated[str | None, typer.Option(
        "--group-by", help="Regex over image names; group 1 (or the match) is the group, "
                           "e.g. '^(vid\\d+)_'. Default: the dataset's group column.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Format of DS.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Format of OUT (default: DS's).")
                  ] = None,
    allow_loss: AllowLoss = None,
    allow_outside_root: AllowOutsideRoot = False,
) -> None:
    """Split DS into train/val/test, stratified by class, without crossing groups.

    Example: detforge data split ds ds_split --ratios 0.8,0.1,0.1 --seed 0
    """
    from detforge.data.split import format_split_report, parse_ratios, split_dataset_files

    result = split_dataset_files(dataset, out, ratios=parse_ratios(ratios), seed=seed,
                                 group_by=group_by, src_format=from_, out_format=to,
                                 options=write_options(allow_loss),
                                 allow_outside_root=allow_outside_root)
    typer.echo(format_split_report(result.report))
    typer.echo(f"\nwrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``split`` to the ``detforge data`` group."""
    app.command("split")(split)
