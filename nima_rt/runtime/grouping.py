"""What a listing is: ``--group-by parent | dir:N | COLUMN | none``.

- ``parent``: the photo's folder (``listings/L1/ext/a.jpg`` -> ``listings/L1/ext``).
- ``dir:N``: the first N folders of the path as written, for listings whose photos sit in nested folders
  (``listings/L1/ext/a.jpg`` and ``listings/L1/int/b.jpg`` -> ``listings/L1`` with ``dir:2``). An absolute
  path keeps its leading ``/`` (``/data/listings/L1`` is ``dir:3``); a URI's bucket is its first folder;
  ``.`` folders do not count; a photo with fewer than N folders belongs to its parent folder.
- ``COLUMN``: the value of a column carried from a manifest (e.g. ``listing_id``); a photo without a value
  (an empty cell, or a photo not listed in a manifest) belongs to the listing ``""``.
- ``none``: no listings (the same as leaving ``--group-by`` out).

The key is a function of the row alone, so ``nima-rt score --group-by``, ``nima-rt rank`` and ``nima-rt
report`` group a photo the same way, on either engine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from nima_rt.io.results import ScoreResult

_DEPTH = re.compile(r"^dir:(\d+)$")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)(.*)$", re.DOTALL)
KEYWORDS = ("parent", "dir:N", "none")  # what --group-by takes besides a carried column's name


class GroupingError(ValueError):
    """A ``--group-by`` value that does not parse, or names a column the rows do not carry."""


@dataclass(frozen=True)
class Grouping:
    """How rows are grouped into listings: ``kind`` is ``parent``, ``dir`` (with ``depth``) or ``column``."""

    kind: str
    depth: int = 0
    column: str = ""

    def text(self) -> str:
        return {"parent": "parent", "dir": f"dir:{self.depth}"}.get(self.kind, self.column)

    def key_function(self) -> Callable[[ScoreResult], str]:
        """The listing of a row (a :class:`~nima_rt.io.scores.rows.ScoreRow` for a column grouping)."""
        if self.kind == "parent":
            return lambda result: group_of(result.path)
        if self.kind == "dir":
            depth = self.depth
            return lambda result: folder_at_depth(result.path, depth)
        column = self.column
        return lambda result: getattr(result, "carried", {}).get(column, "")

    def check(self, carried: list[str], where: str) -> None:
        """GroupingError when a column grouping names a column that ``where`` does not carry."""
        if self.kind == "column" and self.column not in carried:
            have = ", ".join(carried) if carried else "none"
            raise GroupingError(
                f"--group-by {self.column}: no such column in {where} (carried columns: {have}; or use "
                f"{', '.join(KEYWORDS)})"
            )


def parse_grouping(text: str | None) -> Grouping | None:
    """``--group-by`` text -> a Grouping, or None for no grouping (None or ``none``)."""
    if text is None or text == "none":
        return None
    if text == "parent":
        return Grouping("parent")
    match = _DEPTH.match(text)
    if match:
        depth = int(match.group(1))
        if depth < 1:
            raise GroupingError(f"--group-by {text}: the depth counts folders from 1 (dir:1 is the first folder)")
        return Grouping("dir", depth=depth)
    if text.startswith("dir:") or not text.strip():
        raise GroupingError(f"--group-by {text!r}: expected parent, dir:N (N >= 1), none or a manifest column name")
    return Grouping("column", column=text)


def group_of(path: str) -> str:
    """The listing a photo belongs to with ``parent``: its folder."""
    return os.path.dirname(path) or "."


def folder_at_depth(path: str, depth: int) -> str:
    """The first ``depth`` folders of ``path`` (see the module doc); the parent folder when it has fewer."""
    match = _URI.match(path)
    root, rest = (match.group(1), match.group(2)) if match else ("/" if path.startswith("/") else "", path)
    folders = [part for part in rest.split("/")[:-1] if part not in ("", ".")]
    if not folders:
        return group_of(path)
    return root + "/".join(folders[:depth])


__all__ = ["KEYWORDS", "Grouping", "GroupingError", "folder_at_depth", "group_of", "parse_grouping"]
