"""Parquet score files for the reader (:mod:`nima_rt.io.scores.reader`): one file (or one part of a Ray
output folder), read a record batch at a time; pyarrow is imported when a file is opened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS
from nima_rt.io.results import ModelScore
from nima_rt.io.scores.rows import RANK_COLUMNS, Layout, ScoreRow
from nima_rt.io.scores.writers import OutputError, path_from_cell

BATCH_ROWS = 8192  # rows per record batch read (a batch's rows are made, then dropped)


def parquet_layout(names: list[str], location: str) -> Layout:
    """Model columns (``_mean``, ``_std`` and ``_dist`` all present), carried and ranking columns of a
    Parquet schema's ``names``; a model's ``_sha256`` (Ray shards) is provenance, not carried."""
    if "path" not in names:
        raise OutputError(f"{location}: not a nima-rt score file (no 'path' column; columns: "
                          f"{', '.join(names[:6]) or 'none'})")
    columns = [n[: -len("_mean")] for n in names
               if n.endswith("_mean") and f"{n[:-5]}_std" in names and f"{n[:-5]}_dist" in names]
    derived = {f"{c}_{part}" for c in columns for part in ("mean", "std", "dist", "sha256")}
    carried = [n for n in names if n not in ("path", "error") and n not in derived and n not in RANK_COLUMNS]
    return Layout(columns, carried, [n for n in names if n in RANK_COLUMNS])


class ParquetSource:
    """A Parquet score file at ``inner`` on the pyarrow filesystem ``fs`` (``location`` names it in errors)."""

    def __init__(self, location: str, fs: Any, inner: str) -> None:
        import pyarrow.parquet as pq

        self.location, self.fs, self.inner = location, fs, inner
        try:
            with fs.open_input_file(inner) as handle:
                names = list(pq.ParquetFile(handle).schema_arrow.names)
        except FileNotFoundError:
            raise OutputError(f"{location}: cannot read score file (No such file or directory)") from None
        except Exception as exc:  # pyarrow raises its own error types for a damaged file
            raise OutputError(f"{location}: cannot read parquet ({one_line(exc)})") from None
        self.names = names
        self.layout = parquet_layout(names, location)

    def _batches(self, columns: list[str] | None) -> Iterator[Any]:
        import pyarrow.parquet as pq

        try:
            with self.fs.open_input_file(self.inner) as handle:  # no pre-buffering: a column chunk at a time
                yield from pq.ParquetFile(handle, pre_buffer=False).iter_batches(batch_size=BATCH_ROWS,
                                                                                 columns=columns, use_threads=False)
        except OutputError:
            raise
        except Exception as exc:  # a damaged row group
            raise OutputError(f"{self.location}: cannot read parquet ({one_line(exc)})") from None

    def cells(self) -> Iterator[str]:
        for batch in self._batches(["path"]):
            yield from (str(cell) for cell in batch.column(0).to_pylist())

    def rows(self, scores: bool = True) -> Iterator[ScoreRow]:
        layout = self.layout
        wanted = None if scores else [n for n in ("path", "error", *layout.carried) if n in self.names]
        for batch in self._batches(wanted):
            count = batch.num_rows
            names = batch.schema.names
            paths = batch.column(names.index("path")).to_pylist()
            errors = batch.column(names.index("error")).to_pylist() if "error" in names else [None] * count
            columns = layout.columns if scores else []
            models = [_model_columns(batch, names, column, count) for column in columns]
            carried = [(name, batch.column(names.index(name)).to_pylist()) for name in layout.carried]
            for row in range(count):
                found = {column: ModelScore(mean[row], std[row], tuple(dist[row]))
                         for column, (valid, mean, std, dist) in zip(columns, models, strict=True) if valid[row]}
                cell = str(paths[row])
                yield ScoreRow(path_from_cell(cell), errors[row] or None, found, cell,
                               {name: "" if values[row] is None else path_from_cell(str(values[row]))
                                for name, values in carried})


def _model_columns(batch: Any, names: list[str], column: str, count: int) -> tuple[list[bool], list, list, list]:
    """(valid, mean, std, dist rows) of one model in a record batch, as Python lists (floats exact)."""
    mean = batch.column(names.index(f"{column}_mean"))
    std = batch.column(names.index(f"{column}_std"))
    dist = batch.column(names.index(f"{column}_dist"))
    valid = mean.is_valid().to_numpy(zero_copy_only=False).tolist()
    values = dist.values.slice(dist.offset * NUM_BINS, count * NUM_BINS).to_numpy(zero_copy_only=False)
    return (valid, mean.to_numpy(zero_copy_only=False).tolist(), std.to_numpy(zero_copy_only=False).tolist(),
            np.asarray(values, np.float64).reshape(count, NUM_BINS).tolist())


def read_arrow(parts: list[tuple[str, Any, str]]) -> Any:
    """Parquet files ``(location, fs, inner)`` as one pyarrow Table, in order (the Ray engine's ``read_output``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for location, fs, inner in parts:
        try:
            tables.append(pq.read_table(inner, filesystem=fs))
        except Exception as exc:  # pyarrow's own error types
            raise OutputError(f"{location}: cannot read parquet ({one_line(exc)})") from None
    return pa.concat_tables(tables)
