"""``detforge data validate DS``: find dataset problems; ``--fix OUT`` writes a repaired copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from detforge.cli.data_options import AllowLoss, AllowOutsideRoot, ValSplit, write_options

__all__ = ["register", "validate"]


def validate(
    dataset: Annotated[Path, typer.Argument(help="Dataset to check (format auto-detected).")],
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON object (summary, "
                                                       "findings) instead of text.")] = False,
    fix: Annotated[Path | None, typer.Option(
        "--fix", help="Write a repaired copy to this new folder, with fix_log.jsonl.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Format of DS.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Format of the --fix copy (default: DS's).")] = None,
    allow_loss: AllowLoss = None,
    val_split: ValSplit = None,
    allow_outside_root: AllowOutsideRoot = False,
) -> None:
    """Check DS for bad boxes, broken or duplicate images, split leaks and imbalance.

    Exit status: 0 no errors (warnings and info only), 1 errors found, 2 DS unreadable.

    Example: detforge data validate ds --fix ds_fixed
    """
    from detforge.data.validate import validate_path

    report, fixed = validate_path(dataset, fmt=from_, fix_out=fix, fix_format=to,
                                  options=write_options(allow_loss, val_split),
                                  allow_outside_root=allow_outside_root)
    if json_:
        payload = report.to_dict()
        if fixed is not None:
            payload["fix"] = fixed.to_dict()
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(report.to_text())
        if fixed is not None:
            changes = ", ".join(f"{n} {a}" for a, n in fixed.changes.items()) or "no changes"
            typer.echo(f"fixed copy ({fixed.format}): {fixed.out}\nchange log: {fixed.log} "
                       f"({changes})")
            if fixed.written is not None and fixed.written.losses_text():
                typer.echo(f"left out (allowed): {fixed.written.losses_text()}")
    if report.has_errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the ``detforge data`` group."""
    app.command("validate")(validate)
