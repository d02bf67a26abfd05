"""Rank scored rows into listings, make thumbnails and write the report page."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from nima_rt import __version__
from nima_rt.apps.report.page import Card, Listing, PageInfo, render_page
from nima_rt.apps.report.thumbnails import Thumbnail, ThumbnailError, embed_thumbnail, write_thumbnail
from nima_rt.io.files import write_text_atomic
from nima_rt.io.inputs import SKIP_MARKER, SKIP_MARKER_TEXT
from nima_rt.io.results import ScoreResult
from nima_rt.runtime.grouping import Grouping, GroupingError, parse_grouping
from nima_rt.runtime.ranking import RankedRow, RankRule, RankRuleError, rank_groups, rank_rows, resolve_rank_rule

_THUMB_NAME = re.compile(r"^[0-9a-f]{20}\.jpg$")


class ReportError(RuntimeError):
    """The report cannot be written; ``str()`` names the file and says why."""


@dataclass(frozen=True)
class ReportConfig:
    """How the page looks. Rows are ranked by ``rank_by`` (a rank rule, nima_rt.runtime.ranking) or else by
    ``rank_column``'s mean (default: the first model column)."""

    title: str = "nima-rt report"
    rank_column: str | None = None
    rank_by: str | None = None
    group_by: str = "parent"  # parent | dir:N | a carried column (nima_rt.runtime.grouping) | none: one ranking
    top: int | None = None  # best K per listing (failed files are always listed)
    thumb_size: int = 200
    embed: bool = False  # thumbnails inside the HTML (one file) instead of a folder next to it
    workers: int | None = None  # thumbnail threads

    def __post_init__(self) -> None:
        try:
            parse_grouping(self.group_by)
        except GroupingError as exc:
            raise ValueError(str(exc)) from None
        if not 32 <= self.thumb_size <= 1024:
            raise ValueError(f"thumb_size must be in 32..1024, got {self.thumb_size}")
        if self.top is not None and self.top < 1:
            raise ValueError(f"top must be >= 1, got {self.top}")


@dataclass(frozen=True)
class ReportSummary:
    """What was written."""

    output: Path
    thumbnails_dir: Path | None
    listings: int
    scored: int
    failed: int
    thumbnail_failures: int


def thumbnails_dir_for(output: Path) -> Path:
    """Thumbnails go to ``<page stem>_files/`` beside the page, a folder marked with
    :data:`nima_rt.io.inputs.SKIP_MARKER` so that walks of the photos never score them."""
    return output.with_name(output.stem + "_files")


def _ranked(results: Iterable[ScoreResult], rule: RankRule, config: ReportConfig,
            grouping: Grouping | None) -> list[RankedRow]:
    """The same ranking ``nima-rt score`` writes (nima_rt.runtime.ranking), one listing or one per group."""
    if grouping is not None:
        return list(rank_groups(results, rule, config.top, grouping.key_function()))
    ordered = list(rank_rows(results, rule))
    scored = [row for row in ordered if row.rank is not None][: config.top]
    return [dataclasses.replace(row, group="") for row in scored + [r for r in ordered if r.rank is None]]


def _rule(config: ReportConfig, columns: Sequence[str]) -> RankRule:
    try:
        return resolve_rank_rule(config.rank_by, config.rank_column, columns)
    except RankRuleError as exc:
        raise ReportError(str(exc)) from None


