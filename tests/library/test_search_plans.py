"""Every search plan answers what a plain reading of the filters answers.

A random index (copies, unreadable files, files of no media kind, missing dates) is
written straight into the schema; each query's page and total are compared with a
filter-and-sort in Python, under each of the three plans of ``search``.
"""

from __future__ import annotations

import importlib
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from detforge.library import SearchQuery, open_store, search
from detforge.library.store import MIGRATIONS, SCHEMA_VERSION, schema_version

LABELS = ("person", "dog", "cat", "car")
TAGS = ("beach", "snow", "city")
CAMERAS = ("Apple iPhone 15 Pro", "Canon EOS R5", "Google Pixel 8", None)


def _write(con: sqlite3.Connection, n: int, seed: int) -> None:
    rng = random.Random(seed)
    con.execute("BEGIN")
    hashes: list[str] = []
    for i in range(n):
        if hashes and rng.random() < 0.15:  # a copy of an earlier content
            h: str | None = rng.choice(hashes)
        else:
            h = f"{i:064x}"
            hashes.append(h)
            con.execute("INSERT INTO contents (hash, kind, format, phases, analysed_at) "
                        "VALUES (?, 'image', 'jpg', 'meta', 'x')", (h,))
            for label in rng.sample(LABELS, rng.randrange(3)):
                con.execute("INSERT INTO objects VALUES (?, ?, 1, 0.9)", (label, h))
            for tag in rng.sample(TAGS, rng.randrange(3)):
                con.execute("INSERT INTO tags VALUES (?, ?, 0.5)", (tag, h))
        kind = rng.choice(["image"] * 8 + ["video", "other"])
        error = "broken" if rng.random() < 0.05 else None
        if kind == "other":
            h = None
        date = None if rng.random() < 0.03 else (
            f"{2018 + rng.randrange(6)}-{1 + rng.randrange(12):02d}-01T00:00:00")
        con.execute("INSERT INTO files (path, hash, kind, size, mtime_ns, date, camera, "
                    "sharpness, error, first_seen, updated_at) VALUES (?, ?, ?, 1, 0, ?, ?, "
                    "?, ?, 'x', 'x')",
                    (f"/lib/{rng.choice('abc')}/IMG_{i:05d}.jpg", h, kind, date,
                     rng.choice(CAMERAS), rng.uniform(0, 400), error))
    con.execute("COMMIT")


