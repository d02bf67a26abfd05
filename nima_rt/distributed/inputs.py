"""What a distributed run scores: folders walked like the single-machine runner, or manifests.

A manifest is a CSV or Parquet file (local or a URI) with a ``path`` column; each entry is a local
path or a URI. Relative entries are resolved against the manifest's folder; the ``path`` column of
the output keeps them exactly as written. Anything else given is walked/listed with
:func:`nima_rt.inputs.iter_inputs`, so folder runs list the same files, in the same order, as
``nima-rt score`` on one machine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from ..inputs import iter_inputs
from .sources import SourceError, is_uri, join_location, open_filesystem, parent_location

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
PATH_COLUMN = "path"
INPUT_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # as the user wrote it: the output's `path`
        pa.field("source", pa.string(), nullable=False),  # what the decode tasks read
        pa.field("error", pa.string()),  # set when the input could not even be listed
    ]
)


class InputError(RuntimeError):
    """An input or manifest cannot be used; ``str()`` names it and says why."""


@dataclass(frozen=True)
class InputList:
    """Every input of a run, in order, and a fingerprint that ties output shards to this list."""

    table: pa.Table  # INPUT_SCHEMA
    fingerprint: str  # sha256 of the newline-joined `path` column

    def __len__(self) -> int:
        return self.table.num_rows


def is_manifest(text: str) -> bool:
    """True when ``text`` names a CSV/Parquet manifest rather than an image or folder."""
    return text.lower().endswith(MANIFEST_SUFFIXES)


def read_manifest(location: str) -> list[str]:
    """The ``path`` column of a CSV/Parquet manifest (local file or URI), empty rows dropped."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if is_uri(location):
            fs, inner = open_filesystem(location)
        else:
            if not os.path.isfile(location):
                raise InputError(f"{location}: no such manifest file")
            fs, inner = None, location
        if location.lower().endswith(".csv"):
            options = pacsv.ConvertOptions(column_types={PATH_COLUMN: pa.string()})
            if fs is None:
                table = pacsv.read_csv(inner, convert_options=options)
            else:
                with fs.open_input_stream(inner) as stream:
                    table = pacsv.read_csv(stream, convert_options=options)
        else:
            table = pq.read_table(inner, filesystem=fs)
    except InputError:
        raise
    except SourceError as exc:
        raise InputError(str(exc)) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{location}: cannot read manifest ({' '.join(str(exc).split())})") from None
    if PATH_COLUMN not in table.column_names:
        found = ", ".join(table.column_names) or "none"
        raise InputError(f"{location}: manifest has no '{PATH_COLUMN}' column (columns: {found})")
    column = table.column(PATH_COLUMN)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        raise InputError(f"{location}: manifest column '{PATH_COLUMN}' must hold strings, found {column.type}")
    return [value for value in column.to_pylist() if value]


def _source_for(path: str, base_dir: str | None) -> str:
    """The location decode tasks read: URIs as is, local paths made absolute (workers' cwd differs)."""
    if is_uri(path):
        return path
    located = join_location(base_dir, path) if base_dir is not None else path
    return located if is_uri(located) else os.path.abspath(located)


def collect_inputs(given: Sequence[str]) -> InputList:
    """Expand folders, files and manifests into the run's ordered input list."""
    paths: list[str] = []
    sources: list[str] = []
    errors: list[str | None] = []
    plain: list[str] = []

    def flush_plain() -> None:
        for item in iter_inputs(plain):
            path, error = item.path, item.error
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:  # a name with bytes that are not UTF-8 cannot go into Arrow/Parquet
                path = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                error = f"{path}: file name is not valid UTF-8 (rename it to score it with --engine ray)"
            paths.append(path)
            sources.append(_source_for(path, None))
            errors.append(error)
        plain.clear()

    for text in given:
        if is_manifest(text):
            flush_plain()
            base = parent_location(text)
            for path in read_manifest(text):
                paths.append(path)
                sources.append(_source_for(path, base))
                errors.append(None)
        else:
            plain.append(text)
    flush_plain()
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode("utf-8") + b"\n")
    table = pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "source": pa.array(sources, pa.string()),
            "error": pa.array(errors, pa.string()),
        },
        schema=INPUT_SCHEMA,
    )
    return InputList(table, digest.hexdigest())
