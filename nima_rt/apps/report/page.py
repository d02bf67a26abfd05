"""The report page: one HTML file, inline CSS, no JavaScript, every user string escaped."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from nima_rt.apps.report.thumbnails import Thumbnail
from nima_rt.io.results import ModelScore, ScoreResult

CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --gold: #d4a017; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f6f8fa; }
header { padding: 16px 24px 8px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { margin: 0 0 4px; font-size: 22px; }
.summary { margin: 0 0 8px; color: var(--muted); }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0; }
nav.toc a { padding: 2px 8px; border: 1px solid var(--line); border-radius: 12px; text-decoration: none;
            color: var(--ink); background: #fff; font-size: 12px; }
main { padding: 8px 24px 32px; }
section.listing { margin: 16px 0 24px; }
h2 { font-size: 17px; margin: 0 0 8px; word-break: break-all; }
h2 small { font-weight: normal; color: var(--muted); font-size: 13px; }
ol.cards { list-style: none; margin: 0; padding: 0; display: grid; gap: 12px;
           grid-template-columns: repeat(auto-fill, minmax(var(--card), 1fr)); }
li.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; position: relative; }
li.card.best { border: 2px solid var(--gold); box-shadow: 0 0 0 3px #d4a01733; }
.thumb { display: flex; align-items: center; justify-content: center; height: var(--thumb);
         background: #eaeef2; border-radius: 4px; overflow: hidden; }
.thumb img { max-width: 100%; max-height: 100%; object-fit: contain; height: auto; }
.thumb .nopreview { color: var(--muted); font-size: 12px; padding: 8px; text-align: center; }
.meta { display: flex; gap: 6px; align-items: baseline; margin: 6px 0 2px; }
.rank { font-weight: 600; color: var(--muted); }
.badge { background: var(--gold); color: #fff; font-weight: 700; font-size: 11px; padding: 1px 6px;
         border-radius: 8px; }
.name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; flex: 1; }
.score { display: flex; flex-wrap: wrap; align-items: center; gap: 2px 6px; font-size: 12px; color: var(--muted); }
.score b { font-size: 15px; color: hsl(var(--h), 70%, 32%); }
.score.ranked b { font-size: 17px; }
.score .model { min-width: 0; overflow-wrap: anywhere; flex: 0 1 auto; }  /* full names: aesthetic-ava vs -hotels */
.score svg.dist { margin-left: auto; }
svg.dist { flex: none; }
svg.dist rect { fill: #8c959f; }
svg.dist rect.peak { fill: #0969da; }
details.failed { margin-top: 10px; background: #fff5f5; border: 1px solid #f5c2c7; border-radius: 6px;
                 padding: 6px 10px; }
details.failed summary { cursor: pointer; color: #b42318; font-weight: 600; }
details.failed li { word-break: break-all; }
details.failed code { font-size: 12px; }
footer { color: var(--muted); padding: 0 24px 24px; font-size: 12px; }
.why { font-size: 12px; color: var(--muted); }
"""


@dataclass(frozen=True)
class Card:
    """One scored photo on the page."""

    result: ScoreResult
    rank: int
    best: bool
    thumbnail: Thumbnail | None
    thumbnail_error: str | None = None
    rank_score: float | None = None  # the rank rule's score (ranking.RankedRow)
    best_by: str | None = None  # on the best card: the rule that picked it


@dataclass
class Listing:
    """A group of photos (a listing folder) with its ranked cards and its failed files."""

    key: str
    label: str
    cards: list[Card] = field(default_factory=list)
    failed: list[ScoreResult] = field(default_factory=list)
    hidden: int = 0  # scored photos left out by --top


@dataclass(frozen=True)
class PageInfo:
    """What the page says about the run as a whole."""

    title: str
    columns: Sequence[str]
    rank_column: str
    thumb_size: int
    page_dir: str  # folder of the HTML file, for links to the original photos
    root: str | None = None
    footer: str = ""
    rank_rule: str | None = None  # a --rank-by rule (its text); None: ranked by rank_column's mean


def escape(text: str, quote: bool = True) -> str:
    """``html.escape`` for text that may hold file-name bytes that are not UTF-8 (shown as U+FFFD)."""
    return html.escape(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), quote)


def _hue(mean: float) -> int:
    """Red (score 1) to green (score 10)."""
    return round(max(0.0, min(1.0, (mean - 1.0) / 9.0)) * 130)


def dist_svg(score: ModelScore, width: int = 60, height: int = 22) -> str:
    """The 10-bin distribution as a tiny bar chart; the tooltip lists the probabilities."""
    peak = max(score.dist) or 1.0
    top = max(range(len(score.dist)), key=score.dist.__getitem__)
    step = width / len(score.dist)
    bars = []
    for index, p in enumerate(score.dist):
        bar_h = max(0.5, p / peak * (height - 1))
        cls = ' class="peak"' if index == top else ""
        bars.append(
            f'<rect{cls} x="{index * step + 0.5:.1f}" y="{height - bar_h:.1f}" '
            f'width="{step - 1:.1f}" height="{bar_h:.1f}"/>'
        )
    tip = "score 1..10: " + " ".join(f"{p:.2f}" for p in score.dist)
    return (
        f'<svg class="dist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(tip)}"><title>{escape(tip)}</title>{"".join(bars)}</svg>'
    )


