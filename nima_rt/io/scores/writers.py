"""Score rows on disk: CSV, JSONL and Parquet writers (reading them back: :mod:`nima_rt.io.scores.reader`).

Rows are written and flushed one batch at a time (CSV/JSONL), so a killed run keeps every finished row.
Which file a run may write, its lock and the repair of a torn tail: :mod:`nima_rt.io.scores.output_file`;
Parquet outputs written resumably: :mod:`nima_rt.io.scores.parquet_parts`; both opened by
:func:`nima_rt.io.scores.open_output.open_output`.

Text cells, in every format: a path is written as the UTF-8 text of its name, with bytes that are not
UTF-8 as ``\\xNN`` escapes (:func:`text_cell`); an error is one printable line (line breaks and other
control characters as ``\\n``, ``\\r``... escapes). CSV quotes every field that holds a line break, so
each field round-trips through Python's csv module and pandas, and prefixes a cell that starts with
``= + - @``, a tab or a carriage return with ``'`` (OWASP's defence against formula injection in Excel
and LibreOffice; ``escape_formulas=False`` turns it off).

JSONL: ``{"path": ..., "error": null | "...", "<model>": {"mean": m, "std": s, "dist": [10]}}``
CSV:   ``path, error, <model>_mean, <model>_std, <model>_p1 .. <model>_p10``
Extra columns follow the scores: a manifest's carried columns (text), then the ranking's (``group``, ``rank``,
``best``, ``rank_score``, ``best_by``) in a ranked output.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from nima_rt.contract.spec import NUM_BINS
from nima_rt.io.decode import path_label
from nima_rt.io.results import ModelScore, ScoreBatch, ScoreResult

FORMATS = ("csv", "jsonl", "parquet")
FORMAT_ALIASES = {"json": "jsonl", "pq": "parquet"}  # what -f and -o's extension also take (any case)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula (OWASP)
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")  # what text_cell writes for a byte that is not UTF-8
PARQUET_EXTRA_TYPES = {"rank": "int32", "best": "bool_", "rank_score": "float64"}  # pyarrow type names; other
# extra columns (carried manifest columns, group, best_by) are strings


class OutputError(RuntimeError):
    """The output file cannot be written or resumed; ``str()`` names it and says why."""


def format_for(path: str | None, requested: str | None) -> str:
    """The output format: as requested, else from the file's extension, else CSV."""
    if requested:
        chosen = FORMAT_ALIASES.get(requested.lower(), requested.lower())
        if chosen not in FORMATS:
            raise OutputError(f"--format must be one of {', '.join(FORMATS)}, got {requested!r}")
        return chosen
    if path:
        suffix = Path(path).suffix.lower().lstrip(".")
        if suffix in FORMATS or suffix in FORMAT_ALIASES:
            return FORMAT_ALIASES.get(suffix, suffix)
    return "csv"


