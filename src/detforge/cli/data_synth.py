"""``detforge data synth OUT --images N --classes K --seed S``: a synthetic dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "synth"]


def synth(
    out: Annotated[Path, typer.Argument(help="New output folder (must not exist or be empty).")],
    images: Annotated[int, typer.Option("--images", help="Number of images.")] = 100,
    classes: Annotated[int, typer.Option("--classes", help="Number of shape classes.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed; same seed, same bytes.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="yolo, coco, voc or kitti.")] = "yolo",
    size: Annotated[str, typer.Option("--size", help="Image size W,H in pixels.")] = "320,320",
    splits: Annotated[str, typer.Option("--splits", help="train,val[,test] ratios.")
                      ] = "0.8,0.2",
    no_split: Annotated[bool, typer.Option("--no-split", help="Assign no splits.")] = False,
    empty_fraction: Annotated[float, typer.Option(
        "--empty-fraction", help="Fraction of images without objects.")] = 0.05,
) -> None:
    """Generate a seeded synthetic detection dataset (shapes on textured backgrounds).

    Example: detforge data synth ds --images 256 --classes 3 --seed 0
    """
    from detforge.data.synth import parse_ratios, parse_size, synthesize

    ds = synthesize(out, images=images, classes=classes, seed=seed, size=parse_size(size),
                    fmt=fmt, empty_fraction=empty_fraction,
                    splits=None if no_split else parse_ratios(splits))
    per_split = Counter(ds.images.split.tolist())
    split_text = ", ".join(f"{s} {per_split[s]}" for s in ds.split_names()) or "none"
    typer.echo(f"wrote {ds.num_images} images, {ds.num_boxes} boxes, {len(ds.classes)} classes "
               f"({', '.join(ds.classes.names)}) to {out} as {fmt}; splits: {split_text}")


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the ``detforge data`` group."""
    app.command("synth")(synth)
