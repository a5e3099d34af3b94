"""Search the index: filters, and a small query language for free text.

A query is a list of words (``"quoted phrases"`` stay together); all must hold (AND). Each
word means, in this order (docs/decisions/0032-library-search.md):

1. ``key:value`` -- ``object:dog``, ``tag:beach``, ``camera:iphone``, ``lens:50mm``,
   ``after:2024-01-01``, ``before:2024-07-01``, ``year:2024``, ``kind:video``,
   ``path:holiday``, ``sharpness:100`` (at least);
2. a year from 1900 to 2100 -- taken (else modified) in that year;
3. an object class found in the index, singular or plural (``dog``, ``dogs``);
4. a scene tag found in the index (``beach``; ``"living room"`` quoted);
5. ``photo(s)``, ``picture(s)``, ``image(s)`` / ``video(s)``, ``clip(s)``, ``movie(s)`` --
   that kind of file; ``sharp`` -- sharpness at least :data:`SHARP`; ``blurry`` -- below
   :data:`BLURRY`; ``unique`` -- one file per content (exact copies collapsed);
6. a filler word (``with``, ``a``, ``the``, ``taken``, ``in``, ``from``, ...) -- ignored;
7. anything else -- text that must appear (case-insensitive) in the path or the camera
   (make and model).

So ``photos with a dog from 2024 taken with the iPhone sharp`` means: kind image, an
object ``dog``, dated 2024, text ``iphone`` (it matches the camera model), sharpness at
least 100. Results are files, newest first (then by path).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from detforge.core.errors import ConfigError
from detforge.library.hashing import hamming_to_many
from detforge.library.quality import exposure_label

__all__ = ["BLURRY", "SHARP", "SearchQuery", "SearchResult", "parse_query", "search"]

SHARP = 100.0
_FEW = 5000  # matches of an object or tag search up to which they are sorted, not walked
BLURRY = 50.0
_FILLER = frozenset({"a", "an", "the", "with", "of", "in", "on", "at", "from", "taken", "by",
                     "and", "all", "show", "me", "find", "containing", "featuring", "shot",
                     "that", "which", "have", "has", "some", "any", "my", "during", "for"})
_KIND_WORDS = {"photo": "image", "photos": "image", "picture": "image", "pictures": "image",
               "image": "image", "images": "image", "pic": "image", "pics": "image",
               "video": "video", "videos": "video", "clip": "video", "clips": "video",
               "movie": "video", "movies": "video"}
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?)?)?$")
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True)
class SearchQuery:
    """Filters of a search; every one given must hold.

    Attributes:
        text: Free-text words (see :func:`parse_query`), or None.
        objects: Object classes that must all appear.
        tags: Scene tags that must all be present.
        after: Earliest date (``YYYY[-MM[-DD]]``, inclusive).
        before: Latest date (exclusive).
        camera: Text in the camera make or model.
        lens: Text in the lens name.
        min_sharpness: Least sharpness.
        max_sharpness: Most sharpness (exclusive).
        kind: ``image`` or ``video``.
        near_duplicates_of: A file: keep only contents within ``near_threshold`` bits of
            its perceptual hash (the file itself left out).
        near_threshold: Hamming distance for ``near_duplicates_of``.
        unique: One file per content.
        terms: Text terms (path or camera), already parsed.
        limit: Most results (None: all).
        offset: Results to skip.
    """

    text: str | None = None
    objects: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    after: str | None = None
    before: str | None = None
    camera: str | None = None
    lens: str | None = None
    min_sharpness: float | None = None
    max_sharpness: float | None = None
    kind: str | None = None
    near_duplicates_of: str | None = None
    near_threshold: int = 8
    unique: bool = False
    terms: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0


@dataclass
class SearchResult:
    """Matching files (a page of them) and how many match in all."""

    total: int
    records: list[dict[str, Any]] = field(default_factory=list)


def _date(value: str, flag: str) -> str:
    value = value.strip()
    if not _DATE.match(value):
        raise ConfigError(f"{flag} {value!r}: expected a date like 2024, 2024-05 or 2024-05-31")
    return value.replace(" ", "T")


def _next_year(year: int) -> str:
    return f"{year + 1:04d}"


def parse_query(text: str, con: sqlite3.Connection, base: SearchQuery | None = None
                ) -> SearchQuery:
    """Turn free text into filters (the rules in the module docstring), on top of ``base``.

    Raises:
        ConfigError: A ``key:value`` word with an unknown key or a bad value.
    """
    q = base or SearchQuery()
    labels = {v.lower(): v for v in _distinct(con, "objects", "label")}
    tags = {v.lower(): v for v in _distinct(con, "tags", "tag")}
    objects, found_tags, terms = list(q.objects), list(q.tags), list(q.terms)
    updates: dict[str, Any] = {}
    for m in _TOKEN.finditer(text):
        word = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        low = word.lower().strip(",.;!?")
        if not low:
            continue
        key, sep, value = low.partition(":")
        if sep and m.group(1) is None and value:
            value = word.split(":", 1)[1].strip(",.;!?")
            if key == "object":
                objects.append(labels.get(value.lower(), value))
            elif key == "tag":
                found_tags.append(tags.get(value.lower(), value))
            elif key == "camera":
                updates["camera"] = value
            elif key == "lens":
                updates["lens"] = value
            elif key == "path":
                terms.append(value)
            elif key in ("after", "before"):
                updates[key] = _date(value, f"{key}:")
            elif key == "year" and value.isdigit():
                updates.update(after=value, before=_next_year(int(value)))
            elif key == "kind" and value in ("image", "video"):
                updates["kind"] = value
            elif key == "sharpness":
                try:
                    updates["min_sharpness"] = float(value)
                except ValueError as exc:
                    raise ConfigError(f"sharpness:{value}: expected a number") from exc
            else:
                raise ConfigError(f"query word {word!r}: unknown key or value; keys are object, "
                                  f"tag, camera, lens, path, after, before, year, kind, "
                                  f"sharpness")
        elif low.isdigit() and len(low) == 4 and 1900 <= int(low) <= 2100:
            updates.update(after=low, before=_next_year(int(low)))
        elif _singular(low, labels) is not None:
            objects.append(labels[_singular(low, labels) or low])
        elif low in tags:
            found_tags.append(tags[low])
        elif low in _KIND_WORDS:
            updates["kind"] = _KIND_WORDS[low]
        elif low == "sharp":
            updates["min_sharpness"] = SHARP
        elif low in ("blurry", "blurred"):
            updates["max_sharpness"] = BLURRY
        elif low == "unique":
            updates["unique"] = True
        elif low in _FILLER:
            continue
        else:
            terms.append(word)
    return replace(q, text=None, objects=tuple(dict.fromkeys(objects)),
                   tags=tuple(dict.fromkeys(found_tags)), terms=tuple(terms), **updates)


def _distinct(con: sqlite3.Connection, table: str, column: str) -> list[str]:
    """Distinct values of an indexed column by hopping along its index (one seek per
    value, not a scan of every row: the vocabulary of a 100,000-photo index in ~0.1 ms)."""
    sql = (f"WITH RECURSIVE v(x) AS (SELECT min({column}) FROM {table} UNION ALL "
           f"SELECT (SELECT min({column}) FROM {table} WHERE {column} > x) FROM v "
           f"WHERE x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")
    return [r[0] for r in con.execute(sql)]


def _singular(word: str, labels: dict[str, str]) -> str | None:
    for cand in (word, word[:-1] if word.endswith("s") else None,
                 word[:-2] if word.endswith("es") else None):
        if cand and cand in labels:
            return cand
    return None


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(con: sqlite3.Connection, q: SearchQuery) -> tuple[str, list[Any]]:
    """The conditions on a file row (all but objects and tags) and their arguments."""
    clauses = ["f.error IS NULL", "f.kind != 'other'"]
    args: list[Any] = []
    if q.after:
        clauses.append("f.date >= ?")
        args.append(_date(q.after, "--after"))
    if q.before:
        clauses.append("f.date < ?")
        args.append(_date(q.before, "--before"))
    if q.camera:
        clauses.append("f.camera LIKE ? ESCAPE '\\'")
        args.append(_like(q.camera))
    if q.lens:
        clauses.append("EXISTS (SELECT 1 FROM contents c WHERE c.hash = f.hash AND "
                       "c.lens LIKE ? ESCAPE '\\')")
        args.append(_like(q.lens))
    if q.min_sharpness is not None:
        clauses.append("f.sharpness >= ?")
        args.append(q.min_sharpness)
    if q.max_sharpness is not None:
        clauses.append("f.sharpness < ?")
        args.append(q.max_sharpness)
    if q.kind:
        if q.kind not in ("image", "video"):
            raise ConfigError(f"--kind {q.kind!r}: choose image or video")
        clauses.append("f.kind = ?")
        args.append(q.kind)
    for term in q.terms:
        clauses.append("(f.path LIKE ? ESCAPE '\\' OR f.camera LIKE ? ESCAPE '\\')")
        args += [_like(term)] * 2
    if q.near_duplicates_of is not None:
        path, hashes = _near(con, q.near_duplicates_of, q.near_threshold)
        clauses.append("f.hash IN (SELECT value FROM json_each(?)) AND f.path != ?")
        args += [json.dumps(hashes), path]
    if q.unique:
        clauses.append("f.dup = 0")  # the first readable copy (see store.py)
    return " AND ".join(clauses), args


def _contents_with(con: sqlite3.Connection, objects: Sequence[str], tags: Sequence[str]
                   ) -> tuple[str, str, list[Any], int]:
    """The contents that have every object and tag: tables, conditions, arguments, and the
    size of the smallest set (an upper bound of the contents found).

    The sets are joined along their primary keys, smallest first (``CROSS JOIN`` keeps that
    order): the rarest label is read once and each of its contents probed in the others,
    about twice as fast as an ``INTERSECT`` of whole sets. ``s0.hash`` is each content.
    """
    sets = [("objects", "label", v) for v in objects] + [("tags", "tag", v) for v in tags]
    sizes = [con.execute(f"SELECT count(*) FROM {table} WHERE {col} = ?", (v,)).fetchone()[0]
             for table, col, v in sets]
    order = sorted(range(len(sets)), key=sizes.__getitem__)
    sets = [sets[i] for i in order]
    tables = " CROSS JOIN ".join(f"{table} s{i}" for i, (table, _, _) in enumerate(sets))
    conds = " AND ".join(f"s{i}.{col} = ?" + (f" AND s{i}.hash = s0.hash" if i else "")
                         for i, (_, col, _) in enumerate(sets))
    return tables, conds, [v for *_, v in sets], min(sizes)


def _near(con: sqlite3.Connection, file: str, threshold: int) -> tuple[str, list[str]]:
    """The query file's absolute path and the content hashes near it."""
    from pathlib import Path

    from detforge.library.formats import kind_of
    from detforge.library.hashing import phash

    path = str(Path(file).absolute())
    row = con.execute("SELECT c.phash FROM files f JOIN contents c ON c.hash = f.hash "
                      "WHERE f.path = ?", (path,)).fetchone()
    target = row[0] if row is not None else None
    if target is None:
        from detforge.library.decode import UndecodableError, decode_still
        from detforge.library.quality import analysis_image

        try:
            kind = kind_of(path)
            if kind in ("video", "other"):
                raise UndecodableError("not a still image")
            target = phash(analysis_image(decode_still(Path(path).read_bytes(), kind,
                                                       min_side=256).rgb))
        except (OSError, UndecodableError) as exc:
            raise ConfigError(f"--near-duplicates-of {file}: cannot read it as a photo "
                              f"({exc}); pass an image file") from exc
    rows = con.execute("SELECT hash, phash FROM contents WHERE phash IS NOT NULL").fetchall()
    if not rows:
        return path, []
    values = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    close = np.nonzero(hamming_to_many(values, int(target)) <= threshold)[0]
    return path, [rows[i][0] for i in close]


