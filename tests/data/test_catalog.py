from __future__ import annotations

import contextlib
import importlib.util
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from detforge.core.errors import DatasetError
from detforge.data.catalog import Catalog, CatalogError, default_catalog_path
from detforge.data.formats import write_dataset
from detforge.data.synth import generate

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("detforge.data.formats.yolo") is None,
    reason="yolo format not written yet")


def _write(root: Path, *, seed: int = 0, images: int = 8) -> Path:
    """A small YOLO dataset at ``root / "ds"``."""
    ds = generate(root / "render", images=images, classes=3, seed=seed)
    write_dataset(ds, root / "ds", "yolo")
    return root / "ds"


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "cat" / "catalog.sqlite")


def test_add_records_counts_and_findings(tmp_path: Path, catalog: Catalog) -> None:
    path = _write(tmp_path)
    e = catalog.add(path, name="shapes", source="unit test", licence="CC0-1.0")
    assert (e.name, e.format, e.source, e.licence) == ("shapes", "yolo", "unit test", "CC0-1.0")
    assert len(e.version) == 16 and e.digest.startswith(e.version)
    assert e.path == str(path.resolve())
    assert e.num_images == 8 and e.classes == ["circle", "square", "triangle"]
    assert sum(e.class_counts.values()) == e.num_boxes
    assert sum(c["images"] for c in e.split_counts.values()) == 8
    assert set(e.split_counts) == {"train", "val"}
    if importlib.util.find_spec("detforge.data.validate") is None:
        assert e.findings_summary is None and e.findings is None
    else:
        assert e.findings_summary is not None and e.findings is not None
        assert e.findings_summary.get("error", 0) == 0
        assert sum(e.findings_summary.values()) == len(e.findings)
    assert catalog.list() == [e]


def test_re_adding_is_idempotent_and_versions_accumulate(tmp_path: Path,
                                                         catalog: Catalog) -> None:
    first = catalog.add(_write(tmp_path / "a"), name="shapes")
    again = catalog.add(tmp_path / "a" / "ds", name="shapes", licence="CC0-1.0")
    assert again.version == first.version and again.added == first.added
    assert again.licence == "CC0-1.0"  # given fields are refreshed
    assert len(catalog.list()) == 1
    second = catalog.add(_write(tmp_path / "b", seed=1), name="shapes")
    other = catalog.add(tmp_path / "a" / "ds", name="other")
    assert second.version != first.version and other.version == first.version
    assert [(e.name, e.version) for e in catalog.list()] == [
        ("other", first.version), ("shapes", first.version), ("shapes", second.version)]


def test_show_by_name_version_and_prefix(tmp_path: Path, catalog: Catalog) -> None:
    first = catalog.add(_write(tmp_path / "a"), name="shapes")
    second = catalog.add(_write(tmp_path / "b", seed=1), name="shapes")
    assert catalog.show("shapes") == second  # latest version of a name
    assert catalog.show(f"shapes@{first.version}") == first
    assert catalog.show(first.version) == first
    assert catalog.show(second.digest[:6]) == second
    assert catalog.show(second.digest) == second


@pytest.mark.parametrize(("key", "match"), [
    ("nope", r"no dataset 'nope'.*known names: \['shapes'\]"),
    ("shapes@ffffffff", "no dataset"),
    ("abc", "no dataset"),
], ids=["unknown-name", "unknown-version", "short-prefix"])
def test_show_unknown_lists_known_names(tmp_path: Path, catalog: Catalog, key: str,
                                        match: str) -> None:
    catalog.add(_write(tmp_path), name="shapes")
    with pytest.raises(CatalogError, match=match):
        catalog.show(key)


def test_ambiguous_prefix_is_an_error(tmp_path: Path, catalog: Catalog) -> None:
    e = catalog.add(_write(tmp_path), name="shapes")
    twin = e.digest[:8] + ("0" if e.digest[8] != "0" else "1") + e.digest[9:]
    with contextlib.closing(sqlite3.connect(catalog.path)) as conn, conn:
        conn.execute("INSERT INTO datasets SELECT NULL, 'twin', version, ?, path, format, "
                     "source, licence, added, num_images, num_boxes, classes, class_counts, "
                     "split_counts, findings_summary, findings FROM datasets", (twin,))
    with pytest.raises(CatalogError, match="ambiguous"):
        catalog.show(e.digest[:8])
    assert catalog.show(e.digest[:9]).name == "shapes"
    assert catalog.show(twin[:9]).name == "twin"


def test_empty_and_missing_catalogue(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "none.sqlite")
    assert cat.list() == []
    with pytest.raises(CatalogError, match="no catalogue here yet"):
        cat.show("x")
    assert not (tmp_path / "none.sqlite").exists()


def test_corrupt_catalogue_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CatalogError, match="not a usable catalogue file"):
        Catalog(bad).list()


@pytest.mark.parametrize(("path", "expected"), [
    ("missing", pytest.raises(DatasetError)),
    ("ds", contextlib.nullcontext()),
], ids=["missing-dataset", "ok"])
def test_add_errors(tmp_path: Path, catalog: Catalog, path: str, expected: Any) -> None:
    _write(tmp_path)
    with expected:
        catalog.add(tmp_path / path, name="x")


def test_empty_name_is_rejected(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="must not be empty"):
        catalog.add(_write(tmp_path), name=" ")


def test_stored_in_sqlite_with_schema_version(tmp_path: Path, catalog: Catalog) -> None:
    catalog.add(_write(tmp_path), name="shapes")
    with contextlib.closing(sqlite3.connect(catalog.path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1


def test_default_path_follows_detforge_home(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETFORGE_HOME", str(tmp_path / "home"))
    assert default_catalog_path() == tmp_path / "home" / "catalog.sqlite"
    assert Catalog().path == tmp_path / "home" / "catalog.sqlite"
    monkeypatch.delenv("DETFORGE_HOME")
    assert default_catalog_path() == Path.home() / ".detforge" / "catalog.sqlite"
