"""The docs stand on their own: every relative link in README.md, CONTRIBUTING.md and docs/ points at a file of
the repository, and every #anchor at a heading of the page it names (GitHub's heading slugs)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.paths import REPO

HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def pages() -> list[Path]:
    return sorted([*REPO.glob("*.md"), *(REPO / "docs").rglob("*.md")])


def broken_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for link in LINK.findall(text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md":
            headings = {slug(h) for h in HEADING.findall(FENCE.sub("", target.read_text(encoding="utf-8")))}
            if anchor not in headings:
                broken.append(f"{link}: no heading #{anchor} in {target.name}")
    return broken


def test_slugs_follow_github() -> None:
    assert slug("The seed's job: two models against idealo's Keras (`benchmarks/seed_job.py`)") == (
        "the-seeds-job-two-models-against-idealos-keras-benchmarksseed_jobpy")
    assert slug("Technical v3 (bundled): what changed, the cross-source table, the decision") == (
        "technical-v3-bundled-what-changed-the-cross-source-table-the-decision")


def test_every_relative_link_and_anchor_resolves() -> None:
    assert len(pages()) >= 10
    broken = {str(page.relative_to(REPO)): links for page in pages() if (links := broken_links(page))}
    assert broken == {}


def test_a_dead_link_and_a_dead_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-section) [gone](missing.md) [no anchor](other.md#b-section) [self](#top)\n"
                    "```\n[in a code block](ignored.md)\n```\n# Top\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md: no such file", "other.md#b-section: no heading #b-section in other.md"]