_COLUMNS = ("f.id, f.path, f.kind, f.date, f.size, f.hash, c.format, c.width, c.height, "
            "c.taken_at, c.camera_make, c.camera_model, c.lens, c.gps_lat, c.gps_lon, "
            "c.sharpness, c.brightness, c.dark_clip, c.bright_clip, c.noise, c.duration_s, "
            "c.fps, c.codec")
_NAMES = [c.strip().split(".")[1] for c in _COLUMNS.split(",")]


def search(con: sqlite3.Connection, query: SearchQuery | None = None, *,
           count: bool = True) -> SearchResult:
    """Files matching ``query`` (every indexed, readable file when it is empty).

    Args:
        con: An open index (see :func:`~detforge.library.store.open_store`).
        query: The filters; ``query.text`` is parsed by :func:`parse_query`.
        count: Count every match even when that takes a second pass (else ``total`` may
            be only the number returned; a search by object or tag always counts).

    Returns:
        The :class:`SearchResult`: records with ``path`` and the indexed fields, plus
        ``objects`` (label -> count) and ``tags`` (best first).

    Raises:
        ConfigError: A bad filter value or query word.

    Example:
        >>> res = search(con, SearchQuery(objects=("dog",), after="2024"))  # doctest: +SKIP
    """
    q = query or SearchQuery()
    if q.text:
        q = parse_query(q.text, con, q)
    where, args = _where(con, q)
    if q.objects or q.tags:
        ids, total = _page_by_content(con, q, where, args)
    else:
        ids, total = _page_by_date(con, q, where, args, count=count)
    rows = con.execute(f"SELECT {_COLUMNS} FROM json_each(?) p JOIN files f ON f.id = p.value "
                       f"JOIN contents c ON c.hash = f.hash ORDER BY p.key", (json.dumps(ids),))
    records = [dict(zip(_NAMES, row, strict=True)) for row in rows]
    _attach(con, records)
    return SearchResult(total=total, records=records)


