"""Open a run's output: claim it (lock, overwrite policy, torn tail), read what a resumed run already
wrote, and make the writer.

    opened = open_output("csv", "scores.csv", ["technical"], resume=True)
    todo = [path for path in paths if path not in opened.done]
    ... opened.writer.write_batch(batch) ...; opened.close()

CSV and JSONL rows are appended to the output itself and flushed batch by batch; Parquet rows go to
complete part files merged into the output at the end (:mod:`nima_rt.io.scores.parquet_parts`). Either way a
killed run followed by ``resume`` ends with every row once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from nima_rt.io.scores.output_file import cannot_write, claim_text, giving_up
from nima_rt.io.scores.parquet_parts import ResumableParquetWriter, claim_parquet, parquet_done_paths
from nima_rt.io.scores.reader import DonePaths, done_paths
from nima_rt.io.scores.writers import CsvWriter, JsonlWriter, OutputError, RowWriter


def _nothing_held() -> None:
    """Standard output holds no lock."""


@dataclass
class OpenedOutput:
    """The writer of a run's rows, the paths an earlier run already wrote (empty unless resuming) and the
    output's lock: held until :meth:`release`, after the writer is closed (or aborted) and whatever else the
    run does with the output (a ranked run ranks it) is done."""

    writer: RowWriter
    done: DonePaths
    release: Callable[[], None] = _nothing_held

    def close(self) -> None:
        """Close the writer, then release the output."""
        try:
            self.writer.close()
        finally:
            self.release()


def open_output(fmt: str, output: str | None, columns: Sequence[str], carried: Sequence[str] = (), *,
                ranked: bool = False, resume: bool = False, overwrite: bool = False,
                escape_formulas: bool = True) -> OpenedOutput:
    """Claim ``output`` (None or ``"-"``: standard output, CSV/JSONL only) and open its writer for rows with
    the model ``columns`` and the ``carried`` columns.

    An output that already holds data is refused unless ``resume`` (continue it: its paths are returned in
    ``done``; with ``ranked``, a ranked output's ranking columns are kept, left empty in the rows added) or
    ``overwrite`` (start it again). Raises :class:`~nima_rt.io.scores.output_file.OutputBusy` when another run writes
    it, :class:`~nima_rt.io.scores.output_file.OutputExists` for data neither resumed nor replaced, and
    :class:`OutputError` (one line, naming the file) for anything else.
    """
    columns, carried = list(columns), tuple(carried)
    if output is None or output == "-":
        if fmt == "parquet":
            raise OutputError("--format parquet needs --output FILE")
        writer = _text_writer(fmt, sys.stdout, "stdout", columns, carried, True, escape_formulas)
        return OpenedOutput(writer, DonePaths(set(), csv_cells=fmt == "csv"))
    if fmt == "parquet":
        parquet = claim_parquet(output, resume, overwrite)
        with giving_up(parquet.release, output):
            done = (parquet_done_paths(parquet, columns, carried, ranked) if resume
                    else DonePaths(set(), csv_cells=False))
        return OpenedOutput(ResumableParquetWriter(parquet, columns, carried + done.ranked), done, parquet.release)
    claim = claim_text(output, resume, overwrite, fmt)
    with giving_up(claim.release, output):
        done = (done_paths(output, fmt, columns, carried, ranked) if resume and claim.size
                else DonePaths(set(), csv_cells=fmt == "csv"))
        header = claim.size == 0
        stream = claim.stream()
    with giving_up(claim.release, output):
        writer = _text_writer(fmt, stream, output, columns, carried + done.ranked, header, escape_formulas)
    return OpenedOutput(writer, done, claim.release)


def _text_writer(fmt: str, stream: IO[str], name: str, columns: list[str], extra: tuple[str, ...], header: bool,
                 escape_formulas: bool) -> RowWriter:
    if fmt == "jsonl":
        return JsonlWriter(stream, columns)
    try:
        return CsvWriter(stream, columns, extra, header=header, escape_formulas=escape_formulas)
    except BrokenPipeError:
        raise
    except OSError as exc:  # the header on a full disk
        if stream is not sys.stdout:
            try:
                stream.close()
            except OSError:
                pass
        raise cannot_write(name, exc) from None
