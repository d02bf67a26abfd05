"""Parquet outputs written resumably: complete part files while the run goes, one file when it ends.

A Parquet file is readable only once its footer is written, so ``-o scores.parquet`` never writes that
file as it goes. Rows go to ``scores.parquet.parts/``: every :data:`PART_ROWS` rows or
:data:`PART_SECONDS` seconds the rows so far become a complete Parquet file there (written under a
temporary name, then renamed), so a killed run keeps all but its last few seconds of rows, each part
readable by pyarrow or pandas. When the run ends, the earlier output (when resuming) and the parts are
copied, in order, into one file that replaces ``scores.parquet`` by a rename; its metadata names the parts
it took in (``nima_rt.parts``), so a run killed between that rename and the removal of the parts never
counts them twice. ``--resume`` reads the paths of the output and of the parts, and goes on.

The run's lock (:mod:`nima_rt.io.scores.output_file`) is an exclusive ``flock`` on the parts folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.io.results import ScoreBatch, ScoreResult
from nima_rt.io.scores.output_file import OutputExists, cannot_write, exists_message, giving_up, lock_exclusive
from nima_rt.io.scores.reader import DonePaths, open_source
from nima_rt.io.scores.rows import RANK_COLUMNS
from nima_rt.io.scores.writers import Carried, OutputError, ParquetWriter, parquet_schema, pyarrow

PARTS_SUFFIX = ".parts"
PART_ROWS = 4096  # rows per part (and per row group of the final file)
PART_SECONDS = 30.0  # a part is also finished this long after its first row: a kill loses at most this much work
MERGED_KEY = b"nima_rt.parts"  # the final file's metadata: the parts it took in (JSON list of names)
_LOCK_TRIES = 5


def parts_folder(output: str | os.PathLike[str]) -> Path:
    """Where a Parquet output's parts wait: ``<output>.parts`` beside it."""
    output = Path(output)
    return output.with_name(output.name + PARTS_SUFFIX)


class ParquetClaim:
    """A Parquet output held by this run: its parts folder, locked through ``fd``."""

    def __init__(self, path: Path, folder: Path, fd: int) -> None:
        self.path, self.folder, self.fd = path, folder, fd

    def parts(self) -> list[Path]:
        """The complete parts, oldest first (their names sort by creation time)."""
        return sorted(self.folder.glob("part-*.parquet"))

    def release(self) -> None:
        """Give the output up: its folder goes when it holds no part (a finished run, or one that wrote none),
        then the lock."""
        if self.fd < 0:
            return
        try:
            self.folder.rmdir()
        except OSError:
            pass  # it holds parts (kept for --resume) or is already gone
        os.close(self.fd)
        self.fd = -1


def claim_parquet(path: str | os.PathLike[str], resume: bool, overwrite: bool) -> ParquetClaim:
    """Lock ``path``'s parts folder (made if missing), then: drop parts an earlier run already merged and
    its temporary files; refuse (:class:`OutputExists`) an output or parts holding rows when neither
    ``resume`` nor ``overwrite`` was asked; for ``overwrite`` remove them. Raises OutputError (one line)."""
    pyarrow()  # the missing extra is said before anything is made
    claim = _lock_folder(Path(path))
    with giving_up(claim.release, path):
        _drop_merged_parts(claim)
        for temporary in claim.folder.glob(".*.tmp"):
            temporary.unlink()
        holds = [what for what, present in ((f"{claim.path.name}", _has_data(claim.path)),
                                            (f"{len(claim.parts())} part(s) in {claim.folder.name}",
                                             bool(claim.parts()))) if present]
        if holds and not resume and not overwrite:
            raise OutputExists(exists_message(claim.path, "exists (" + " and ".join(holds) + ")"))
        if overwrite:
            claim.path.unlink(missing_ok=True)
            for part in claim.parts():
                part.unlink()
    return claim


