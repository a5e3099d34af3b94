"""The SQLite index: schema, migrations and connections.

One database file (WAL journal) holds a whole library. The analysis of a file's *content*
is keyed by the SHA-256 of its bytes, so a moved or renamed file keeps it and two copies
share it; *files* are rows keyed by path that point at their content. The schema is
documented in docs/decisions/0030-library-storage.md.

``PRAGMA application_id`` marks the file as a detforge library index and ``PRAGMA
user_version`` holds the schema version. Opening a database upgrades it through
:data:`MIGRATIONS`, in one transaction per step; a database written by a newer detforge
(a version above :data:`SCHEMA_VERSION`) is refused with a one-line error, never touched.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from detforge.library.errors import LibraryDatabaseError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "open_store", "schema_version"]

APPLICATION_ID = 0x64664C42  # "dfLB"

_V1 = """
CREATE TABLE library_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE contents (
    hash          TEXT PRIMARY KEY,   -- SHA-256 of the bytes, hex
    kind          TEXT NOT NULL,      -- image | video
    format        TEXT NOT NULL,      -- file suffix without the dot: jpg, heic, dng, mp4, ...
    width         INTEGER,            -- upright pixels of the original
    height        INTEGER,
    taken_at      TEXT,               -- EXIF local date-time, ISO 8601
    tz            TEXT,               -- EXIF offset, +HH:MM
    camera_make   TEXT,
    camera_model  TEXT,
    lens          TEXT,
    orientation   INTEGER,
    gps_lat       REAL,
    gps_lon       REAL,
    gps_alt       REAL,
    iso           INTEGER,
    exposure_time REAL,
    f_number      REAL,
    focal_length  REAL,
    sharpness     REAL,               -- quality measures: see detforge.library.quality
    brightness    REAL,
    dark_clip     REAL,
    bright_clip   REAL,
    noise         REAL,
    phash         INTEGER,            -- 64-bit perceptual hash, signed
    duration_s    REAL,               -- videos
    fps           REAL,
    codec         TEXT,
    frame_count   INTEGER,
    video_summary TEXT,               -- JSON: objects over time, tracks
    phases        TEXT NOT NULL,      -- comma list of the phases done
    objects_model TEXT,               -- model that found the objects
    tags_model    TEXT,               -- tagger that chose the tags
    analysed_at   TEXT NOT NULL
);
CREATE TABLE files (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,   -- absolute
    hash       TEXT,                   -- contents.hash; NULL when never readable or 'other'
    kind       TEXT NOT NULL,          -- image | video | other
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    date       TEXT,                   -- taken_at, else the file's mtime (local ISO 8601)
    camera     TEXT,                   -- copies of the content's search columns, so a
    sharpness  REAL,                   -- search or a count needs no join
    error      TEXT,                   -- why the file could not be analysed, or NULL
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX files_hash ON files(hash);
-- covering indexes of searchable files: newest first (a search scans it alone, never the
-- table), and by content (object and tag filters probe it alone)
CREATE INDEX files_search ON files(date DESC, path, kind, camera, sharpness, hash)
    WHERE error IS NULL AND kind != 'other';
CREATE INDEX files_by_content ON files(hash, date, camera, sharpness, kind)
    WHERE error IS NULL AND kind != 'other';
CREATE TABLE detections (
    hash     TEXT NOT NULL,
    frame    INTEGER NOT NULL,         -- -1 for a photo; the frame index in a video
    t        REAL,                     -- seconds into the video
    label    TEXT NOT NULL,
    score    REAL NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,  -- original px
    track_id INTEGER
);
CREATE INDEX detections_hash ON detections(hash, frame);
CREATE TABLE objects (                 -- one row per (content, label): what search reads
    label     TEXT NOT NULL,
    hash      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    max_score REAL NOT NULL,
    PRIMARY KEY (label, hash)
) WITHOUT ROWID;
CREATE INDEX objects_hash ON objects(hash);
CREATE TABLE tags (
    tag   TEXT NOT NULL,
    hash  TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (tag, hash)
) WITHOUT ROWID;
CREATE INDEX tags_hash ON tags(hash);
CREATE TABLE tracks (
    hash        TEXT NOT NULL,
    track_id    INTEGER NOT NULL,
    label       TEXT NOT NULL,
    first_t     REAL NOT NULL,
    last_t      REAL NOT NULL,
    frames      INTEGER NOT NULL,
    max_score   REAL NOT NULL,
    PRIMARY KEY (hash, track_id)
) WITHOUT ROWID;
CREATE TABLE thumbnails (
    hash TEXT PRIMARY KEY,
    jpeg BLOB NOT NULL                 -- long side 256 px
);
"""

# Version 2: `files.dup` marks a readable file that has a copy with a lower id (same
# content), so "one file per content" is a column in the covering indexes rather than a
# probe per file. Triggers keep it in step in the same transaction as any change of a file's
# content, readability or existence; the flags of every file on the old and the new content
# are recomputed (usually one or two rows) and only those that change are written.
_V2 = """
ALTER TABLE files ADD COLUMN dup INTEGER NOT NULL DEFAULT 0;
UPDATE files SET dup = EXISTS (SELECT 1 FROM files g WHERE g.hash = files.hash
    AND g.id < files.id AND g.error IS NULL) WHERE hash IS NOT NULL;
DROP INDEX files_search;
DROP INDEX files_by_content;
CREATE INDEX files_search ON files(date DESC, path, kind, camera, sharpness, dup, hash)
    WHERE error IS NULL AND kind != 'other';
CREATE INDEX files_by_content ON files(hash, date, camera, sharpness, kind, dup)
    WHERE error IS NULL AND kind != 'other';
CREATE TRIGGER files_dup_insert AFTER INSERT ON files WHEN NEW.hash IS NOT NULL BEGIN
    UPDATE files SET dup = 1 - dup WHERE hash = NEW.hash AND dup != EXISTS (SELECT 1
        FROM files g WHERE g.hash = files.hash AND g.id < files.id AND g.error IS NULL);
END;
CREATE TRIGGER files_dup_update AFTER UPDATE OF hash, error ON files BEGIN
    UPDATE files SET dup = 1 - dup WHERE hash IN (OLD.hash, NEW.hash) AND dup != EXISTS (SELECT 1
        FROM files g WHERE g.hash = files.hash AND g.id < files.id AND g.error IS NULL);
END;
CREATE TRIGGER files_dup_delete AFTER DELETE ON files WHEN OLD.hash IS NOT NULL BEGIN
    UPDATE files SET dup = 1 - dup WHERE hash = OLD.hash AND dup != EXISTS (SELECT 1
        FROM files g WHERE g.hash = files.hash AND g.id < files.id AND g.error IS NULL);
END;
"""

#: ``MIGRATIONS[i]`` is the SQL script that upgrades schema version ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(con: sqlite3.Connection) -> int:
    """The schema version stored in an open database."""
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def open_store(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and create or upgrade, unless ``readonly``) a library index.

    Args:
        path: The database file.
        readonly: Open for reading only: the file must exist. An index at an older schema
            is upgraded first when this user can write it.

    Returns:
        A connection in autocommit mode (transactions are explicit ``BEGIN`` / ``COMMIT``),
        WAL journal, ``synchronous=NORMAL``: a killed process loses at most the transaction
        in progress, never the database.

    Raises:
        LibraryDatabaseError: Not a library index, damaged, from a newer detforge, or (read
            only) missing, or at an older schema that this user cannot write.

    Example:
        >>> con = open_store(":memory:")
        >>> schema_version(con) == SCHEMA_VERSION
        True
    """
    name = str(path)
    memory = name == ":memory:"
    if not memory and readonly and not Path(name).is_file():
        raise LibraryDatabaseError(f"{name}: no library index here; build one with "
                                   f"`detforge library index ROOT --db {name}`")
    if not memory and not readonly:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
    try:
        if readonly and not memory:
            con = sqlite3.connect(f"{Path(name).absolute().as_uri()}?mode=ro", uri=True,
                                  check_same_thread=False, timeout=30, isolation_level=None)
        else:
            con = sqlite3.connect(name, check_same_thread=False, timeout=30,
                                  isolation_level=None)
        _check_and_upgrade(con, name, readonly=readonly)
    except _OlderSchema as exc:
        # An index from an older detforge is upgraded once by whoever may write it, even
        # through a read-only open (search, stats, serve): the upgrade changes no data.
        parent = Path(name).absolute().parent
        if exc.version < 1 or not (os.access(name, os.W_OK) and os.access(parent, os.W_OK)):
            raise
        open_store(name).close()
        return open_store(name, readonly=True)
    except sqlite3.DatabaseError as exc:
        raise LibraryDatabaseError(f"{name}: not a readable SQLite database ({exc}); pass "
                                   f"another --db or delete the file to start over") from exc
    return con


class _OlderSchema(LibraryDatabaseError):
    def __init__(self, message: str, *, version: int) -> None:
        super().__init__(message)
        self.version = version


def _check_and_upgrade(con: sqlite3.Connection, name: str, *, readonly: bool) -> None:
    app_id = int(con.execute("PRAGMA application_id").fetchone()[0])
    version = schema_version(con)
    tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (tables or version):
        con.close()
        raise LibraryDatabaseError(f"{name}: an SQLite database, but not a detforge library "
                                   f"index; pass another --db")
    if version > SCHEMA_VERSION:
        con.close()
        raise LibraryDatabaseError(
            f"{name}: schema version {version} was written by a newer detforge (this one "
            f"reads up to {SCHEMA_VERSION}); upgrade detforge or use another --db")
    if not readonly:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=30000")
    if version == SCHEMA_VERSION:
        return
    if readonly:
        con.close()
        raise _OlderSchema(
            f"{name}: schema version {version} is older than {SCHEMA_VERSION} and this user "
            f"cannot write it; upgrade it with `detforge library index ROOT --db {name}` as "
            f"a user who can", version=version)
    for step in range(version, SCHEMA_VERSION):
        # One transaction per step (the version pragma is part of it): a crash or a failing
        # statement leaves the database at the last complete version.
        try:
            con.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\n"
                f"PRAGMA user_version={step + 1};\nPRAGMA application_id={APPLICATION_ID};\n"
                f"INSERT OR REPLACE INTO library_meta VALUES ('schema_version', '{step + 1}');\n"
                f"COMMIT;")
        except sqlite3.Error:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
