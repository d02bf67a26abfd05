"""The one-line rule of every message nima-rt prints or writes (error rows, ``error:`` lines, notes)."""

from __future__ import annotations

UNKNOWN = "unknown error"


def one_line(text: object, limit: int | None = None, default: str = UNKNOWN) -> str:
    """``text`` (an exception or any object) as one line: runs of whitespace, line breaks included, become
    one space; cut to ``limit`` characters when given; ``default`` when nothing is left."""
    line = " ".join(str(text).split())
    if limit is not None:
        line = line[:limit]
    return line or default
