"""The ratings database (SQLite, WAL) and the rule that decides which photo a rater sees next.

Tables (``ratings.score`` NULL means the rater skipped the image):

- ``meta(key, value)``: schema version, images folder, ratings per image last served with;
- ``images(id, path, position, present)``: ``path`` relative to the images folder, POSIX separators;
  ``position`` a stable pseudo-random order (hash of the path) so neighbouring files of one shoot or
  listing are not shown back to back; ``present`` 0 when the file was gone at the last scan;
- ``raters(id, name, created)``: names compare case-insensitively (ASCII), so "Ann" and "ann" are
  one rater and cannot both rate a photo;
- ``ratings(id, rater_id, image_id, score, created)``, unique per (rater, image): a rater never sees
  an image twice, whether they rated or skipped it;
- ``leases(rater_id, image_id, since)``: the image a rater is looking at now. A live lease counts
  towards the image's K, so two raters are not both sent the image's last missing rating.

Every change is one transaction committed before the call returns, with ``synchronous=FULL``:
killing the server (even SIGKILL) loses nothing that was acknowledged. One :class:`Store` serialises
its calls with a lock, so the threaded server can share it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nima_rt.io.inputs import iter_inputs

SCHEMA = "nima-rt-ratings/1"
DEFAULT_RATINGS_PER_IMAGE = 3
DEFAULT_LEASE_SECONDS = 600.0
MAX_RATER_NAME = 64

_TABLES = """
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

# Images this rater has not answered whose ratings plus other raters' live leases are below K;
# the ones closest to K first (so complete images accumulate), then in the shuffled order.
_NEXT_IMAGE = """
SELECT i.id, i.path FROM images AS i
WHERE i.present = 1
  AND NOT EXISTS (SELECT 1 FROM ratings AS r WHERE r.image_id = i.id AND r.rater_id = :rater)
  AND (SELECT COUNT(*) FROM ratings AS r WHERE r.image_id = i.id AND r.score IS NOT NULL)
      + (SELECT COUNT(*) FROM leases AS l
         WHERE l.image_id = i.id AND l.rater_id != :rater AND l.since > :cutoff) < :k
ORDER BY (SELECT COUNT(*) FROM ratings AS r WHERE r.image_id = i.id AND r.score IS NOT NULL) DESC,
         i.position, i.id
LIMIT 1
"""


class LabelError(Exception):
    """A ratings database or images folder cannot be used; ``str()`` is a one-line reason."""


class RequestError(LabelError):
    """A rater's request cannot be honoured; ``status`` is the HTTP status it maps to (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageRef:
    """One image of the set: database id and path relative to the images folder (POSIX)."""

    id: int
    path: str


@dataclass(frozen=True)
class ScanResult:
    """What :meth:`Store.sync_images` found in the images folder."""

    found: int
    added: int
    missing: int
    outside: int  # symlinks that resolve outside the folder, never served


@dataclass(frozen=True)
class RaterProgress:
    """Counts shown on the page: the rater's own, and the whole set's."""

    rated: int  # images this rater scored
    skipped: int  # images this rater skipped
    remaining: int  # images this rater could still be sent (not answered, fewer than K ratings)
    images: int  # images present in the folder
    complete: int  # images with at least K ratings
    ratings: int  # scores given by everyone
    ratings_per_image: int


def _utc_now(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), timezone.utc).isoformat(timespec="seconds")


def _position(path: str) -> int:
    return int.from_bytes(hashlib.sha256(path.encode("utf-8")).digest()[:6], "big")


def normalise_rater(name: object) -> str:
    """The rater name as stored: whitespace collapsed, 1..64 printable characters."""
    if not isinstance(name, str):
        raise RequestError(400, "rater must be a string")
    text = " ".join(name.split())
    if not text:
        raise RequestError(400, "rater name is empty")
    if len(text) > MAX_RATER_NAME:
        raise RequestError(400, f"rater name is longer than {MAX_RATER_NAME} characters")
    if not text.isprintable():
        raise RequestError(400, "rater name has unprintable characters")
    return text


def check_score(score: object) -> int:
    """A score must be an integer 1..10 (JSON booleans and floats are refused)."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 10:
        raise RequestError(400, f"score must be an integer from 1 to 10, got {score!r}")
    return score


def check_image_id(image_id: object) -> int:
    if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id < 1:
        raise RequestError(400, f"image_id must be a positive integer, got {image_id!r}")
    return image_id


