"""What a rater's request may hold, and the errors the app raises: one place for every input check.

Rater names, scores and image ids arrive as JSON; each check turns a bad value into a
:class:`RequestError` (a 4xx status and one line), never into an exception the server did not expect.
"""

from __future__ import annotations

import os

MAX_RATER_NAME = 64
SQLITE_MAX_INTEGER = (1 << 63) - 1  # a larger id cannot be bound to an SQLite INTEGER (OverflowError)


class LabelError(Exception):
    """A ratings database or images folder cannot be used; ``str()`` is a one-line reason."""


class RequestError(LabelError):
    """A rater's request cannot be honoured; ``status`` is the HTTP status it maps to (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _shown(value: object) -> str:
    """A value quoted in an error: at most 40 characters of its repr (a 5,000-digit number stays short)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > SQLITE_MAX_INTEGER:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def normalise_rater(name: object) -> str:
    """The rater name as stored: whitespace collapsed, 1..64 printable characters."""
    if not isinstance(name, str):
        raise RequestError(400, "rater must be a string")
    text = " ".join(name.split())
    if not text:
        raise RequestError(400, "rater name is empty")
    if len(text) > MAX_RATER_NAME:
        raise RequestError(400, f"rater name is longer than {MAX_RATER_NAME} characters")
    if not text.isprintable():
        raise RequestError(400, "rater name has unprintable characters")
    return text


def check_score(score: object) -> int:
    """A score must be an integer 1..10 (JSON booleans and floats are refused)."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 10:
        raise RequestError(400, f"score must be an integer from 1 to 10, got {_shown(score)}")
    return score


def check_image_id(image_id: object) -> int:
    """An image id must be a positive integer SQLite can hold."""
    if isinstance(image_id, bool) or not isinstance(image_id, int) or not 1 <= image_id <= SQLITE_MAX_INTEGER:
        raise RequestError(400, f"image_id must be a positive integer, got {_shown(image_id)}")
    return image_id


def is_inside(root: str, path: str) -> bool:
    """True when the real path of ``path`` lies inside ``root`` (a real path itself)."""
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([root, real]) == root and real != root
    except ValueError:  # different drives on Windows
        return False


__all__ = ["MAX_RATER_NAME", "LabelError", "RequestError", "check_image_id", "check_score", "is_inside",
           "normalise_rater"]