def _labels(keys: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """Listing labels relative to the folders' common root (shown once in the summary)."""
    if len(keys) < 2:
        return {key: key or "all photos" for key in keys}, None
    try:
        root = os.path.commonpath(keys)
    except ValueError:  # absolute and relative paths mixed, or other drives
        return {key: key for key in keys}, None
    labels = {key: (os.path.relpath(key, root) if root else key) for key in keys}
    root_name = os.path.basename(root.rstrip("/" + os.sep)) or root
    return {key: (root_name if label == "." else label) for key, label in labels.items()}, root or None


def _require_score(result: ScoreResult, columns: Sequence[str]) -> ScoreResult:
    missing = next((column for column in columns if column not in result.scores), None)
    if result.ok and missing is not None:
        return dataclasses.replace(result, error=f"{result.path}: has no {missing!r} score", scores={})
    return result


def _clean_stale(folder: Path, keep: set[str]) -> None:
    """Remove thumbnails of an earlier report that this one does not use (only our hash names)."""
    for entry in folder.iterdir():
        if _THUMB_NAME.match(entry.name) and entry.name not in keep:
            entry.unlink(missing_ok=True)


def build_report(
    results: Iterable[ScoreResult], columns: Sequence[str], output: str | os.PathLike[str],
    config: ReportConfig = ReportConfig(),
) -> ReportSummary:
    """Write the report page for scored rows (as from ``Scorer.score_paths`` or a score file).

    Rows are ranked with :mod:`nima_rt.runtime.ranking` by ``config.rank_column``; thumbnails are written
    to ``<page stem>_files/`` (or embedded); raises ReportError when the page cannot be written.
    """
    if not columns:
        raise ReportError("no model columns to rank by (the score file has no scores)")
    rule = _rule(config, columns)
    rank_column = rule.columns[0]
    page = Path(output)
    grouping = parse_grouping(config.group_by)
    key = grouping.key_function() if grouping is not None else (lambda result: "")
    results = [_require_score(result, rule.columns) for result in results]
    rows = _ranked(results, rule, config, grouping)
    scored_per_group: dict[str, int] = {}
    for result in results:
        if result.ok:
            scored_per_group[key(result)] = scored_per_group.get(key(result), 0) + 1

    folder = None if config.embed else thumbnails_dir_for(page)
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
        if folder is not None:
            folder.mkdir(exist_ok=True)
            marker = folder / SKIP_MARKER  # a later walk of the photo folder leaves the thumbnails out
            if not marker.is_file():
                marker.write_text(SKIP_MARKER_TEXT, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{exc.filename}: cannot create folder ({exc.strerror or exc})") from None

    thumbs = _make_thumbnails([row.result.path for row in rows if row.result.ok], folder, config)

    listings: dict[str, Listing] = {}
    thumb_failures = 0
    for row in rows:
        key = row.group or ""
        listing = listings.setdefault(key, Listing(key, key))
        if row.result.ok and row.rank is not None:
            thumb, error = thumbs[row.result.path]
            thumb_failures += thumb is None
            listing.cards.append(Card(row.result, row.rank, row.best, thumb, error, row.rank_score, row.best_by))
        else:
            listing.failed.append(row.result)
    for key, listing in listings.items():
        listing.hidden = scored_per_group.get(key, 0) - len(listing.cards)
    labels, root = _labels(list(listings))
    for key, listing in listings.items():
        listing.label = labels[key]

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = PageInfo(
        title=config.title, columns=list(columns), rank_column=rank_column, thumb_size=config.thumb_size,
        page_dir=os.path.abspath(page.parent), root=root,
        footer=f"Written by nima-rt {__version__} on {stamp}. Click a photo to open the original.",
        rank_rule=rule.text() if config.rank_by is not None or len(rule.columns) > 1 else None,  # a default rule too
    )
    html = render_page(list(listings.values()), info)
    try:
        write_text_atomic(page, html)
    except OSError as exc:
        raise ReportError(f"{page}: cannot write report ({exc.strerror or exc})") from None
    if folder is not None:
        _clean_stale(folder, {os.path.basename(t.src) for t, _ in thumbs.values() if t is not None})
    failed = sum(len(listing.failed) for listing in listings.values())
    return ReportSummary(page, folder, len(listings), sum(scored_per_group.values()), failed, thumb_failures)


def _make_thumbnails(
    paths: list[str], folder: Path | None, config: ReportConfig
) -> dict[str, tuple[Thumbnail | None, str | None]]:
    """Thumbnails for ``paths`` in a thread pool (Pillow releases the GIL while decoding)."""
    prefix = "" if folder is None else folder.name + "/"

    def one(path: str) -> Thumbnail:
        if folder is None:
            return embed_thumbnail(path, config.thumb_size)
        return write_thumbnail(path, folder, prefix, config.thumb_size)

    done: dict[str, tuple[Thumbnail | None, str | None]] = {}
    workers = config.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nima-thumb") as pool:
        futures: dict[str, Future[Thumbnail]] = {path: pool.submit(one, path) for path in dict.fromkeys(paths)}
        for path, future in futures.items():
            try:
                done[path] = (future.result(), None)
            except ThumbnailError as exc:
                done[path] = (None, str(exc))
            except OSError as exc:  # writing into the thumbnails folder
                raise ReportError(f"{folder}: cannot write thumbnail ({exc.strerror or exc})") from None
    return done