def csv_header(columns: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    header = ["path", "error"]
    for column in columns:
        header += [f"{column}_mean", f"{column}_std"] + [f"{column}_p{k}" for k in range(1, NUM_BINS + 1)]
    return header + list(extra)


def _round(value: float) -> float:
    return round(value, 6)


def text_cell(text: str) -> str:
    """A path (or group) as written: bytes of the name that are not UTF-8 (``os.fsdecode``'s surrogates)
    become ``\\xNN`` escapes, so every format can hold it; other characters, line breaks included, stay."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def error_cell(error: str | None) -> str | None:
    """An error message as written: one printable line whatever the file's name holds."""
    return None if error is None else path_label(error)


def escape_formula(cell: str) -> str:
    """``'=cmd`` for ``=cmd``: a spreadsheet shows the text instead of running it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def path_from_cell(cell: str, csv_cell: bool = False) -> str:
    """The path a written cell stands for (what reading a score file back needs to open the file):
    the formula prefix of a CSV cell removed, ``\\xNN`` escapes (bytes 0x80-0xff) back to the name's bytes
    as ``os.fsdecode`` gives them."""
    if csv_cell and cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        cell = cell[1:]
    if "\\x" not in cell:
        return cell
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), cell)


def json_row(result: ScoreResult, columns: Sequence[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"path": text_cell(result.path), "error": error_cell(result.error)}
    for column in columns:
        score = result.scores.get(column)
        row[column] = (
            None
            if score is None
            else {"mean": _round(score.mean), "std": _round(score.std), "dist": [_round(p) for p in score.dist]}
        )
    if extra:
        row.update({name: text_cell(value) if isinstance(value, str) else value for name, value in extra.items()})
    return row


def csv_row(result: ScoreResult, columns: Sequence[str], extra: Sequence[Any] = (), escape_formulas: bool = True
            ) -> list[Any]:
    escape = escape_formula if escape_formulas else str
    row: list[Any] = [escape(text_cell(result.path)), escape(error_cell(result.error) or "")]
    for column in columns:
        score = result.scores.get(column)
        if score is None:
            row += [""] * (2 + NUM_BINS)
        else:
            row += [_round(score.mean), _round(score.std)] + [_round(p) for p in score.dist]
    return row + ["" if value is None else escape(text_cell(value)) if isinstance(value, str) else value
                  for value in extra]


Carried = Mapping[str, Sequence[str]]  # extra columns of a batch, a value per row (a manifest's columns)


class RowWriter(Protocol):
    """Writes a run's rows: a batch of them as the Scorer makes it (with its ``carried`` columns), or one
    ranked row at a time. ``close`` finishes the output (and releases its lock); ``abort`` gives it up after a
    failure, keeping what was already made durable (resumable), and never raises."""

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None: ...

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _close_stream(stream: IO[str]) -> None:
    """Flush and close a file stream (standard output is flushed, never closed)."""
    if stream in (sys.stdout, sys.__stdout__):
        stream.flush()
    else:
        stream.close()


def _abort_stream(stream: IO[str]) -> None:
    """Close a stream after a write failed: what reached the file stays; a second error is not reported
    (the first one is)."""
    try:
        _close_stream(stream)
    except OSError:
        try:
            stream.close()
        except OSError:
            pass


class CsvWriter:
    """CSV rows, flushed batch by batch; formula-like cells escaped unless ``escape_formulas=False``.
    Closing the writer closes ``stream`` (unless it is standard output)."""

    def __init__(self, stream: IO[str], columns: Sequence[str], extra: Sequence[str] = (), header: bool = True,
                 escape_formulas: bool = True):
        self.stream, self.columns, self.extra = stream, list(columns), list(extra)
        self.escape_formulas = escape_formulas
        self.writer = csv.writer(stream, lineterminator="\n")
        # csv quotes a field holding the line terminator ("\n") but not a lone "\r", which readers take
        # for a line end: a row with one is written with every field quoted.
        self.quoting_writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        if header:
            self.writer.writerow(csv_header(self.columns, self.extra))
            stream.flush()

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None:
        for index, result in enumerate(batch.rows()):
            self._write_row(result, _carried_row(carried, index))
        self.stream.flush()  # a batch's rows finish together: one flush keeps each finished row on disk

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None:
        self._write_row(result, extra)
        self.stream.flush()

    def _write_row(self, result: ScoreResult, extra: dict[str, Any] | None) -> None:
        values = [(extra or {}).get(name) for name in self.extra]
        row = csv_row(result, self.columns, values, self.escape_formulas)
        has_cr = any(isinstance(cell, str) and "\r" in cell for cell in row)
        (self.quoting_writer if has_cr else self.writer).writerow(row)

    def close(self) -> None:
        _close_stream(self.stream)

    def abort(self) -> None:
        _abort_stream(self.stream)


class JsonlWriter:
    """JSON Lines rows, flushed batch by batch; closing the writer closes ``stream`` (not standard output)."""

    def __init__(self, stream: IO[str], columns: Sequence[str]):
        self.stream, self.columns = stream, list(columns)

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None:
        self.stream.write("".join(json.dumps(json_row(result, self.columns, _carried_row(carried, index)),
                                             ensure_ascii=False) + "\n"
                                  for index, result in enumerate(batch.rows())))
        self.stream.flush()

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None:
        self.stream.write(json.dumps(json_row(result, self.columns, extra), ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        _close_stream(self.stream)

    def abort(self) -> None:
        _abort_stream(self.stream)


def pyarrow() -> Any:
    """The pyarrow module, or an OutputError naming the extra that installs it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the writers and readers need it loaded
    except ImportError:
        raise OutputError("--format parquet needs pyarrow: pip install 'nima-rt[parquet]'") from None
    return pa


def parquet_schema(columns: Sequence[str], extra: Sequence[str] = (), constants: Sequence[str] = ()) -> Any:
    """The Arrow schema of a Parquet score file for these model columns and extra columns."""
    pa = pyarrow()
    fields = [pa.field("path", pa.string()), pa.field("error", pa.string())]
    for column in columns:
        fields += [
            pa.field(f"{column}_mean", pa.float32()),
            pa.field(f"{column}_std", pa.float32()),
            pa.field(f"{column}_dist", pa.list_(pa.float32(), NUM_BINS)),
        ]
    fields += [pa.field(name, getattr(pa, PARQUET_EXTRA_TYPES.get(name, "string"))()) for name in extra]
    fields += [pa.field(name, pa.string()) for name in constants]
    return pa.schema(fields)


class ParquetWriter:
    """Parquet (needs pyarrow): batches become Arrow columns directly (ranked rows one at a time), gathered
    into row groups of about ``group_rows``. ``constants`` are extra columns with one value for every row
    (the Ray engine's model sha256 columns)."""

    def __init__(self, path: Any, columns: Sequence[str], extra: Sequence[str] = (), group_rows: int = 4096,
                 constants: dict[str, str] | None = None):
        import pyarrow.parquet as pq

        self.pa, self.columns, self.extra, self.group_rows = pyarrow(), list(columns), list(extra), group_rows
        self.constants = dict(constants or {})
        self.schema = parquet_schema(self.columns, self.extra, self.constants)
        self.rows: list[dict[str, Any]] = []  # ranked rows not yet made a table
        self.tables: list[Any] = []  # tables not yet written
        self.buffered = 0
        self.writer = pq.ParquetWriter(path, self.schema)

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None:
        """A batch as Arrow columns (failed rows hold nulls; extra columns not in ``carried`` too)."""
        pa = self.pa
        failed = ~batch.ok
        arrays = [pa.array([text_cell(path) for path in batch.paths], pa.string()),
                  pa.array([error_cell(error) for error in batch.errors], pa.string())]
        for column in self.columns:
            scores = batch.scores[column]
            values = pa.array(scores.dist.reshape(-1), pa.float32())
            arrays += [pa.array(scores.mean, pa.float32(), mask=failed),
                       pa.array(scores.std, pa.float32(), mask=failed),
                       pa.FixedSizeListArray.from_arrays(values, NUM_BINS, mask=pa.array(failed))]
        carried = carried or {}
        arrays += [pa.array([text_cell(value) for value in carried[field.name]], pa.string())
                   if field.name in carried else pa.nulls(len(batch), field.type)
                   for field in self.schema if field.name in self.extra]
        arrays += [pa.array([value] * len(batch), pa.string()) for value in self.constants.values()]
        self._table_rows()
        self._buffer(pa.Table.from_arrays(arrays, schema=self.schema))

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None:
        row: dict[str, Any] = {"path": text_cell(result.path), "error": error_cell(result.error)}
        for column in self.columns:
            score: ModelScore | None = result.scores.get(column)
            row[f"{column}_mean"] = None if score is None else score.mean
            row[f"{column}_std"] = None if score is None else score.std
            row[f"{column}_dist"] = None if score is None else list(score.dist)
        for name in self.extra:
            value = (extra or {}).get(name)
            row[name] = text_cell(value) if isinstance(value, str) else value
        row.update(self.constants)
        self.rows.append(row)
        if len(self.rows) >= self.group_rows:
            self._table_rows()

    def _table_rows(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            self._buffer(self.pa.Table.from_pylist(rows, schema=self.schema))

    def _buffer(self, table: Any) -> None:
        self.tables.append(table)
        self.buffered += table.num_rows
        if self.buffered >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        self._table_rows()
        if self.tables:
            tables, self.tables, self.buffered = self.tables, [], 0
            self.writer.write_table(self.pa.concat_tables(tables), row_group_size=max(self.group_rows, 1))

    def close(self) -> None:
        self._flush()
        self.writer.close()

    def abort(self) -> None:
        """Give up the file (its rows not yet written are dropped); never raises."""
        self.rows, self.tables, self.buffered = [], [], 0
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - the error being reported is the first one
            pass


def _carried_row(carried: Carried | None, index: int) -> dict[str, Any] | None:
    return {name: values[index] for name, values in carried.items()} if carried else None
