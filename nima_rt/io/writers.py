"""Score rows on disk: CSV, JSONL and Parquet writers (reading them back: :mod:`nima_rt.io.score_reader`).

Rows are written and flushed one batch at a time (CSV/JSONL), so a killed run keeps every finished row;
``--resume`` repairs a torn last line (:func:`repair_torn_tail`) and skips the paths already written.

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
import os
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
    ranked row at a time."""

    def write_batch(self, batch: ScoreBatch, carried: Carried | None = None) -> None: ...

    def write(self, result: ScoreResult, extra: dict[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


class CsvWriter:
    """CSV rows, flushed one by one; formula-like cells escaped unless ``escape_formulas=False``."""

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
        self.stream.flush()


class JsonlWriter:
    """JSON Lines rows, flushed one by one."""

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
        self.stream.flush()


class ParquetWriter:
    """Parquet (needs pyarrow): batches become Arrow columns directly (ranked rows one at a time), gathered
    into row groups of about ``group_rows``. ``constants`` are extra columns with one value for every row
    (the Ray engine's model sha256 columns)."""

    def __init__(self, path: Any, columns: Sequence[str], extra: Sequence[str] = (), group_rows: int = 4096,
                 constants: dict[str, str] | None = None):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise OutputError("--format parquet needs pyarrow: pip install 'nima-rt[parquet]'") from None
        self.pa, self.columns, self.extra, self.group_rows = pa, list(columns), list(extra), group_rows
        self.constants = dict(constants or {})
        fields = [pa.field("path", pa.string()), pa.field("error", pa.string())]
        for column in self.columns:
            fields += [
                pa.field(f"{column}_mean", pa.float32()),
                pa.field(f"{column}_std", pa.float32()),
                pa.field(f"{column}_dist", pa.list_(pa.float32(), NUM_BINS)),
            ]
        fields += [pa.field(name, getattr(pa, PARQUET_EXTRA_TYPES.get(name, "string"))()) for name in self.extra]
        fields += [pa.field(name, pa.string()) for name in self.constants]
        self.schema = pa.schema(fields)
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


def _carried_row(carried: Carried | None, index: int) -> dict[str, Any] | None:
    return {name: values[index] for name, values in carried.items()} if carried else None


def repair_torn_tail(path: Path) -> None:
    """Cut a last line that a killed run left without its newline."""
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            end = start
        handle.truncate(0)


def check_resumable(fmt: str, path: str | os.PathLike[str]) -> None:
    """Refuse ``--resume`` for a format that cannot be appended to, whether or not the file exists yet
    (so a first and a second run behave alike)."""
    if fmt == "parquet":
        raise OutputError(
            f"{os.fspath(path)}: --resume works with csv and jsonl outputs, not parquet (a Parquet file is "
            "only readable once closed; `--engine ray` writes resumable Parquet shards)"
        )


def open_text(path: str | None, append: bool) -> IO[str]:
    """The output stream: a file (appended to when resuming) or stdout."""
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "a" if append else "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output ({exc.strerror or exc})") from None


def open_writer(fmt: str, output: str | None, columns: Sequence[str], extra: Sequence[str] = (), append: bool = False,
                escape_formulas: bool = True) -> RowWriter:
    """The writer of a run's rows: ``output`` None or ``"-"`` is stdout (CSV/JSONL); ``append`` continues a
    resumed file (no second CSV header). Raises OutputError naming the file when it cannot be written."""
    if fmt == "parquet":
        if output is None or output == "-":
            raise OutputError("--format parquet needs --output FILE")
        try:
            return ParquetWriter(output, columns, extra)
        except OSError as exc:
            raise OutputError(f"{output}: cannot write output ({exc.strerror or exc})") from None
    stream = open_text(output, append)
    if fmt == "jsonl":
        return JsonlWriter(stream, columns)
    write_header = not (append and output is not None and Path(output).stat().st_size > 0)
    try:
        return CsvWriter(stream, columns, extra, header=write_header, escape_formulas=escape_formulas)
    except BrokenPipeError:
        raise
    except OSError as exc:  # the header on a full disk
        raise OutputError(f"{output or 'stdout'}: cannot write output ({exc.strerror or exc})") from None
