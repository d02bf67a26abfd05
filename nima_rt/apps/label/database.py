"""The ratings database file: its tables, and opening it for the server (read-write, created when
missing) or for an export (read-only: a database the exporting user cannot write is read, never changed).

Tables (``ratings.score`` NULL means the rater skipped the image):

- ``meta(key, value)``: schema version, images folder;
- ``images(id, path, position, present)``: ``path`` relative to the images folder, POSIX separators;
  ``position`` a stable pseudo-random order (hash of the path) so neighbouring files of one shoot or
  listing are not shown back to back; ``present`` 0 when the file was gone at the last scan;
- ``raters(id, name, created)``: names compare case-insensitively (ASCII), so "Ann" and "ann" are
  one rater and cannot both rate a photo;
- ``ratings(id, rater_id, image_id, score, created)``, unique per (rater, image): a rater never sees
  an image twice, whether they rated or skipped it;
- ``leases(rater_id, image_id, since)``: the image a rater is looking at now. A live lease counts
  towards the image's K, so two raters are not both sent the image's last missing rating.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from nima_rt.apps.label.checks import LabelError

SCHEMA = "nima-rt-ratings/1"

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL,
    present INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    score INTEGER CHECK (score IS NULL OR score BETWEEN 1 AND 10),
    created TEXT NOT NULL,
    UNIQUE (rater_id, image_id)
);
CREATE INDEX IF NOT EXISTS ratings_by_image ON ratings(image_id);
CREATE TABLE IF NOT EXISTS leases (
    rater_id INTEGER PRIMARY KEY REFERENCES raters(id),
    image_id INTEGER NOT NULL REFERENCES images(id),
    since REAL NOT NULL
);
"""


def connect(path: Path, create: bool, read_only: bool) -> sqlite3.Connection:
    """An open, checked connection to the ratings database at ``path``.

    ``read_only``: opened with SQLite's ``mode=ro`` (nothing is written, not even the schema; a database
    in a folder the user cannot write is read with ``immutable=1`` when ``mode=ro`` cannot open its
    shared-memory file). Otherwise WAL journal, ``synchronous=FULL``, tables created when missing.
    """
    if path.is_dir():
        raise LabelError(f"{path}: is a folder, expected a ratings database file")
    if (read_only or not create) and not path.is_file():
        raise LabelError(f"{path}: no such ratings database")
    if create and not path.parent.is_dir():
        raise LabelError(f"{path}: folder {path.parent} does not exist")
    try:
        connection = _open(path, read_only)
    except sqlite3.Error as exc:
        raise LabelError(f"{path}: cannot open ratings database ({exc})") from None
    try:
        _check(connection, path) if read_only else _prepare(connection, path)
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise LabelError(f"{path}: not a usable ratings database ({exc})") from None
    except LabelError:
        connection.close()
        raise
    return connection


def _open(path: Path, read_only: bool) -> sqlite3.Connection:
    options = {"isolation_level": None, "check_same_thread": False, "timeout": 10.0}
    if not read_only:
        return sqlite3.connect(path, **options)  # type: ignore[arg-type]
    uri = "file:" + quote(str(path.resolve()))
    connection = sqlite3.connect(uri + "?mode=ro", uri=True, **options)  # type: ignore[arg-type]
    try:
        connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError:  # WAL database, -shm missing and the folder not writable
        connection.close()
        return sqlite3.connect(uri + "?immutable=1", uri=True, **options)  # type: ignore[arg-type]


def _check(connection: sqlite3.Connection, path: Path) -> None:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        raise LabelError(f"{path}: an SQLite file but not a nima-rt ratings database (no meta table)")
    row = connection.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None or row[0] != SCHEMA:
        raise LabelError(f"{path}: ratings database schema {None if row is None else row[0]!r}, "
                         f"this nima-rt reads {SCHEMA!r}")


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LabelError(f"{path}: SQLite refused WAL journal mode (got {mode}); use a local disk")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "meta" not in tables:
        raise LabelError(f"{path}: an SQLite file but not a nima-rt ratings database (no meta table)")
    connection.executescript(TABLES)
    row = connection.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        connection.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA,))
    elif row[0] != SCHEMA:
        raise LabelError(f"{path}: ratings database schema {row[0]!r}, this nima-rt reads {SCHEMA!r}")


__all__ = ["SCHEMA", "TABLES", "connect"]
