"""Helpers shared by the CLI commands: one-line errors, exit codes, progress on stderr."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import NoReturn

import typer

from nima_rt.contract.messages import one_line
from nima_rt.io.progress import StatusLine, bar
from nima_rt.io.results import ScoreResult
from nima_rt.runtime.rank_output import RankSummary

EXIT_OK = 0
EXIT_FAILED = 1  # the run could not proceed (bad model, unwritable output, missing extra)
EXIT_USAGE = 2  # typer/click's own code for usage errors
EXIT_NOTHING_SCORED = 3  # score: no input file at all, or none could be scored
EXIT_BROKEN_PIPE = 141  # stdout closed by the reader (`| head`): 128 + SIGPIPE, as shells report it
BAR_WIDTH = 20  # characters of the progress bar once the total is known


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A line for the person running the command (stderr, never mixed with data)."""
    typer.echo(message, err=True)


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Fail with a clear message when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        fail(f"{purpose} needs the '{extra}' extra ({module} is not installed): pip install 'nima-rt[{extra}]'")


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not print a BrokenPipeError (after
    `| head` closed it)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def ranked_line(summary: RankSummary) -> str:
    """The stderr line of a rank step (``nima-rt rank``, a ranked ``score`` run)."""
    listings = f" in {summary.listings} listing(s)" if summary.listings else ""
    return (f"ranked {summary.rows} row(s){listings} ({summary.failed} failed, never best) in {summary.elapsed:.1f} s "
            f"-> {summary.output}")


class Progress:
    """Files done/failed with rate, and a bar with the time left once the total is known (terminal only)."""

    def __init__(self, total: int | None = None, enabled: bool | None = None, label: str = "files") -> None:
        self.line = StatusLine(enabled)
        self.total, self.label = total, label
        self.done = self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.line.enabled

    @property
    def elapsed(self) -> float:
        return self.line.elapsed

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def counted(self, results: Iterable[ScoreResult]) -> Iterator[ScoreResult]:
        """``results`` passed through, each one counted as it goes by."""
        for result in results:
            self.update(result.ok)
            yield result

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.line.due():
            self._draw()

    def _draw(self) -> None:
        total = f"/{self.total}" if self.total is not None else ""
        text = f"{self.done}{total} {self.label}, {self.failed} failed, {self.rate:.1f}/s"
        if self.total:  # known total: a bar and the time left at the rate so far
            share = min(1.0, self.done / self.total)
            left = (self.total - self.done) / self.rate if self.rate > 0 else 0.0
            eta = time.strftime("%H:%M:%S", time.gmtime(max(0.0, left)))
            text += f" {bar(share, BAR_WIDTH)} {share:4.0%} ETA {eta}"
        self.line.draw(text)

    def finish(self) -> None:
        if self.line.enabled:
            self._draw()
        self.line.close()
