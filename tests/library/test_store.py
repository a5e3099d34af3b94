"""The SQLite schema: version, migrations, and refusing files it must not touch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from detforge.library import store
from detforge.library.errors import LibraryDatabaseError
from detforge.library.store import APPLICATION_ID, SCHEMA_VERSION, open_store, schema_version


def test_new_index_is_wal_at_the_current_schema(tmp_path: Path) -> None:
    con = open_store(tmp_path / "l.sqlite")
    assert schema_version(con) == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "contents", "detections", "objects", "tags", "tracks",
            "thumbnails", "library_meta"} <= tables
    con.close()
    assert schema_version(open_store(tmp_path / "l.sqlite", readonly=True)) == SCHEMA_VERSION


def test_newer_schema_is_refused_in_one_line_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    open_store(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(LibraryDatabaseError, match="newer detforge") as err:
            open_store(db, readonly=readonly)
        assert "\n" not in str(err.value)
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"not a database at all, just text" * 40, None],
                         ids=["garbage", "foreign-sqlite"])
def test_a_file_that_is_not_an_index_is_refused(tmp_path: Path, content: bytes | None) -> None:
    db = tmp_path / "other.sqlite"
    if content is None:
        raw = sqlite3.connect(db)
        raw.execute("CREATE TABLE notes (x)")
        raw.commit()
        raw.close()
    else:
        db.write_bytes(content)
    with pytest.raises(LibraryDatabaseError, match="not"):
        open_store(db)


def test_readonly_open_of_a_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(LibraryDatabaseError, match="detforge library index"):
        open_store(tmp_path / "none.sqlite", readonly=True)


def test_migrations_upgrade_an_older_index_step_by_step(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "l.sqlite"
    con = open_store(db)
    con.execute("INSERT INTO files (path, kind, size, mtime_ns, first_seen, updated_at) "
                "VALUES ('/a.jpg', 'image', 1, 1, 'x', 'x')")
    con.close()
    step = "ALTER TABLE files ADD COLUMN rating INTEGER; UPDATE files SET rating = 3;"
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS, step])
    monkeypatch.setattr(store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with monkeypatch.context() as m:  # root may write anything: say this user may not
        m.setattr(store.os, "access", lambda *_: False)
        with pytest.raises(LibraryDatabaseError, match="older.*detforge library index ROOT"):
            open_store(db, readonly=True)
    assert schema_version(sqlite3.connect(db)) == SCHEMA_VERSION
    con = open_store(db, readonly=True)  # a user who may write it upgrades it, even to read
    assert schema_version(con) == SCHEMA_VERSION + 1
    assert con.execute("SELECT path, rating FROM files").fetchall() == [("/a.jpg", 3)]
    assert con.execute("SELECT value FROM library_meta WHERE key='schema_version'"
                       ).fetchone()[0] == str(SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM files")


def test_a_failing_migration_leaves_the_last_good_version(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "l.sqlite"
    open_store(db).close()
    monkeypatch.setattr(store, "MIGRATIONS", [*store.MIGRATIONS,
                                              "CREATE TABLE t (x); SELECT * FROM nowhere;"])
    monkeypatch.setattr(store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(LibraryDatabaseError):
        open_store(db)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name='t'").fetchone()[0] == 0
