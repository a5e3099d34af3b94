"""``detforge library``: index, search and browse a photo and video library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from detforge.cli.ray_option import RAY_HELP, RayCommand

__all__ = ["app", "register"]

app = typer.Typer(help="Index a photo and video library into SQLite; search it; browse it.",
                  no_args_is_help=True)

_DB = typer.Option("--db", help="The library index (SQLite).")


@app.command("index", cls=RayCommand)
def index_command(
    root: Annotated[Path, typer.Argument(help="The library folder.")],
    db: Annotated[Path, _DB] = Path("library.sqlite"),
    model: Annotated[str | None, typer.Option(help="Detector (.onnx, .engine, .pt).")] = None,
    tagger: Annotated[str | None, typer.Option(
        help="Scene tagger: a local OpenCLIP model folder, or NAME=PATH.")] = None,
    tags: Annotated[Path | None, typer.Option(help="Tag vocabulary, one per line.")] = None,
    phases: Annotated[str | None, typer.Option(
        help="Comma list of meta,quality,objects,tags,video (default: all the given "
             "models allow).")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode and analysis threads.")] = None,
    batch: Annotated[str, typer.Option(help="Detector batch size, or 'auto'.")] = "auto",
    conf: Annotated[float, typer.Option(help="Detector confidence threshold.")] = 0.25,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    imgsz: Annotated[str | None, typer.Option(help="Detector input H,W (dynamic).")] = None,
    video_sampling: Annotated[str, typer.Option(help="uniform or scene.")] = "uniform",
    video_every: Annotated[float, typer.Option(help="Seconds between video samples.")] = 1.0,
    max_video_frames: Annotated[int, typer.Option(help="Most frames per video.")] = 300,
    prune: Annotated[bool, typer.Option(help="Drop rows of files that are gone.")] = False,
    retry_errors: Annotated[bool, typer.Option(help="Retry files that failed before.")] = False,
    commit_every: Annotated[int, typer.Option(help="Files per transaction.")] = 64,
    max_pixels: Annotated[int | None, typer.Option(
        help="Refuse images with more pixels (default $DETFORGE_MAX_PIXELS, else "
             "250,000,000).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ray: Annotated[str | None, typer.Option("--ray", metavar="[ADDRESS]", help=RAY_HELP)]
    = None,
) -> None:
    """Analyse every new or changed photo and video under ROOT into the index.

    Example: detforge library index ~/Pictures --db photos.sqlite --model yolo11n.onnx

    Example: detforge library index /nfs/photos --db photos.sqlite --model m.onnx --ray auto
    """
    from detforge.library import index_library
    from detforge.runtime.predict import parse_batch, parse_imgsz

    s = index_library(root, db=db, model=model, tagger=tagger, tags=tags, phases=phases,
                      workers=workers, batch=parse_batch(batch), conf=conf, device=device,
                      imgsz=parse_imgsz(imgsz), video_sampling=video_sampling,
                      video_every_s=video_every, max_video_frames=max_video_frames,
                      prune=prune, retry_errors=retry_errors, commit_every=commit_every,
                      max_pixels=max_pixels, progress=progress, ray=ray)
    typer.echo(f"{s.files} files in {s.wall_s:.1f} s ({s.files_per_s:.1f} files/s): "
               f"{s.analysed} analysed, {s.unchanged} unchanged, {s.linked} linked "
               f"({s.moved} moved), {s.errors} unreadable, {s.other} unsupported")
    if s.detections:
        typer.echo(f"{s.detections} detections stored")
    if s.phase_rates:
        typer.echo("per-phase throughput (one thread): " + ", ".join(
            f"{k} {v:.0f}/s" for k, v in s.phase_rates.items()))
    if s.missing:
        typer.echo(f"{s.missing} indexed files are gone; run with --prune to drop their rows")
    if s.pruned:
        typer.echo(f"pruned {s.pruned} rows of files that are gone")
    typer.echo(f"index: {s.db}")
    if s.interrupted:
        raise typer.Exit(130)


@app.command("search")
def search_command(
    query: Annotated[str | None, typer.Argument(
        help="Free text, e.g. 'photos with a dog from 2024 sharp'.")] = None,
    db: Annotated[Path, _DB] = Path("library.sqlite"),
    object_: Annotated[list[str] | None, typer.Option("--object", help="Object class.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Scene tag.")] = None,
    after: Annotated[str | None, typer.Option(help="From this date (YYYY[-MM[-DD]]).")] = None,
    before: Annotated[str | None, typer.Option(help="Before this date.")] = None,
    camera: Annotated[str | None, typer.Option(help="Text in the camera make/model.")] = None,
    min_sharpness: Annotated[float | None, typer.Option(help="Least sharpness.")] = None,
    kind: Annotated[str | None, typer.Option(help="image or video.")] = None,
    near_duplicates_of: Annotated[Path | None, typer.Option(
        help="Photos that look like this file.")] = None,
    threshold: Annotated[int, typer.Option(help="Bits for --near-duplicates-of.")] = 8,
    limit: Annotated[int | None, typer.Option(help="Most results.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Find files in the index (no filter: every file), newest first.

    Example: detforge library search --db photos.sqlite "dog 2024 iphone sharp" --json
    """
    from detforge.library import SearchQuery, open_store, search

    q = SearchQuery(text=query, objects=tuple(object_ or ()), tags=tuple(tag or ()),
                    after=after, before=before, camera=camera, min_sharpness=min_sharpness,
                    kind=kind, near_threshold=threshold, limit=limit,
                    near_duplicates_of=None if near_duplicates_of is None
                    else str(near_duplicates_of))
    con = open_store(db, readonly=True)
    try:
        result = search(con, q, count=not as_json)
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps(result.records, ensure_ascii=False))
        return
    for r in result.records:
        objects = " ".join(f"{k}:{n}" for k, n in r["objects"].items())
        typer.echo(f"{(r['date'] or '')[:19]:19}  {r['path']}  {objects} {' '.join(r['tags'])}"
                   .rstrip())
    typer.echo(f"{result.total} file(s)")