class Store:
    """The ratings database; open it with :meth:`open`."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        ratings_per_image: int = DEFAULT_RATINGS_PER_IMAGE,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ratings_per_image < 1:
            raise LabelError(f"ratings per image must be at least 1, got {ratings_per_image}")
        self.path = path
        self.ratings_per_image = ratings_per_image
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._db = connection
        self._lock = threading.Lock()

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        ratings_per_image: int = DEFAULT_RATINGS_PER_IMAGE,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> Store:
        """Open the database at ``path``; with ``create`` (default) a missing file is created."""
        path = Path(path)
        if path.is_dir():
            raise LabelError(f"{path}: is a folder, expected a ratings database file")
        if not create and not path.is_file():
            raise LabelError(f"{path}: no such ratings database")
        if create and not path.parent.is_dir():
            raise LabelError(f"{path}: folder {path.parent} does not exist")
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise LabelError(f"{path}: cannot open ratings database ({exc})") from None
        try:
            cls._prepare(connection, path)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise LabelError(f"{path}: not a usable ratings database ({exc})") from None
        except LabelError:
            connection.close()
            raise
        return cls(connection, path, ratings_per_image, lease_seconds, clock)

    @staticmethod
    def _prepare(connection: sqlite3.Connection, path: Path) -> None:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LabelError(f"{path}: SQLite refused WAL journal mode (got {mode}); use a local disk")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise LabelError(f"{path}: an SQLite file but not a nima-rt ratings database (no meta table)")
        connection.executescript(_TABLES)
        row = connection.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            connection.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA,))
        elif row[0] != SCHEMA:
            raise LabelError(f"{path}: ratings database schema {row[0]!r}, this nima-rt reads {SCHEMA!r}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock, committed (durably) before returning."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- metadata and images -----------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def sync_images(self, images_dir: str | os.PathLike[str]) -> ScanResult:
        """Register the image files under ``images_dir`` (recursively) and mark vanished ones.

        Files whose real path lies outside the folder (symlinks pointing out) are left out.
        """
        root = os.path.realpath(images_dir)
        if not os.path.isdir(root):
            raise LabelError(f"{images_dir}: not a folder of images")
        found: list[str] = []
        outside = 0
        for item in iter_inputs([root]):
            if item.error is not None:
                continue
            if not is_inside(root, item.path) or not os.path.isfile(item.path):
                outside += 1
                continue
            found.append(Path(os.path.relpath(item.path, root)).as_posix())
        with self._transaction() as db:
            before = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            db.execute("UPDATE images SET present = 0")
            db.executemany(
                "INSERT INTO images(path, position, present) VALUES (?, ?, 1) "
                "ON CONFLICT(path) DO UPDATE SET present = 1",
                [(path, _position(path)) for path in found],
            )
            after = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            missing = db.execute("SELECT COUNT(*) FROM images WHERE present = 0").fetchone()[0]
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('images_dir', ?)", (root,))
        return ScanResult(found=len(found), added=after - before, missing=missing, outside=outside)

    def image_by_path(self, path: str) -> ImageRef | None:
        """The present image registered under ``path`` (relative, POSIX), or None."""
        with self._lock:
            row = self._db.execute("SELECT id, path FROM images WHERE path = ? AND present = 1", (path,)).fetchone()
        return None if row is None else ImageRef(int(row[0]), str(row[1]))

    # -- raters and ratings ------------------------------------------------------------------

    def _rater_id(self, db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT id FROM raters WHERE name=?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        cursor = db.execute("INSERT INTO raters(name, created) VALUES (?, ?)", (name, _utc_now(self._clock)))
        return int(cursor.lastrowid or 0)

    def _present_image(self, db: sqlite3.Connection, image_id: int) -> ImageRef:
        row = db.execute("SELECT id, path FROM images WHERE id=? AND present=1", (image_id,)).fetchone()
        if row is None:
            raise RequestError(404, f"no image with id {image_id}")
        return ImageRef(int(row[0]), str(row[1]))

    def _lease(self, db: sqlite3.Connection, rater_id: int, image_id: int) -> None:
        db.execute(
            "INSERT OR REPLACE INTO leases(rater_id, image_id, since) VALUES (?, ?, ?)",
            (rater_id, image_id, self._clock()),
        )

    def next_image(self, rater: str) -> ImageRef | None:
        """The image this rater should rate now (the same one until they answer), or None when done."""
        name = normalise_rater(rater)
        cutoff = self._clock() - self.lease_seconds
        with self._transaction() as db:
            rater_id = self._rater_id(db, name)
            lease = db.execute(
                "SELECT i.id, i.path FROM leases AS l JOIN images AS i ON i.id = l.image_id "
                "WHERE l.rater_id = ? AND l.since > ? AND i.present = 1 AND NOT EXISTS "
                "(SELECT 1 FROM ratings AS r WHERE r.rater_id = l.rater_id AND r.image_id = l.image_id)",
                (rater_id, cutoff),
            ).fetchone()
            if lease is not None:
                return ImageRef(int(lease[0]), str(lease[1]))
            row = db.execute(_NEXT_IMAGE, {"rater": rater_id, "cutoff": cutoff, "k": self.ratings_per_image}).fetchone()
            if row is None:
                db.execute("DELETE FROM leases WHERE rater_id = ?", (rater_id,))
                return None
            self._lease(db, rater_id, int(row[0]))
            return ImageRef(int(row[0]), str(row[1]))

    def _answer(self, rater: str, image_id: object, score: int | None) -> ImageRef:
        name = normalise_rater(rater)
        image = check_image_id(image_id)
        with self._transaction() as db:
            rater_id = self._rater_id(db, name)
            ref = self._present_image(db, image)
            try:
                db.execute(
                    "INSERT INTO ratings(rater_id, image_id, score, created) VALUES (?, ?, ?, ?)",
                    (rater_id, image, score, _utc_now(self._clock)),
                )
            except sqlite3.IntegrityError:
                raise RequestError(409, f"rater {name!r} already answered image {image}") from None
            db.execute("DELETE FROM leases WHERE rater_id = ? AND image_id = ?", (rater_id, image))
        return ref

    def rate(self, rater: str, image_id: object, score: object) -> ImageRef:
        """Record ``score`` (1..10) from ``rater`` for the image; committed when this returns."""
        return self._answer(rater, image_id, check_score(score))

    def skip(self, rater: str, image_id: object) -> ImageRef:
        """Record that ``rater`` skipped the image: they are not sent it again; it needs others' ratings."""
        return self._answer(rater, image_id, None)

    def undo(self, rater: str) -> ImageRef:
        """Remove the rater's latest rating or skip and make that image their current one again."""
        name = normalise_rater(rater)
        with self._transaction() as db:
            rater_id = self._rater_id(db, name)
            row = db.execute(
                "SELECT r.id, i.id, i.path FROM ratings AS r JOIN images AS i ON i.id = r.image_id "
                "WHERE r.rater_id = ? ORDER BY r.id DESC LIMIT 1",
                (rater_id,),
            ).fetchone()
            if row is None:
                raise RequestError(409, f"rater {name!r} has nothing to undo")
            db.execute("DELETE FROM ratings WHERE id = ?", (row[0],))
            self._lease(db, rater_id, int(row[1]))
        return ImageRef(int(row[1]), str(row[2]))

    def progress(self, rater: str) -> RaterProgress:
        """The counts the page shows for ``rater``."""
        name = normalise_rater(rater)
        k = self.ratings_per_image
        with self._lock:
            db = self._db
            rater_row = db.execute("SELECT id FROM raters WHERE name=?", (name,)).fetchone()
            rater_id = -1 if rater_row is None else int(rater_row[0])
            rated, skipped = db.execute(
                "SELECT COALESCE(SUM(score IS NOT NULL), 0), COALESCE(SUM(score IS NULL), 0) "
                "FROM ratings WHERE rater_id = ?",
                (rater_id,),
            ).fetchone()
            counts = "(SELECT COUNT(*) FROM ratings AS r WHERE r.image_id = i.id AND r.score IS NOT NULL)"
            images, complete = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({counts} >= ?), 0) FROM images AS i WHERE i.present = 1", (k,)
            ).fetchone()
            remaining = db.execute(
                f"SELECT COUNT(*) FROM images AS i WHERE i.present = 1 AND {counts} < ? AND NOT EXISTS "
                "(SELECT 1 FROM ratings AS r WHERE r.image_id = i.id AND r.rater_id = ?)",
                (k, rater_id),
            ).fetchone()[0]
            ratings = db.execute(
                "SELECT COUNT(*) FROM ratings AS r JOIN images AS i ON i.id = r.image_id "
                "WHERE r.score IS NOT NULL AND i.present = 1"
            ).fetchone()[0]
        return RaterProgress(
            rated=int(rated),
            skipped=int(skipped),
            remaining=int(remaining),
            images=int(images),
            complete=int(complete),
            ratings=int(ratings),
            ratings_per_image=k,
        )

    def query(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run a read-only query under the store's lock (used by the export)."""
        with self._lock:
            return [tuple(row) for row in self._db.execute(sql, parameters).fetchall()]


def is_inside(root: str, path: str) -> bool:
    """True when the real path of ``path`` lies inside ``root`` (a real path itself)."""
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([root, real]) == root and real != root
    except ValueError:  # different drives on Windows
        return False


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_RATINGS_PER_IMAGE",
    "ImageRef",
    "LabelError",
    "RaterProgress",
    "RequestError",
    "ScanResult",
    "Store",
    "check_image_id",
    "check_score",
    "is_inside",
    "normalise_rater",
]