# Three plans, each the fastest where it is used (docs/decisions/0032-library-search.md;
# BENCHMARKS.md, library search):
# - no object or tag: walk the covering index in date order, which stops after the page;
# - objects or tags with few matches: read them all from the set of contents (one pass
#   through the covering index by content), sort them and cut the page;
# - objects or tags with more: count them, on that same pass; or, when one object or tag
#   alone holds more than a few and nothing else narrows it, in SQLite without fetching a
#   row (reading 15,000 ids into Python costs as much again as the count). Then walk in
#   date order probing the set (the matches are dense, so the page comes soon).


def _page_by_date(con: sqlite3.Connection, q: SearchQuery, where: str, args: list[Any], *,
                  count: bool) -> tuple[list[int], int]:
    """The page's file ids and the total, with no object or tag filter."""
    by_date = f"FROM files f INDEXED BY files_search WHERE {where}"
    ids = [r[0] for r in con.execute(
        f"SELECT f.id {by_date} ORDER BY f.date DESC, f.path LIMIT ? OFFSET ?",
        [*args, -1 if q.limit is None else q.limit + 1, q.offset])]  # one past: more?
    more = q.limit is not None and len(ids) > q.limit
    ids = ids[:q.limit]
    total = q.offset + len(ids)
    if count and (more or (q.offset and not ids)):
        total = int(con.execute(f"SELECT count(*) {by_date}", args).fetchone()[0])
    return ids, total


