"""The output of a distributed run: a folder of Parquet shards plus a run record.

``OUT/part-000042.parquet`` holds the rows of inputs 42*shard_size .. 43*shard_size-1, in input
order, in the same schema as ``nima-rt score --format parquet`` plus a ``<model>_sha256`` column.
A shard is written under a temporary name and renamed when complete, so a file with a final name
is always whole: a re-run skips those shards and redoes the others. ``OUT/_nima_rt_run.json``
ties the folder to one input list, shard size and set of models; a re-run with different ones is
refused rather than mixing rows.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.io.locations import SourceError, is_uri, open_filesystem
from nima_rt.io.results import ScoreBatch
from nima_rt.io.scores.reader import PART_PATTERN, RUN_FILE, part_name, read_table
from nima_rt.io.scores.writers import OutputError, ParquetWriter

TEMP_PREFIX = ".part-"
RECORD_VERSION = 1
RANKED_FILE = "_ranked.parquet"  # the rank step's output inside OUT (a leading _ keeps Parquet readers of OUT off it)


def sha_column(column: str) -> str:
    return f"{column}_sha256"


@dataclass(frozen=True)
class ModelRecord:
    column: str
    name: str
    sha256: str


@dataclass(frozen=True)
class RunRecord:
    """What a shard folder was written for; a resume must match it exactly."""

    inputs: int
    inputs_sha256: str
    shard_size: int
    models: tuple[ModelRecord, ...]
    version: int = RECORD_VERSION
    carried: tuple[str, ...] = ()  # a manifest's columns carried into every shard (absent in older records)

    @property
    def shards(self) -> int:
        return -(-self.inputs // self.shard_size)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> RunRecord:
        try:
            data = json.loads(text)
            models = tuple(ModelRecord(**m) for m in data["models"])
            return cls(int(data["inputs"]), str(data["inputs_sha256"]), int(data["shard_size"]), models,
                       int(data.get("version", 0)), tuple(str(name) for name in data.get("carried", ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"{source}: unreadable run record ({one_line(exc)})") from None

    def mismatch(self, other: RunRecord) -> str | None:
        """Why ``other`` (an existing folder's record) cannot be resumed by this run, or None."""
        if other.version != self.version:
            return f"record version {other.version}, this nima-rt writes {self.version}"
        if (other.inputs, other.inputs_sha256) != (self.inputs, self.inputs_sha256):
            return f"it holds a different input list ({other.inputs} inputs, this run has {self.inputs})"
        if other.carried != self.carried:
            return (f"it carries other manifest columns ({', '.join(other.carried) or 'none'}; this run: "
                    f"{', '.join(self.carried) or 'none'})")
        if other.shard_size != self.shard_size:
            return f"its shard size is {other.shard_size}, this run's is {self.shard_size}"
        if other.models != self.models:
            theirs = ", ".join(f"{m.column}={m.sha256[:12]}" for m in other.models)
            ours = ", ".join(f"{m.column}={m.sha256[:12]}" for m in self.models)
            return f"it was scored by other models ({theirs}; this run: {ours})"
        return None


class ShardStore:
    """A local folder or a URI folder (any pyarrow/fsspec filesystem) holding a run's shards."""

    def __init__(self, output: str) -> None:
        import pyarrow.fs as pafs

        self.output = output
        if is_uri(output):
            try:
                self.fs, root = open_filesystem(output)
            except SourceError as exc:
                raise OutputError(str(exc)) from None
        else:
            self.fs, root = pafs.LocalFileSystem(), os.path.abspath(output)
        self.root = root.rstrip("/") or "/"

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _names(self) -> list[str]:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return [info.base_name for info in infos if info.type == pafs.FileType.File]

    def _write_atomic(self, name: str, data: bytes) -> None:
        temp = self._path(f".{name}.tmp-{uuid.uuid4().hex}")
        with self.fs.open_output_stream(temp) as stream:
            stream.write(data)
        self.fs.move(temp, self._path(name))

    def open_run(self, record: RunRecord) -> set[int]:
        """Create or check the folder; return the shards already complete. Removes stale temp files."""
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.root)
            if info.type == pafs.FileType.File:
                raise OutputError(
                    f"{self.output}: is a file; --engine ray writes a folder of Parquet shards (use a new name)"
                )
            self.fs.create_dir(self.root, recursive=True)
            names = self._names()
            if RUN_FILE in names:
                with self.fs.open_input_stream(self._path(RUN_FILE)) as stream:
                    existing = RunRecord.from_json(stream.read().decode("utf-8"), self._path(RUN_FILE))
                reason = record.mismatch(existing)
                if reason is not None:
                    raise OutputError(f"{self.output}: cannot resume, {reason}; choose a new --output")
            elif any(PART_PATTERN.match(name) for name in names):
                raise OutputError(f"{self.output}: holds part files but no {RUN_FILE}; choose a new --output")
            else:
                self._write_atomic(RUN_FILE, record.to_json().encode("utf-8"))
            for name in names:  # torn shards (.part-*.tmp-*) and a torn ranking (._ranked.parquet.*.tmp*)
                if name.startswith(TEMP_PREFIX) and ".tmp-" in name or name.startswith(f".{RANKED_FILE}."):
                    self.fs.delete_file(self._path(name))
        except OSError as exc:
            raise OutputError(f"{self.output}: cannot use output folder ({one_line(exc)})") from None
        done = set()
        for name in names:
            match = PART_PATTERN.match(name)
            if match and int(match.group(1)) < record.shards:
                done.add(int(match.group(1)))
        return done

    def write_shard(self, shard: int, rows: ScoreBatch, models: Sequence[ModelRecord],
                    carried: dict[str, list[str]] | None = None) -> str:
        """Write one shard's rows (already in input order) and their ``carried`` columns atomically; return its
        location."""
        name = part_name(shard)
        temp = self._path(f".{name}.tmp-{uuid.uuid4().hex}")
        columns = [m.column for m in models]
        constants = {sha_column(m.column): m.sha256 for m in models}
        try:
            with self.fs.open_output_stream(temp) as stream:
                writer = ParquetWriter(stream, columns, tuple(carried or ()), group_rows=max(1, len(rows)),
                                       constants=constants)
                writer.write_batch(rows, carried)
                writer.close()
            self.fs.move(temp, self._path(name))
        except OSError as exc:
            raise OutputError(f"{self.output}: cannot write {name} ({one_line(exc)})") from None
        return self.location(name)

    def location(self, name: str) -> str:
        """Where ``name`` inside the folder is, as the user would write it (a path or a URI)."""
        return self._path(name) if not is_uri(self.output) else f"{self.output.rstrip('/')}/{name}"

    def part_shards(self) -> list[int]:
        """Shard numbers of the complete part files, ascending."""
        return sorted(int(m.group(1)) for m in map(PART_PATTERN.match, self._names()) if m)

    def read(self) -> Any:
        """Every complete shard's rows as one pyarrow Table, in input order (:func:`read_output`)."""
        return read_output(self.output)


def read_output(output: str) -> Any:
    """A distributed run's output folder (local or URI) as one pyarrow Table, in input order: the shards
    written so far (the score-file reader, :func:`nima_rt.io.scores.reader.read_table`)."""
    return read_table(output, partial=True)
