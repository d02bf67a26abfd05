"""Read back the rows ``nima-rt score`` wrote (CSV, JSONL or Parquet; schema in nima_rt/io/writers.py)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.io.writers import OutputError, csv_header, format_for, path_from_cell

ROW_KEYS = ("path", "error", "group", "rank", "best")


def read_score_file(path: str | os.PathLike[str]) -> tuple[list[str], list[ScoreResult]]:
    """(model columns, rows) from a score file; raises OutputError naming the file and the problem."""
    file = Path(path)
    fmt = format_for(str(file), None)
    try:
        if fmt == "parquet":
            return _read_parquet(file)
        with open(file, encoding="utf-8", newline="") as handle:
            return _read_csv(handle, file) if fmt == "csv" else _read_jsonl(handle, file)
    except OSError as exc:
        raise OutputError(f"{file}: cannot read score file ({exc.strerror or exc})") from None


def _score(value: Any, where: str) -> ModelScore | None:
    if value is None:
        return None
    try:
        dist = tuple(float(p) for p in value["dist"])
        score = ModelScore(float(value["mean"]), float(value["std"]), dist)
    except (KeyError, TypeError, ValueError):
        raise OutputError(f"{where}: a model score needs a number mean, std and 10 dist values") from None
    if len(dist) != NUM_BINS:
        raise OutputError(f"{where}: dist has {len(dist)} values, expected {NUM_BINS}")
    return score


def _columns_of_header(header: Sequence[str], file: Path) -> list[str]:
    if list(header[:2]) != ["path", "error"]:
        raise OutputError(f"{file}: not a nima-rt score file (header starts {', '.join(header[:2])!r})")
    columns, index = [], 2
    while index < len(header) and header[index].endswith("_mean"):
        column = header[index][: -len("_mean")]
        if list(header[index : index + 2 + NUM_BINS]) != csv_header([column])[2:]:
            raise OutputError(f"{file}: model {column!r} lacks some of its columns (mean, std, p1..p10)")
        columns.append(column)
        index += 2 + NUM_BINS
    return columns


def _read_csv(handle: Any, file: Path) -> tuple[list[str], list[ScoreResult]]:
    reader = csv.reader(handle)
    columns = _columns_of_header(next(reader, ["path", "error"]), file)
    width = 2 + NUM_BINS
    rows = []
    for number, row in enumerate(reader, 2):
        if not row:
            continue
        scores: dict[str, ModelScore] = {}
        for k, column in enumerate(columns):
            cells = row[2 + k * width : 2 + (k + 1) * width]
            if any(cells):
                raw = {"mean": cells[0], "std": cells[1], "dist": cells[2:]}
                scores[column] = _score(raw, f"{file}:{number}")  # type: ignore[assignment]
        error = (row[1] if len(row) > 1 else "") or None
        rows.append(ScoreResult(path_from_cell(row[0], csv_cell=True), error, scores))
    return columns, rows


def _read_jsonl(handle: Any, file: Path) -> tuple[list[str], list[ScoreResult]]:
    columns: list[str] = []
    rows = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            row_path = path_from_cell(str(record["path"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise OutputError(f"{file}:{number}: not a score row (JSON object with a path)") from None
        found = [k for k, v in record.items() if k not in ROW_KEYS and (v is None or isinstance(v, dict))]
        columns += [c for c in found if c not in columns]
        scores = {}
        for column in found:
            score = _score(record[column], f"{file}:{number}")
            if score is not None:
                scores[column] = score
        rows.append(ScoreResult(row_path, record.get("error") or None, scores))
    return columns, rows


def _read_parquet(file: Path) -> tuple[list[str], list[ScoreResult]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError(f"{file}: reading parquet needs pyarrow: pip install 'nima-rt[parquet]'") from None
    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises its own error types for a damaged file
        raise OutputError(f"{file}: cannot read parquet ({one_line(exc)})") from None
    names = table.schema.names
    columns = [n[: -len("_mean")] for n in names if n.endswith("_mean") and f"{n[:-5]}_dist" in names]
    rows = []
    for number, record in enumerate(table.to_pylist(), 1):
        scores = {}
        for column in columns:
            if record[f"{column}_mean"] is not None:
                raw = {"mean": record[f"{column}_mean"], "std": record[f"{column}_std"],
                       "dist": record[f"{column}_dist"]}
                scores[column] = _score(raw, f"{file}: row {number}")
        rows.append(ScoreResult(path_from_cell(str(record["path"])), record.get("error") or None, scores))
    return columns, rows
