"""Search answers the right sets: filters, the query language, near duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import ConfigError
from detforge.library import SearchQuery, open_store, parse_query, search


@pytest.fixture(scope="module")
def found(indexed: tuple[Path, Path, dict[str, Any]]) -> Any:
    _, db, m = indexed
    con = open_store(db, readonly=True)
    p = m["paths"]
    names = {v: k for k, v in p.items()}

    def run(query: SearchQuery | None = None, **kw: Any) -> set[str]:
        q = query or SearchQuery(**kw)
        return {names[r["path"]] for r in search(con, q).records}

    run.con = con  # type: ignore[attr-defined]
    yield run
    con.close()


ALL_MEDIA = {"dog24", "dog23", "dark", "blurry", "png", "webp", "tiff", "heic", "dng", "near",
             "copy", "video1", "video2"}


@pytest.mark.parametrize("kw,expected", [
    ({}, ALL_MEDIA),
    ({"objects": ("dog",), "kind": "image"}, ALL_MEDIA - {"dark", "video1", "video2"}),
    ({"kind": "video"}, {"video1", "video2"}),
    ({"after": "2024-01-01", "before": "2025"},
     {"dog24", "dark", "blurry", "heic", "dng", "near", "video1", "video2"}),
    ({"after": "2024-01-01", "before": "2024-06"}, {"dog24", "dark", "blurry", "dng", "near"}),
    ({"camera": "iphone"}, {"dog24", "dark", "blurry", "heic", "near"}),
    ({"camera": "canon", "before": "2022"}, {"webp", "tiff"}),
    ({"min_sharpness": 500.0, "kind": "image"},  # the small re-encoded copy scores ~390
     {"dog24", "dog23", "png", "webp", "tiff", "heic", "dng", "copy"}),
    ({"objects": ("cat",)}, set()),
    ({"unique": True, "camera": "canon"}, {"dog23", "webp", "tiff"}),
], ids=["everything", "object", "kind", "year", "range", "camera", "camera-before", "sharp",
        "no-match", "unique"])
def test_filters(found: Any, kw: dict[str, Any], expected: set[str]) -> None:
    assert found(**kw) == expected


@pytest.mark.parametrize("text,expected", [
    ("photos with a dog from 2024 taken with the iPhone",
     {"dog24", "blurry", "heic", "near"}),
    ("dogs 2024 iphone sharp", {"dog24", "heic", "near"}),
    ('"iphone 15 pro" photos 2024', {"dog24", "dark", "blurry", "near"}),
    ("videos of dogs", {"video1", "video2"}),
    ("blurry", {"blurry", "dark"}),  # a black frame has no edges either
    ("year:2023 unique", {"dog23"}),
    ("path:/b/ camera:canon", {"webp", "tiff"}),
    ("copy_of", {"copy"}),
    ("object:dog kind:image before:2021", {"tiff"}),
], ids=["sentence", "short", "phrase", "videos", "blurry", "year-key", "path-key", "text", "keys"])
def test_query_language(found: Any, text: str, expected: set[str]) -> None:
    assert found(SearchQuery(text=text)) == expected


def test_tags_search_matches_the_tags_table(found: Any) -> None:
    con = found.con
    for tag, in con.execute("SELECT DISTINCT tag FROM tags").fetchall():
        want = {r[0] for r in con.execute(
            "SELECT f.path FROM files f JOIN tags t ON t.hash = f.hash WHERE t.tag = ?", (tag,))}
        got = {r["path"] for r in search(con, SearchQuery(tags=(tag,))).records}
        assert got == want and got
        assert {r["path"] for r in search(con, SearchQuery(text=f"tag:{tag}")).records} == want


def test_near_duplicates_of_a_file(found: Any, indexed: tuple[Path, Path, dict[str, Any]],
                                   tmp_path: Path) -> None:
    p = indexed[2]["paths"]
    assert found(near_duplicates_of=p["dog24"], near_threshold=6) == {"near"}
    assert found(near_duplicates_of=p["dog23"], near_threshold=0) == {"copy"}
    outside = tmp_path / "outside.jpg"  # a file that is not in the index is hashed on the fly
    outside.write_bytes(Path(p["near"]).read_bytes())
    assert found(near_duplicates_of=str(outside), near_threshold=6) == {"dog24", "near"}
    with pytest.raises(ConfigError, match="cannot read it as a photo"):
        found(near_duplicates_of=p["text"])


def test_records_carry_path_fields_objects_tags(found: Any) -> None:
    result = search(found.con, SearchQuery(objects=("dog",), limit=3))
    assert len(result.records) == 3 and result.total == 12
    r = result.records[0]
    for key in ("path", "date", "kind", "width", "height", "camera_model", "sharpness",
                "objects", "tags", "hash"):
        assert key in r
    assert r["objects"]["dog"] >= 1
    page2 = search(found.con, SearchQuery(objects=("dog",), limit=3, offset=3))
    assert not {x["path"] for x in page2.records} & {x["path"] for x in result.records}


def test_bad_query_words_are_config_errors(found: Any) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        parse_query("colour:red", found.con)
    with pytest.raises(ConfigError, match="date"):
        search(found.con, SearchQuery(after="last tuesday"))


def test_label_pages_are_the_same_by_either_plan(found: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    search_module = importlib.import_module("detforge.library.search")

    queries = [SearchQuery(objects=("dog",), limit=4), SearchQuery(objects=("dog",), limit=4,
                                                                   offset=4),
               SearchQuery(text="dogs 2024", limit=3)]
    sorted_pages = [search(found.con, q) for q in queries]
    monkeypatch.setattr(search_module, "_FEW", 0)  # force the index scan
    scanned = [search(found.con, q) for q in queries]
    for a, b in zip(sorted_pages, scanned, strict=True):
        assert a.total == b.total
        assert [r["path"] for r in a.records] == [r["path"] for r in b.records]
