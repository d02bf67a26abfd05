"""Manifests: a CSV or Parquet file whose ``path`` column lists a run's inputs, one row each.

``nima-rt score listings.csv`` scores the files the manifest lists, in its order, on either engine.
Relative entries are read relative to the manifest's folder and written as they are (so the output's
``path`` joins back to the manifest); empty entries are skipped. The manifest's other columns (e.g.
``listing_id``) are **carried**: written into the output beside the scores, as text (a Parquet
manifest's numbers as pyarrow writes them, ``7`` or ``1.5``; a missing value as ``""``), and
``--group-by listing_id`` ranks by them.

Read lazily: a CSV a row at a time (Python's csv module; names that are not UTF-8 survive as
``os.fsdecode`` would give them), a Parquet file a record batch at a time, so a manifest of millions of
rows costs a batch of memory on the local engine. A manifest that cannot be read part-way ends in one
error row naming it; the run goes on with the next argument. pyarrow is imported only for Parquet.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.io.decode import path_label

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")
PATH_COLUMN = "path"
BATCH_ROWS = 8192  # Parquet rows read at a time
# Column names a score file uses for itself: a carried column must not look like one of them.
RESERVED = re.compile(r"^(error|group|rank|best|rank_score|best_by)$|_(mean|std|dist|sha256|p\d+)$")


class ManifestError(ValueError):
    """A manifest that cannot be used; ``str()`` names it and says why (one line)."""


def is_manifest(text: str) -> bool:
    """True when ``text`` names a CSV or Parquet manifest (by its extension) rather than an image or folder."""
    return text.lower().endswith(MANIFEST_SUFFIXES)


def is_csv(text: str) -> bool:
    return text.lower().endswith(".csv")


def check_columns(names: Sequence[str], location: str) -> list[str]:
    """The carried columns of a manifest with columns ``names`` (all but ``path``), or ManifestError."""
    if PATH_COLUMN not in names:
        found = ", ".join(names) or "none"
        raise ManifestError(f"{path_label(location)}: manifest has no '{PATH_COLUMN}' column (columns: {found})")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ManifestError(f"{path_label(location)}: manifest repeats column(s) {', '.join(repeated)}")
    carried = [name for name in names if name != PATH_COLUMN]
    clashing = [name for name in carried if RESERVED.search(name) or not name]
    if clashing:
        raise ManifestError(
            f"{path_label(location)}: manifest column(s) {', '.join(repr(c) for c in clashing)} would clash with "
            "the score columns nima-rt writes (error, group, rank, best, rank_score, best_by, *_mean, *_std, "
            "*_dist, *_pN, *_sha256); rename them"
        )
    return carried


def check_model_names(carried: Sequence[str], columns: Sequence[str]) -> None:
    """ManifestError when a carried column has the name of one of the run's model columns (one JSON key, one
    column name, for two things)."""
    same = [name for name in carried if name in columns]
    if same:
        raise ManifestError(f"manifest column(s) {', '.join(repr(n) for n in same)} have the name of a model column "
                            "of this run; rename them (or the model, with --model NAME=FILE)")


def manifest_columns(location: str) -> list[str]:
    """The carried columns of a local manifest, in order; ManifestError when it cannot be read or has no
    ``path`` column."""
    try:
        if is_csv(location):
            with _open_csv(location) as handle:
                names = next(csv.reader(handle), [])
        else:
            import pyarrow.parquet as pq

            names = list(pq.ParquetFile(location).schema_arrow.names)
    except OSError as exc:
        raise ManifestError(f"{path_label(location)}: cannot read manifest ({exc.strerror or one_line(exc)})") from None
    except Exception as exc:  # pyarrow's own error types for a damaged Parquet file; csv.Error
        raise ManifestError(f"{path_label(location)}: cannot read manifest ({one_line(exc)})") from None
    return check_columns(names, location)


def _open_csv(location: str) -> Any:
    return open(location, encoding="utf-8", errors="surrogateescape", newline="")


def manifest_entries(location: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(entry as written, carried values) for each non-empty ``path`` of a local manifest, lazily. Raises
    ManifestError for a header it cannot use, and part-way for rows it cannot read."""
    carried = manifest_columns(location)
    try:
        if is_csv(location):
            yield from _csv_entries(location, carried)
        else:
            yield from _parquet_entries(location, carried)
    except ManifestError:
        raise
    except OSError as exc:
        raise ManifestError(f"{path_label(location)}: cannot read manifest ({exc.strerror or one_line(exc)})") from None
    except Exception as exc:  # csv.Error (a NUL byte, a field too large); pyarrow errors
        raise ManifestError(f"{path_label(location)}: cannot read manifest ({one_line(exc)})") from None


def _csv_entries(location: str, carried: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    with _open_csv(location) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        where = [(name, header.index(name)) for name in carried]
        index = header.index(PATH_COLUMN)
        for row in reader:
            entry = row[index] if index < len(row) else ""
            if entry:
                yield entry, {name: row[at] if at < len(row) else "" for name, at in where}


def _parquet_entries(location: str, carried: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    import pyarrow.parquet as pq

    manifest = pq.ParquetFile(location, pre_buffer=False)  # a column chunk at a time, not a row group's worth
    for batch in manifest.iter_batches(batch_size=BATCH_ROWS, columns=[PATH_COLUMN, *carried], use_threads=False):
        paths = batch.column(0)
        if not _is_text(paths.type):
            raise ManifestError(f"{path_label(location)}: manifest column '{PATH_COLUMN}' must hold strings, "
                                f"found {paths.type}")
        values = [text_values(batch.column(k + 1)).to_pylist() for k in range(len(carried))]
        for row, entry in enumerate(paths.to_pylist()):
            if entry:
                yield entry, {name: values[k][row] for k, name in enumerate(carried)}


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def text_values(array: Any) -> Any:
    """A carried column as text, the same on both engines: pyarrow's cast to string, nulls as ``""``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.cast(array, pa.large_string()), "")


def source_of(entry: str, manifest: str) -> str | None:
    """Where a local manifest's entry is read: None for an absolute path (read as written), else the entry
    joined to the manifest's folder."""
    if os.path.isabs(entry):
        return None
    return os.path.join(os.path.dirname(os.path.abspath(manifest)), entry)


def uri_error(entry: str) -> str:
    """The error row of a URI entry on the local engine."""
    return f"{path_label(entry)}: a URI; the local engine reads local files (score URIs with --engine ray)"


__all__ = ["MANIFEST_SUFFIXES", "PATH_COLUMN", "ManifestError", "check_columns", "check_model_names", "is_manifest",
           "manifest_columns", "manifest_entries", "source_of", "text_values", "uri_error"]