@pytest.fixture(scope="module")
def random_index(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    db = tmp_path_factory.mktemp("plans") / "l.sqlite"
    con = open_store(db)
    _write(con, 3000, seed=7)
    con.close()
    ro = open_store(db, readonly=True)
    yield ro
    ro.close()


def _expected(con: sqlite3.Connection, q: SearchQuery) -> list[str]:
    """Paths matching ``q``, newest first then by path, by reading every row."""
    files = con.execute("SELECT id, path, hash, kind, date, camera, sharpness, error "
                        "FROM files").fetchall()
    labels: dict[str, set[str]] = {}
    for table, col in (("objects", "label"), ("tags", "tag")):
        for value, h in con.execute(f"SELECT {col}, hash FROM {table}"):
            labels.setdefault(f"{table}:{value}", set()).add(h)
    first: dict[str, int] = {}
    for fid, _, h, _, _, _, _, error in files:
        if h is not None and error is None:
            first[h] = min(fid, first.get(h, fid))
    out = []
    for fid, path, h, kind, date, camera, sharp, error in files:
        cam = (camera or "").lower()
        if (error is not None or kind == "other"
                or any(h not in labels.get(f"objects:{v}", ()) for v in q.objects)
                or any(h not in labels.get(f"tags:{v}", ()) for v in q.tags)
                or q.after and (date is None or date < q.after)
                or q.before and (date is None or date >= q.before)
                or q.camera and (camera is None or q.camera.lower() not in cam)
                or q.min_sharpness is not None and sharp < q.min_sharpness
                or q.kind and kind != q.kind
                or any(t.lower() not in path.lower() and t.lower() not in cam
                       for t in q.terms)
                or q.unique and first[h] != fid):
            continue
        out.append((date, path))
    out.sort(key=lambda r: r[1])
    out.sort(key=lambda r: (r[0] is not None, r[0] or ""), reverse=True)  # NULL dates last
    return [path for _, path in out]


def _queries(seed: int) -> list[SearchQuery]:
    rng = random.Random(seed)
    queries = [SearchQuery(), SearchQuery(unique=True), SearchQuery(objects=("dog",)),
               SearchQuery(objects=("dog", "cat"), tags=("beach",)),
               SearchQuery(tags=("snow",), unique=True, before="2020")]
    for _ in range(40):
        kw: dict[str, Any] = {}
        if rng.random() < 0.6:
            kw["objects"] = tuple(rng.sample(LABELS, 1 + rng.randrange(2)))
        if rng.random() < 0.4:
            kw["tags"] = tuple(rng.sample(TAGS, 1 + rng.randrange(2)))
        if rng.random() < 0.3:
            kw["after"] = f"{2018 + rng.randrange(6)}"
        if rng.random() < 0.3:
            kw["before"] = f"{2019 + rng.randrange(6)}-06"
        if rng.random() < 0.3:
            kw["camera"] = rng.choice(["iphone", "CANON", "pixel"])
        if rng.random() < 0.3:
            kw["min_sharpness"] = rng.uniform(0, 300)
        if rng.random() < 0.2:
            kw["kind"] = rng.choice(["image", "video"])
        if rng.random() < 0.2:
            kw["terms"] = (rng.choice(["/a/", "IMG_01", "pro"]),)
        if rng.random() < 0.3:
            kw["unique"] = True
        queries.append(SearchQuery(**kw))
    return queries


@pytest.mark.parametrize("few", [None, 400, 3],
                         ids=["sorted-when-few", "mixed", "walked-when-many"])
def test_each_plan_gives_the_reference_page_and_total(random_index: sqlite3.Connection,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      few: int | None) -> None:
    if few is not None:  # with a lower threshold, object and tag searches take the walk
        monkeypatch.setattr(importlib.import_module("detforge.library.search"), "_FEW", few)
    checked = 0
    for q in _queries(seed=1):
        want = _expected(random_index, q)
        for limit, offset in ((None, 0), (25, 0), (25, 40), (10, len(want)), (10, 5000)):
            page = SearchQuery(**{**q.__dict__, "limit": limit, "offset": offset})
            got = search(random_index, page)
            stop = None if limit is None else offset + limit
            assert [r["path"] for r in got.records] == want[offset:stop], page
            assert got.total == len(want), page
            checked += 1
    assert checked == 45 * 5


def test_copies_are_flagged_as_files_change(tmp_path: Path) -> None:
    con = open_store(tmp_path / "l.sqlite")
    con.execute("INSERT INTO contents (hash, kind, format, phases, analysed_at) "
                "VALUES ('h', 'image', 'jpg', 'meta', 'x')")

    def add(path: str, error: str | None = None) -> None:
        con.execute("INSERT INTO files (path, hash, kind, size, mtime_ns, error, first_seen, "
                    "updated_at) VALUES (?, 'h', 'image', 1, 0, ?, 'x', 'x')", (path, error))

    def dups() -> dict[str, int]:
        return dict(con.execute("SELECT path, dup FROM files ORDER BY id").fetchall())

    add("/a.jpg")
    add("/b.jpg")
    add("/c.jpg", error="unreadable")
    assert dups() == {"/a.jpg": 0, "/b.jpg": 1, "/c.jpg": 1}
    con.execute("UPDATE files SET error = 'gone bad' WHERE path = '/a.jpg'")
    assert dups() == {"/a.jpg": 0, "/b.jpg": 0, "/c.jpg": 1}
    con.execute("UPDATE files SET error = NULL WHERE path = '/a.jpg'")
    assert dups()["/b.jpg"] == 1
    con.execute("DELETE FROM files WHERE path = '/a.jpg'")
    assert dups() == {"/b.jpg": 0, "/c.jpg": 1}
    con.execute("UPDATE files SET error = NULL WHERE path = '/c.jpg'")
    assert dups() == {"/b.jpg": 0, "/c.jpg": 1}
    con.execute("UPDATE files SET hash = NULL, kind = 'other' WHERE path = '/b.jpg'")
    assert dups() == {"/b.jpg": 0, "/c.jpg": 0}


def test_a_version_1_index_gains_copy_flags(tmp_path: Path) -> None:
    db = tmp_path / "v1.sqlite"
    raw = sqlite3.connect(db, isolation_level=None)
    raw.executescript(f"{MIGRATIONS[0]}\nPRAGMA user_version=1;\n"
                      f"PRAGMA application_id={0x64664C42};")
    raw.execute("INSERT INTO contents (hash, kind, format, phases, analysed_at) "
                "VALUES ('h', 'image', 'jpg', 'meta', 'x')")
    for path, error in (("/x.jpg", "unreadable"), ("/a.jpg", None), ("/b.jpg", None)):
        raw.execute("INSERT INTO files (path, hash, kind, size, mtime_ns, error, first_seen, "
                    "updated_at) VALUES (?, 'h', 'image', 1, 0, ?, 'x', 'x')", (path, error))
    raw.close()
    con = open_store(db)
    assert schema_version(con) == SCHEMA_VERSION >= 2
    assert dict(con.execute("SELECT path, dup FROM files").fetchall()) == {
        "/x.jpg": 0, "/a.jpg": 0, "/b.jpg": 1}
    assert [r["path"] for r in search(con, SearchQuery(unique=True)).records] == ["/a.jpg"]
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
