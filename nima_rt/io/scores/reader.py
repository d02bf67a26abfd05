"""Read back score files: the one reader of what ``nima-rt score`` (either engine) and ``nima-rt rank`` write.

Sources: CSV, JSONL and Parquet files (the format from the extension, as the writers choose it) and Ray
output folders (``part-NNNNNN.parquet`` in shard order, beside ``_nima_rt_run.json``), local paths or
URIs. Several sources read as one stream, in the order given, when they hold the same model and carried
columns. ``--resume``, ``nima-rt report --scores``, ``nima-rt rank`` and the Ray engine all read here.

**Streaming**: CSV and JSONL are read a line at a time, Parquet (each part file of a folder in turn) a
record batch at a time, and rows are made as they are read: reading holds one batch, never the file.
What holds more is the caller's choice (ranking: :mod:`nima_rt.runtime.rank_output`).

Columns of a score file (schema in :mod:`nima_rt.io.scores.writers`): ``path``, ``error``, the models' scores,
then **carried** columns (a manifest's other columns, e.g. ``listing_id``, as text), then the ranking's
columns (:data:`RANK_COLUMNS`), which re-ranking recomputes. A Ray folder's ``<model>_sha256`` columns
are read as provenance, not carried. Paths (and carried text) come back as the names they were written
for (:func:`nima_rt.io.scores.writers.path_from_cell`); :attr:`ScoreRow.cell` keeps the cell as written, which is
what ``--resume`` compares.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS
from nima_rt.io.locations import SourceError, filesystem_for, is_uri
from nima_rt.io.results import ModelScore
from nima_rt.io.scores.parquet_reader import ParquetSource, read_arrow
from nima_rt.io.scores.rows import RANK_COLUMNS, Layout, ScoreRow, parse_score
from nima_rt.io.scores.writers import (
    OutputError,
    csv_header,
    escape_formula,
    format_for,
    path_from_cell,
    text_cell,
)

RUN_FILE = "_nima_rt_run.json"  # a Ray output folder's run record
PART_PATTERN = re.compile(r"^part-(\d{6,})\.parquet$")  # a Ray output folder's complete shards


def part_name(shard: int) -> str:
    """A Ray output folder's file name for ``shard``."""
    return f"part-{shard:06d}.parquet"


class _CsvSource:
    """A CSV score file, read a row at a time with Python's csv module (quoted line breaks and all)."""

    def __init__(self, location: str) -> None:
        self.location = location
        with _open_text(location) as handle:
            header = next(csv.reader(handle), None)
        self.empty = header is None  # not even a header (a run killed before its first line)
        self.layout = _csv_layout(header or ["path", "error"], location)

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        with _open_text(self.location) as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row:
                    yield reader.line_num, row

    def cells(self) -> Iterator[str]:
        return (row[0] for _, row in self._records())

    def rows(self, scores: bool = True) -> Iterator[ScoreRow]:
        layout, width = self.layout, 2 + NUM_BINS
        carried_at = [(name, self.layout.header.index(name)) for name in layout.carried]  # type: ignore[union-attr]
        for number, row in self._records():
            row += [""] * (len(self.layout.header or ()) - len(row))  # type: ignore[operator]
            found: dict[str, ModelScore] = {}
            for k, column in enumerate(layout.columns if scores else ()):
                cells = row[2 + k * width: 2 + (k + 1) * width]
                if any(cells):
                    found[column] = parse_score(f"{self.location}:{number}", cells[0], cells[1], cells[2:])
            carried = {name: path_from_cell(row[index], csv_cell=True) for name, index in carried_at}
            yield ScoreRow(path_from_cell(row[0], csv_cell=True), path_from_cell(row[1], csv_cell=True) or None,
                           found, row[0], carried)


def _csv_layout(header: Sequence[str], location: str) -> Layout:
    if list(header[:2]) != ["path", "error"]:
        raise OutputError(f"{location}: not a nima-rt score file (header starts {', '.join(header[:2])!r})")
    columns, index = [], 2
    while index < len(header) and header[index].endswith("_mean"):
        column = header[index][: -len("_mean")]
        if list(header[index: index + 2 + NUM_BINS]) != csv_header([column])[2:]:
            raise OutputError(f"{location}: model {column!r} lacks some of its columns (mean, std, p1..p10)")
        columns.append(column)
        index += 2 + NUM_BINS
    extra = list(header[index:])
    return Layout(columns, [n for n in extra if n not in RANK_COLUMNS], [n for n in extra if n in RANK_COLUMNS],
                  list(header))