def file_link(path: str, page_dir: str) -> str:
    """A URL from the page to the original photo (relative when possible)."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, page_dir)
    except ValueError:  # another drive (Windows)
        return "file://" + quote(absolute.replace(os.sep, "/"), errors="surrogateescape")
    return quote(relative.replace(os.sep, "/"), errors="surrogateescape")  # the file's own bytes


def _card_html(card: Card, info: PageInfo) -> str:
    result = card.result
    name = os.path.basename(result.path) or result.path
    href = escape(file_link(result.path, info.page_dir), quote=True)
    if card.thumbnail is not None:
        thumb = card.thumbnail
        media = (
            f'<img src="{escape(thumb.src, quote=True)}" width="{thumb.width}" height="{thumb.height}" '
            f'loading="lazy" decoding="async" alt="{escape(name, quote=True)}">'
        )
    else:
        media = f'<span class="nopreview">no preview: {escape(card.thumbnail_error or "unknown")}</span>'
    scores = []
    for column in info.columns:
        score = result.scores.get(column)
        if score is None:
            continue
        ranked = " ranked" if column == info.rank_column else ""
        scores.append(
            f'<div class="score{ranked}" style="--h:{_hue(score.mean)}"><span class="model">{escape(column)}</span>'
            f"<b>{score.mean:.2f}</b><span>&plusmn;{score.std:.2f}</span>{dist_svg(score)}</div>"
        )
    best = '<span class="badge">&#9733; best</span>' if card.best else ""
    if card.best and card.best_by and info.rank_rule:
        scores.append(f'<div class="why">picked by <code>{escape(card.best_by)}</code></div>')
    cls = "card best" if card.best else "card"
    return (
        f'<li class="{cls}" data-path="{escape(result.path, quote=True)}"><a class="thumb" href="{href}">{media}</a>'
        f'<div class="meta"><span class="rank">#{card.rank}</span>{best}'
        f'<span class="name" title="{escape(result.path, quote=True)}">{escape(name)}</span></div>'
        f'{"".join(scores)}</li>'
    )


def _listing_html(index: int, listing: Listing, info: PageInfo) -> str:
    parts = [f'<section class="listing" id="listing-{index}" data-group="{escape(listing.key, quote=True)}">']
    count = f"{len(listing.cards) + listing.hidden} photo{'s' if len(listing.cards) + listing.hidden != 1 else ''}"
    if listing.cards:
        count += f" &middot; best {_best_value(listing, info):.2f}"
    if listing.hidden:
        count += f" &middot; top {len(listing.cards)} shown"
    if listing.failed:
        count += f" &middot; {len(listing.failed)} failed"
    parts.append(f"<h2>{escape(listing.label)} <small>{count}</small></h2>")
    if listing.cards:
        parts.append('<ol class="cards">')
        parts.extend(_card_html(card, info) for card in listing.cards)
        parts.append("</ol>")
    if listing.failed:
        parts.append(f'<details class="failed" open><summary>{len(listing.failed)} failed</summary><ul>')
        for result in listing.failed:
            reason = result.error or "failed"
            if reason.startswith(result.path + ": "):  # errors name their file; the list shows it once
                reason = reason[len(result.path) + 2 :]
            parts.append(f"<li><code>{escape(result.path)}</code>: {escape(reason)}</li>")
        parts.append("</ul></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _best_value(listing: Listing, info: PageInfo) -> float:
    """The best card's ranking value: the rule's score with --rank-by, else the rank column's mean."""
    card = listing.cards[0]
    if info.rank_rule and card.rank_score is not None:
        return card.rank_score
    return card.result.scores[info.rank_column].mean


def render_page(listings: Sequence[Listing], info: PageInfo) -> str:
    """The whole page as a string."""
    scored = sum(len(listing.cards) + listing.hidden for listing in listings)
    failed = sum(len(listing.failed) for listing in listings)
    summary = (
        f"{scored} photo{'s' if scored != 1 else ''} scored in {len(listings)} "
        f"listing{'s' if len(listings) != 1 else ''}, ranked by "
        + (f"<b>{escape(info.rank_rule)}</b>" if info.rank_rule else f"<b>{escape(info.rank_column)}</b> mean")
    )
    if failed:
        summary += f"; <b>{failed}</b> file{'s' if failed != 1 else ''} failed"
    if info.root:
        summary += f". Folder: <code>{escape(info.root)}</code>"
    toc = ""
    if len(listings) > 1:
        links = []
        for index, listing in enumerate(listings):
            best = f" {_best_value(listing, info):.2f}" if listing.cards else ""
            links.append(f'<a href="#listing-{index}">{escape(listing.label)}{best}</a>')
        toc = f'<nav class="toc">{"".join(links)}</nav>'
    card_px = max(info.thumb_size, 160) + 18
    style = f":root {{ --thumb: {info.thumb_size}px; --card: {card_px}px; }}" + CSS
    body = "\n".join(_listing_html(index, listing, info) for index, listing in enumerate(listings))
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info.title)}</title><style>{style}</style></head>\n<body>\n"
        f'<header><h1>{escape(info.title)}</h1><p class="summary">{summary}.</p>{toc}</header>\n'
        f"<main>\n{body}\n</main>\n<footer>{escape(info.footer)}</footer>\n</body></html>\n"
    )