@app.command("duplicates")
def duplicates_command(
    db: Annotated[Path, _DB] = Path("library.sqlite"),
    threshold: Annotated[int, typer.Option(help="Most differing perceptual-hash bits.")] = 6,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of groups.")] = False,
) -> None:
    """Exact and near-duplicate groups, each with the file to keep.

    Example: detforge library duplicates --db photos.sqlite --threshold 6
    """
    from detforge.library import find_duplicates, open_store

    con = open_store(db, readonly=True)
    try:
        groups = find_duplicates(con, threshold=threshold)
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps([g.as_dict() for g in groups], ensure_ascii=False))
        return
    for g in groups:
        typer.echo(f"{g.kind} ({len(g.members)} files), keep {g.keep}")
        for m in g.members:
            if m["path"] != g.keep:
                typer.echo(f"    {m['path']}  (distance {m['distance']})")
    spare = sum(len(g.members) - 1 for g in groups)
    typer.echo(f"{len(groups)} group(s); {spare} file(s) could go")


@app.command("stats")
def stats_command(
    db: Annotated[Path, _DB] = Path("library.sqlite"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts of the index: files by kind and format, errors, dates, cameras, objects, tags.

    Example: detforge library stats --db photos.sqlite
    """
    from detforge.library import library_stats, open_store

    con = open_store(db, readonly=True)
    try:
        stats = library_stats(con)
    finally:
        con.close()
    if as_json:
        typer.echo(json.dumps(stats, ensure_ascii=False))
        return
    for key, value in stats.items():
        typer.echo(f"{key:22} {_flat(value)}")


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


@app.command("serve")
def serve_command(
    db: Annotated[Path, _DB] = Path("library.sqlite"),
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0: all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    api_key_env: Annotated[str, typer.Option(
        help="Environment variable holding the API key (auth off when unset).")] = (
        "DETFORGE_API_KEY"),
) -> None:
    """Browse the index in a read-only web page: search, boxes, duplicates, videos.

    Example: detforge library serve --db photos.sqlite  (then open http://127.0.0.1:8765/)
    """
    from detforge.library.web.app import serve_library

    serve_library(db, host=host, port=port, api_key_env=api_key_env or None)


def register(root: typer.Typer) -> None:
    """Add the ``library`` group to the root app."""
    root.add_typer(app, name="library")