class _JsonlSource:
    """A JSON Lines score file: the first row names the columns (models: objects or null; carried: text)."""

    def __init__(self, location: str) -> None:
        self.location = location
        first = next(self._records(), None)
        if first is None:
            self.layout = Layout([], [])
            return
        number, record = first
        columns = [k for k, v in record.items() if k not in ("path", "error") + RANK_COLUMNS
                   and (v is None or isinstance(v, dict))]
        carried = [k for k, v in record.items() if k not in ("path", "error") + RANK_COLUMNS and isinstance(v, str)]
        self.layout = Layout(columns, carried, [k for k in record if k in RANK_COLUMNS])

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        with _open_text(self.location) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or not isinstance(record["path"], str):
                        raise TypeError
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise OutputError(f"{self.location}:{number}: not a score row (JSON object with a path)") from None
                yield number, record

    def cells(self) -> Iterator[str]:
        return (record["path"] for _, record in self._records())

    def check_models(self, columns: Sequence[str]) -> None:
        """OutputError naming the first row that lacks one of ``columns`` (what ``--resume`` needs)."""
        for number, record in self._records():
            missing = [c for c in columns if c not in record]
            if missing:
                raise OutputError(f"{self.location}:{number}: cannot resume, rows lack model(s) {', '.join(missing)}")

    def rows(self, scores: bool = True) -> Iterator[ScoreRow]:
        layout = self.layout
        for number, record in self._records():
            found: dict[str, ModelScore] = {}
            for column in layout.columns if scores else ():
                value = record.get(column)
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise OutputError(f"{self.location}:{number}: a model score needs a number mean, std and 10 "
                                      "dist values")
                found[column] = parse_score(f"{self.location}:{number}", value.get("mean"), value.get("std"),
                                            value.get("dist") or ())
            carried = {name: path_from_cell(str(record.get(name) or "")) for name in layout.carried}
            error = record.get("error")
            yield ScoreRow(path_from_cell(record["path"]), str(error) if error else None, found, record["path"],
                           carried)


class _FolderSource:
    """A Ray output folder: its part files in shard order, each read like a Parquet file when its turn comes
    (the first one is opened for the layout; each other is checked against it as it is read)."""

    def __init__(self, location: str, partial: bool) -> None:
        self.location = location
        self.fs, root = filesystem_for(location)
        self.parts = [(f"{location.rstrip('/')}/{part_name(shard)}", f"{root}/{part_name(shard)}")
                      for shard in _shards(self.fs, root, location, partial)]
        self.layout = self._part(0).layout if self.parts else Layout([], [])

    def _part(self, index: int) -> ParquetSource:
        part = ParquetSource(self.parts[index][0], self.fs, self.parts[index][1])
        if index:
            _check_same(self.layout, part.layout, part.location)
        return part

    def cells(self) -> Iterator[str]:
        return (cell for index in range(len(self.parts)) for cell in self._part(index).cells())

    def rows(self, scores: bool = True) -> Iterator[ScoreRow]:
        return (row for index in range(len(self.parts)) for row in self._part(index).rows(scores))

    def arrow_parts(self) -> list[tuple[str, Any, str]]:
        return [(location, self.fs, inner) for location, inner in self.parts]


