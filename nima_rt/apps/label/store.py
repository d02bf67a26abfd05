"""The ratings store: registering the images folder, the rule that decides which photo a rater sees
next, ratings, skips, undo and the counts the page shows. The tables are described in
:mod:`nima_rt.apps.label.database`; request values are checked by :mod:`nima_rt.apps.label.checks`.

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

from nima_rt.apps.label.checks import (
    LabelError,
    RequestError,
    check_image_id,
    check_score,
    is_inside,
    normalise_rater,
)
from nima_rt.apps.label.database import connect
from nima_rt.io.inputs import iter_inputs

DEFAULT_RATINGS_PER_IMAGE = 3
DEFAULT_LEASE_SECONDS = 600.0

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
        read_only: bool = False,
    ) -> Store:
        """Open the database at ``path``; with ``create`` (default) a missing file is created; ``read_only``
        (the export) never writes to it, so a database the user cannot write is still read."""
        path = Path(path)
        return cls(connect(path, create and not read_only, read_only), path, ratings_per_image, lease_seconds, clock)

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

    def image_by_id(self, image_id: int) -> ImageRef | None:
        """The present image with this id, or None."""
        with self._lock:
            row = self._db.execute("SELECT id, path FROM images WHERE id = ? AND present = 1", (image_id,)).fetchone()
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