def _lock_folder(path: Path) -> ParquetClaim:
    folder = parts_folder(path)
    for _ in range(_LOCK_TRIES):
        try:
            folder.mkdir(exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            continue  # removed by a run that was just finishing: make it again
        except OSError as exc:
            raise cannot_write(folder, exc) from None
        try:
            lock_exclusive(fd, path)
            if os.stat(folder).st_ino == os.fstat(fd).st_ino:
                return ParquetClaim(path, folder, fd)
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the folder was removed (and maybe made again) while we waited for it: take the new one
    raise OutputError(f"{path}: cannot lock the output (its parts folder {folder.name} keeps changing)")


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _merged_parts(path: Path) -> set[str]:
    """The parts a finished output says it took in (none when it is missing or unreadable)."""
    if not _has_data(path):
        return set()
    try:
        metadata = pyarrow().parquet.read_schema(path).metadata or {}
        return set(json.loads(metadata.get(MERGED_KEY, b"[]")))
    except Exception:  # noqa: BLE001 - an unreadable output is reported where it is read (resume) or replaced
        return set()


def _drop_merged_parts(claim: ParquetClaim) -> None:
    """Parts already copied into the output (a run killed after its final rename) are removed."""
    merged = _merged_parts(claim.path)
    for part in claim.parts():
        if part.name in merged:
            part.unlink()


def parquet_done_paths(claim: ParquetClaim, columns: Sequence[str], carried: Sequence[str] = (),
                       ranked: bool = False) -> DonePaths:
    """The paths (as written) in the output and its parts, for ``--resume``: every file must be readable and
    hold this run's columns (the model ``columns``, then ``carried``, then, with ``ranked``, the ranking
    columns of a ranked run that ended: those rows appended leave empty). OutputError otherwise."""
    files = ([claim.path] if _has_data(claim.path) else []) + claim.parts()
    pa = pyarrow()
    done: set[str] = set()
    ranks: list[str] = []
    for index, file in enumerate(files):
        try:
            schema = pa.parquet.read_schema(file)
        except Exception as exc:  # noqa: BLE001 - pyarrow's own error types for a damaged file
            raise OutputError(f"{file}: cannot resume, not a readable Parquet file ({one_line(exc)}); "
                              "--overwrite replaces it") from None
        names = schema.names
        if index == 0:
            ranks = [name for name in names if name in RANK_COLUMNS] if ranked else []
        expected = parquet_schema(columns, tuple(carried) + tuple(ranks))
        if not schema.equals(expected, check_metadata=False):
            raise OutputError(f"{file}: cannot resume, its columns ({', '.join(names[:4])}...) are not this run's "
                              f"({', '.join(expected.names[:4])}...)")
        done.update(open_source(file, fmt="parquet").cells())
    return DonePaths(done, csv_cells=False, ranked=ranks)


class ResumableParquetWriter:
    """Rows of a claimed Parquet output (:func:`claim_parquet`) as parts, merged into the output by
    :meth:`close`; :meth:`abort` keeps the finished parts for ``--resume``. Neither releases the claim
    (``claim.release()``: the run may still need the output to itself)."""

    def __init__(self, claim: ParquetClaim, columns: list[str], extra: tuple[str, ...] | list[str] = (),
                 part_rows: int | None = None, part_seconds: float | None = None) -> None:
        self.claim, self.columns, self.extra = claim, list(columns), list(extra)
        self.part_rows = part_rows or PART_ROWS
        self.part_seconds = PART_SECONDS if part_seconds is None else part_seconds
        self.part: ParquetWriter | None = None
        self.part_path = Path()
        self.part_count = 0
        self.part_started = 0.0

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None:
        self._open_part().write_batch(batch, carried)
        self._count(len(batch))

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None:
        self._open_part().write(result, extra)
        self._count(1)

    def _open_part(self) -> ParquetWriter:
        if self.part is None:
            self.part_path = self.claim.folder / f".part-{time.time_ns():020d}-{os.getpid()}.parquet.tmp"
            self.part = ParquetWriter(str(self.part_path), self.columns, self.extra, group_rows=self.part_rows)
            self.part_started, self.part_count = time.monotonic(), 0
        return self.part

    def _count(self, rows: int) -> None:
        self.part_count += rows
        if self.part_count >= self.part_rows or time.monotonic() - self.part_started >= self.part_seconds:
            self._finish_part()

    def _finish_part(self) -> None:
        """The part so far becomes a complete file under its final name (``part-<time>-<pid>.parquet``)."""
        if self.part is None:
            return
        part, self.part = self.part, None
        part.close()
        os.replace(self.part_path, self.part_path.with_name(self.part_path.name[1 : -len(".tmp")]))

    def close(self) -> None:
        """Finish the last part, then replace the output with the earlier output's rows and every part's, in
        order, and remove the parts."""
        self._finish_part()
        parts = self.claim.parts()
        merged = self.claim.folder / f".merged-{os.getpid()}.parquet.tmp"
        pa = pyarrow()
        schema = parquet_schema(self.columns, self.extra)
        schema = schema.with_metadata({MERGED_KEY: json.dumps([p.name for p in parts]).encode()})
        sources = ([self.claim.path] if _has_data(self.claim.path) else []) + parts
        try:
            with pa.parquet.ParquetWriter(merged, schema) as writer:
                for source in sources:
                    for batch in pa.parquet.ParquetFile(source).iter_batches(batch_size=self.part_rows):
                        writer.write_batch(batch.replace_schema_metadata(), row_group_size=self.part_rows)
            os.replace(merged, self.claim.path)
        except BaseException:
            merged.unlink(missing_ok=True)
            raise
        for part in parts:
            part.unlink()

    def abort(self) -> None:
        """Drop the unfinished part; finished parts stay for ``--resume``. Never raises."""
        part, self.part = self.part, None
        if part is not None:
            part.abort()
            try:
                self.part_path.unlink(missing_ok=True)
            except OSError:
                pass  # a temporary name: the next claim of this output removes it