def _page_by_content(con: sqlite3.Connection, q: SearchQuery, where: str, args: list[Any]
                     ) -> tuple[list[int], int]:
    """The page's file ids and the total, under object or tag filters."""
    tables, conds, values, most = _contents_with(con, q.objects, q.tags)
    page = [-1 if q.limit is None else q.limit, q.offset]
    from_set = (f"FROM {tables} CROSS JOIN files f INDEXED BY files_by_content WHERE {conds} "
                f"AND f.hash = s0.hash AND {where}")
    narrowed = any(v not in (None, ()) for v in (
        q.after, q.before, q.camera, q.lens, q.min_sharpness, q.max_sharpness, q.kind, q.terms,
        q.near_duplicates_of))
    if most <= _FEW or narrowed or len(q.objects) + len(q.tags) > 1:
        cursor = con.execute(f"SELECT f.id {from_set}", values + args)
        found = cursor.fetchmany(_FEW + 1)
        if len(found) <= _FEW:
            return [r[0] for r in con.execute(
                "SELECT f.id FROM json_each(?) p JOIN files f ON f.id = p.value "
                "ORDER BY f.date DESC, f.path LIMIT ? OFFSET ?",
                [json.dumps([r[0] for r in found]), *page])], len(found)
        total = len(found) + sum(1 for _ in cursor)  # the rest of the pass, not a second one
    else:  # the set alone holds many matches: count them in SQLite, no row reaches Python
        total = int(con.execute(f"SELECT count(*) {from_set}", values + args).fetchone()[0])
    return [r[0] for r in con.execute(
        f"SELECT f.id FROM files f INDEXED BY files_search WHERE {where} AND f.hash IN "
        f"(SELECT s0.hash FROM {tables} WHERE {conds}) ORDER BY f.date DESC, f.path "
        f"LIMIT ? OFFSET ?", args + values + page)], total


def _attach(con: sqlite3.Connection, records: Sequence[dict[str, Any]]) -> None:
    """Add ``objects``, ``tags`` and ``exposure`` to each record."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        r["objects"], r["tags"] = {}, []
        if r["brightness"] is not None:
            r["exposure"] = exposure_label(r["brightness"], r["dark_clip"] or 0.0,
                                           r["bright_clip"] or 0.0)
        by_hash.setdefault(r["hash"], []).append(r)
    hashes = list(by_hash)
    for chunk in _chunks(hashes, 500):
        marks = ",".join("?" * len(chunk))
        for h, label, n in con.execute(f"SELECT hash, label, count FROM objects WHERE hash IN "
                                       f"({marks}) ORDER BY label", chunk):
            for r in by_hash[h]:
                r["objects"][label] = n
        for h, tag, _score in con.execute(f"SELECT hash, tag, score FROM tags WHERE hash IN "
                                          f"({marks}) ORDER BY score DESC", chunk):
            for r in by_hash[h]:
                r["tags"].append(tag)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
