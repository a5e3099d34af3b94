"""``detforge active select|merge|simulate``: choose what to label next, bring labels back,
and measure strategies against random."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from detforge.core.errors import ConfigError
from detforge.core.imgsz import IMGSZ_HELP, parse_imgsz, parse_optional_imgsz

active_app = typer.Typer(help="Active learning: select images to label, merge the labels back "
                              "as a new dataset version, simulate strategies.",
                         no_args_is_help=True)


def _square(text: str) -> int:
    """One side of the square inputs ``simulate`` trains and scores at."""
    h, w = parse_imgsz(text)
    if h != w:
        raise ConfigError(f"--imgsz {text!r}: simulate trains square inputs; pass one number "
                          f"(e.g. {max(h, w)})")
    return h


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return names


def _seeds(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError as exc:
        raise ConfigError(f"--seeds {text!r}: expected integers such as 0,1,2") from exc


@active_app.command("select")
def select(
    model: Annotated[Path, typer.Argument(help="Detector: .onnx (gives embeddings), .pt, "
                                               "engine or folder.")],
    pool: Annotated[str, typer.Argument(help="Unlabelled images: folder, glob or list file.")],
    budget: Annotated[int, typer.Option(help="How many images to pick.")],
    out: Annotated[Path, typer.Option(help="New folder for the selection.")],
    strategy: Annotated[str, typer.Option(
        help="entropy, margin, least-confidence, disagreement, diversity, hybrid or "
             "random.")] = "hybrid",
    second_model: Annotated[Path | None, typer.Option(
        help="Second detector for disagreement.")] = None,
    tta: Annotated[bool, typer.Option(help="Disagreement with the mirrored image.")] = False,
    exclude: Annotated[Path | None, typer.Option(
        help="Labelled dataset: skip its near duplicates; counts as covered.")] = None,
    uncertainty: Annotated[str, typer.Option(help="hybrid's measure: entropy, margin, "
                                                  "least-confidence.")] = "entropy",
    aggregate: Annotated[str, typer.Option(help="Boxes to image: max, mean or sum.")] = "max",
    hybrid_factor: Annotated[int, typer.Option(help="hybrid keeps factor x budget most "
                                                    "uncertain first.")] = 3,
    floor: Annotated[float, typer.Option(help="Boxes scoring at most this are "
                                              "background.")] = 0.05,
    preannotate_conf: Annotated[float, typer.Option(help="Smallest score of a "
                                                         "pre-annotated box.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of random.")] = 0,
    imgsz: Annotated[str | None, typer.Option(help=IMGSZ_HELP + " For dynamic models.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch: Annotated[int, typer.Option(help="Images per inference call.")] = 8,
    image_url: Annotated[str, typer.Option(
        help="Label Studio image URL prefix (key appended).")] = "/data/local-files/?d=",
) -> None:
    """Pick the BUDGET images of POOL to label next; write them for CVAT and Label Studio.

    Example: detforge active select best.onnx unlabelled/ --budget 50 --out round1 --exclude ds
    """
    from detforge.active.selection import select as run

    res = run(model, pool, budget=budget, out=out, strategy=strategy, second_model=second_model,
              tta=tta, exclude=exclude, uncertainty=uncertainty, aggregate=aggregate,
              hybrid_factor=hybrid_factor, floor=floor, preannotate_conf=preannotate_conf,
              seed=seed, imgsz=parse_optional_imgsz(imgsz), device=device, batch=batch,
              url_prefix=image_url)
    p = res.pool
    typer.echo(f"picked {len(res.picked)} of {len(p.candidates)} selectable images by "
               f"{res.strategy} ({len(p.images) + len(p.skipped)} files; {len(res.skipped)} "
               f"skipped, {len(p.duplicate_of)} near duplicates in the pool, "
               f"{len(p.labelled_duplicate_of)} of labelled images)")
    for s in res.skipped[:10]:
        typer.echo(f"  skipped {s.key}: {s.reason}")
    for pick in res.picked[:5]:
        value = "-" if pick.value is None else f"{pick.value:.4f}"
        typer.echo(f"  {pick.rank:>3}. {pick.image.key}  {value}  ({len(pick.labels)} boxes)")
    for role in ("selection", "report", "cvat_xml", "cvat_coco", "labelstudio_tasks"):
        typer.echo(f"{role:18s} {res.files[role]}")


@active_app.command("merge")
def merge(
    dataset: Annotated[Path, typer.Argument(help="The labelled dataset the images join.")],
    labelled: Annotated[Path, typer.Argument(help="CVAT XML/zip, Label Studio JSON, or a "
                                                  "COCO/YOLO/VOC dataset.")],
    out: Annotated[Path, typer.Option(help="New folder for the merged dataset.")],
    selection: Annotated[Path | None, typer.Option(help="The `active select` folder.")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder holding the labelled "
                                                     "images.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Labels format (detected if "
                                                             "omitted).")] = None,
    to: Annotated[str | None, typer.Option(help="Output format (default: the "
                                                "dataset's).")] = None,
    split: Annotated[str | None, typer.Option(help="Split of the new images.")] = None,
    prefix: Annotated[str, typer.Option(help="Sub-folder for the new images' keys.")] = "",
    add_classes: Annotated[bool, typer.Option(help="Append unknown labels as new "
                                                   "classes.")] = False,
    allow_lossy: Annotated[bool, typer.Option(help="Keep rotated boxes as enclosing boxes, "
                                                   "drop other shapes.")] = False,
    replace: Annotated[bool, typer.Option(help="New labels replace an identical image's "
                                               "old ones.")] = False,
    catalog: Annotated[Path | None, typer.Option(help="Catalogue file (default "
                                                      "$DETFORGE_HOME).")] = None,
    name: Annotated[str | None, typer.Option(help="Catalogue name.")] = None,
    record: Annotated[bool, typer.Option(help="Record both versions in the "
                                              "catalogue.")] = True,
) -> None:
    """Read corrected labels back and write DATASET + them as a new, catalogued version.

    Example: detforge active merge ds export.json --selection round1 --out ds_v2
    """
    from detforge.active.merge import merge as run

    res = run(dataset, labelled, out=out, selection=selection, images=images, fmt=fmt, to=to,
              split=split, prefix=prefix, add_classes=add_classes, allow_lossy=allow_lossy,
              replace=replace, catalog=catalog, name=name, record=record)
    typer.echo(f"{res.out} ({res.format}): version {res.version}, parent {res.parent_version}; "
               f"+{res.added_images} images, +{res.added_boxes} boxes"
               + (f", {res.replaced} replaced" if res.replaced else ""))
    if res.unannotated:
        typer.echo(f"left out: {len(res.unannotated)} task(s) not annotated yet, e.g. "
                   f"{res.unannotated[:3]}; merge again when they are")
    if res.lossy:
        typer.echo("changed (--allow-lossy): " + ", ".join(f"{n} {k}" for k, n in
                                                           res.lossy.items()))
    if res.warnings:
        typer.echo("warnings (boxes kept): " + ", ".join(f"{n} {k}" for k, n in
                                                         res.warnings.items()))
    if res.catalog is not None:
        typer.echo(f"catalogue: {res.name}@{res.version} (parent {res.parent_version}) -> "
                   f"{res.catalog}")


@active_app.command("simulate")
def simulate(
    dataset: Annotated[Path, typer.Argument(help="A fully labelled dataset.")],
    out: Annotated[Path, typer.Option(help="Folder for rounds and results (resumed).")],
    rounds: Annotated[int, typer.Option(help="Selection rounds after round 0.")] = 3,
    budget: Annotated[int, typer.Option(help="Images labelled per round.")] = 20,
    strategies: Annotated[str, typer.Option(help="Comma-separated strategies.")
                          ] = "entropy,random",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    initial: Annotated[int | None, typer.Option(help="Images labelled at round 0 "
                                                     "(default: budget).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs per round.")] = 10,
    imgsz: Annotated[str, typer.Option(help="Training and inference size N (square).")] = "160",
    model: Annotated[str, typer.Option(help="Model YAML or local weights.")] = "yolo11n.yaml",
    batch: Annotated[int, typer.Option(help="Training batch.")] = 16,
    device: Annotated[str, typer.Option(help="cpu or GPU indices.")] = "cpu",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Training override "
                                                                 "key=value.")] = None,
) -> None:
    """Replay select -> label -> retrain rounds per strategy; write a table and a plot.

    Example: detforge active simulate ds --rounds 3 --budget 20 --strategies hybrid,random
    """
    from detforge.active.simulate import simulate as run

    res = run(dataset, out=out, rounds=rounds, budget=budget, strategies=_names(strategies),
              seeds=_seeds(seeds), initial=initial, epochs=epochs, imgsz=_square(imgsz),
              model=model, batch=batch, device=device, overrides=set_ or [])
    from detforge.data.report import text_table

    curves = res.summary["curves"]
    sizes = sorted({p["labelled"] for pts in curves.values() for p in pts})
    table = [[n, *[next((f"{p['mean']:.4f}±{p['std']:.4f}" for p in curves[s]
                         if p["labelled"] == n), "-") for s in curves]] for n in sizes]
    typer.echo(text_table(["labelled", *curves], table))
    for v in res.summary["best_vs_random"]:
        typer.echo(f"at {v['labelled']} labelled: {v['best']} {v['best_mean']:.4f} vs random "
                   f"{v['random_mean']:.4f} ({v['gain']:+.4f})")
    typer.echo(f"results: {res.json}\nreport:  {res.html}")


def register(app: typer.Typer) -> None:
    """Add the ``active`` group to the root app."""
    app.add_typer(active_app, name="active")