def _shards(fs: Any, root: str, location: str, partial: bool) -> list[int]:
    """The complete shards of a Ray output folder, ascending; OutputError for a folder that is not one, or
    (unless ``partial``) one whose run has not finished."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=False))
        names = {info.base_name for info in infos if info.type == pafs.FileType.File}
        record = None
        if RUN_FILE in names:
            with fs.open_input_stream(f"{root}/{RUN_FILE}") as stream:
                record = json.loads(stream.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{location}: cannot read score folder ({one_line(exc)})") from None
    shards = sorted(int(m.group(1)) for m in map(PART_PATTERN.match, names) if m)
    if record is None and not shards:
        raise OutputError(f"{location}: a folder, but not a `nima-rt score --engine ray` output (no {RUN_FILE} "
                          "and no part files)")
    if record is not None and not partial:
        try:
            expected = -(-int(record["inputs"]) // int(record["shard_size"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            raise OutputError(f"{location}: unreadable {RUN_FILE}") from None
        missing = sorted(set(range(expected)) - set(shards))
        if missing:
            raise OutputError(f"{location}: the run is not finished ({expected - len(missing)} of {expected} shards "
                              "written); run the same `nima-rt score --engine ray` command again to complete it")
    return shards


def _open_text(location: str) -> Any:
    """A text stream of a local file or a URI (UTF-8; csv's own newline handling)."""
    try:
        if not is_uri(location):
            return open(location, encoding="utf-8", newline="")
        fs, inner = filesystem_for(location)
        return io.TextIOWrapper(fs.open_input_stream(inner), encoding="utf-8", newline="")
    except SourceError as exc:
        raise OutputError(str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or one_line(exc)
        raise OutputError(f"{location}: cannot read score file ({reason})") from None


def _check_same(first: Layout, other: Layout, location: str) -> None:
    if (other.columns, other.carried) != (first.columns, first.carried):
        raise OutputError(
            f"{location}: holds other columns ({', '.join(other.columns + other.carried) or 'none'}) than the "
            f"first score file ({', '.join(first.columns + first.carried) or 'none'}); rank or report them apart"
        )


def open_source(location: str | os.PathLike[str], partial: bool = False, fmt: str | None = None) -> Any:
    """The reader of one score file (format ``fmt``, else from its extension) or Ray output folder."""
    text = os.fspath(location)
    try:
        if _is_folder(text):
            return _FolderSource(text, partial)
        fmt = format_for(text, fmt)
        if fmt == "parquet":
            fs, inner = filesystem_for(text)
            return ParquetSource(text, fs, inner)
        return _CsvSource(text) if fmt == "csv" else _JsonlSource(text)
    except SourceError as exc:
        raise OutputError(str(exc)) from None
    except UnicodeDecodeError:
        raise OutputError(f"{text}: not a score file (not UTF-8 text)") from None


def _is_folder(location: str) -> bool:
    if not is_uri(location):
        return os.path.isdir(location)
    import pyarrow.fs as pafs

    fs, inner = filesystem_for(location)
    return bool(fs.get_file_info(inner).type == pafs.FileType.Directory)


class ScoreFiles:
    """One or several score files and Ray output folders read as one stream of :class:`ScoreRow`.

    Raises OutputError (one line naming the file) for a source that cannot be read, is not a score file,
    is an unfinished Ray run (unless ``partial``), or holds other columns than the first.
    """

    def __init__(self, sources: Sequence[str | os.PathLike[str]], partial: bool = False) -> None:
        if not sources:
            raise OutputError("no score files given")
        self.sources = [open_source(source, partial) for source in sources]
        for source in self.sources[1:]:
            _check_same(self.sources[0].layout, source.layout, source.location)
        self.layout: Layout = self.sources[0].layout

    @property
    def columns(self) -> list[str]:
        return self.layout.columns

    @property
    def carried(self) -> list[str]:
        return self.layout.carried

    def rows(self, scores: bool = True) -> Iterator[ScoreRow]:
        """Every row, source after source, in written order (decoding errors as OutputError); ``scores=False``
        leaves the scores out (a cheaper pass for the paths and carried columns)."""
        for source in self.sources:
            try:
                yield from source.rows(scores)
            except UnicodeDecodeError:
                raise OutputError(f"{source.location}: not a score file (not UTF-8 text)") from None
            except OSError as exc:
                raise OutputError(f"{source.location}: cannot read score file ({one_line(exc)})") from None

    def cells(self) -> Iterator[str]:
        """The path cells as written (no score parsing): what ``--resume`` compares."""
        for source in self.sources:
            yield from source.cells()


class DonePaths:
    """The paths a previous run wrote, as written: ``path in done`` compares an input path in its written
    form (escapes of :func:`~nima_rt.io.scores.writers.text_cell`, and of
    :func:`~nima_rt.io.scores.writers.escape_formula` for CSV, with or without it). ``ranked`` names the ranking
    columns the file holds (a ranked run that ended), which rows appended to it leave empty."""

    def __init__(self, written: set[str], csv_cells: bool, ranked: Sequence[str] = ()) -> None:
        self.written, self.csv_cells, self.ranked = written, csv_cells, tuple(ranked)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        cell = text_cell(path)
        return cell in self.written or (self.csv_cells and escape_formula(cell) in self.written)

    def __len__(self) -> int:
        return len(self.written)


def done_paths(path: str | os.PathLike[str], fmt: str, columns: Sequence[str], carried: Sequence[str] = (),
               ranked: bool = False) -> DonePaths:
    """Paths already written in a previous run's CSV/JSONL output, for ``--resume`` (a torn tail is cut when
    the output is claimed: :func:`nima_rt.io.scores.output_file.claim_text`; Parquet:
    :mod:`nima_rt.io.scores.parquet_parts`).

    The file must hold this run's model ``columns`` and ``carried`` columns; with ``ranked`` (a run that ranks
    its output when it ends) it may also hold ranking columns, from a run that ended. Raises OutputError
    naming the file otherwise, or naming a damaged record (a CSV row of another width). Memory: one string
    per written row.
    """
    if fmt == "csv":
        with _open_text(os.fspath(path)) as handle:
            header = next(csv.reader(handle), None)
        ranks = [name for name in (header or [])[2:] if name in RANK_COLUMNS] if ranked else []
        expected = csv_header(columns, tuple(carried) + tuple(ranks))
        if header is not None and header != expected:
            raise OutputError(f"{path}: cannot resume, its columns ({', '.join(header[:4])}...) are not this run's "
                              f"({', '.join(expected[:4])}...)")
        written = set()
        for number, row in _CsvSource(os.fspath(path))._records():
            if len(row) != len(expected):
                raise OutputError(f"{path}:{number}: cannot resume, a row has {len(row)} fields where the header "
                                  f"has {len(expected)}")
            written.add(row[0])
        return DonePaths(written, csv_cells=True, ranked=ranks)
    source = _JsonlSource(os.fspath(path))
    source.check_models(columns)
    if source.layout.columns and source.layout.carried != list(carried):
        raise OutputError(f"{path}: cannot resume, its rows carry other columns "
                          f"({', '.join(source.layout.carried) or 'none'}) than this run's "
                          f"({', '.join(carried) or 'none'})")
    if source.layout.ranked and not ranked:
        raise OutputError(f"{path}: cannot resume, it is a ranked output ({', '.join(source.layout.ranked)}); "
                          "resume it with the same --group-by/--rank-by/--sort/--top options")
    return DonePaths(set(source.cells()), csv_cells=False, ranked=source.layout.ranked)


def read_table(location: str | os.PathLike[str], partial: bool = True) -> Any:
    """A Parquet score file or Ray output folder as one pyarrow Table, in input order (``partial``: the
    shards written so far of an unfinished run)."""
    source = open_source(location, partial)
    if isinstance(source, _FolderSource):
        if not source.parts:
            raise OutputError(f"{os.fspath(location)}: no part files")
        return read_arrow(source.arrow_parts())
    if not isinstance(source, ParquetSource):
        raise OutputError(f"{os.fspath(location)}: not a Parquet score file or folder")
    return read_arrow([(source.location, source.fs, source.inner)])


def read_score_file(path: str | os.PathLike[str]) -> tuple[list[str], list[ScoreRow]]:
    """(model columns, rows) of one score file or finished Ray folder, every row in memory (the report's view;
    each row's ``carried`` holds the file's carried columns)."""
    files = ScoreFiles([path])
    return files.columns, list(files.rows())


__all__ = ["PART_PATTERN", "RANK_COLUMNS", "RUN_FILE", "DonePaths", "Layout", "ScoreFiles", "ScoreRow", "done_paths",
           "open_source", "part_name", "read_score_file", "read_table"]
