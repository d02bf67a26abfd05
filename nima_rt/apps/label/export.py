"""Turn a ratings database into training labels (vote counts per image) and measure rater agreement.

The CSV has one row per image: ``path`` and the ten vote-count columns the generic CSV reader of
``nima-rt train`` takes (:data:`COUNT_COLUMNS`), plus ``group`` (the photo's folder) when asked, which
that reader uses to keep a folder's photos (one hotel, one shoot) on one side of a train/validation
split. Skips are not votes. Agreement is summarised as

- the mean over images (with two or more ratings) of the per-image standard deviation of the scores
  (population std, like the ``std`` a NIMA model predicts);
- Spearman's rank correlation between every two raters over the images both rated (ties get their
  average rank; pairs with fewer than ``min_overlap`` shared images, or a constant side, are left out).

Only the standard library is used, so the export runs where only the runtime is installed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TextIO

from nima_rt.apps.label.store import LabelError, Store
from nima_rt.runtime.metrics import spearman

COUNT_COLUMNS = tuple(f"votes_{score}" for score in range(1, 11))
CSV_COLUMNS = ("path", *COUNT_COLUMNS)
DEFAULT_MIN_OVERLAP = 3


@dataclass(frozen=True)
class ImageVotes:
    """Vote counts for one image; ``path`` as written to the CSV."""

    path: str
    counts: tuple[int, ...]  # votes for scores 1..10
    group: str | None = None  # the photo's folder relative to the images folder ('.' at the top)

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class PairAgreement:
    rater_a: str
    rater_b: str
    overlap: int  # images both rated
    spearman: float


@dataclass(frozen=True)
class RaterSummary:
    name: str
    ratings: int
    skips: int
    mean_score: float | None
    mean_spearman: float | None  # over this rater's pairs in ``pairs``


@dataclass(frozen=True)
class AgreementSummary:
    """What :func:`summarise` measured; ``None`` where there was nothing to measure."""

    images: int  # images exported (at least min_ratings ratings)
    dropped: int  # images with some ratings but fewer than min_ratings
    ratings: int  # ratings in the exported images
    raters: int
    mean_ratings_per_image: float | None
    mean_image_std: float | None  # over exported images with >= 2 ratings
    mean_pairwise_spearman: float | None
    pairs: list[PairAgreement] = field(default_factory=list)
    per_rater: list[RaterSummary] = field(default_factory=list)

    def lines(self) -> list[str]:
        """A short human summary (for stderr)."""

        def number(value: float | None, digits: int = 3) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        out = [
            f"exported {self.images} images ({self.ratings} ratings from {self.raters} raters, "
            f"{number(self.mean_ratings_per_image, 2)} per image); dropped {self.dropped} with too few ratings",
            f"agreement: mean per-image std {number(self.mean_image_std)} (scores 1-10); "
            f"mean pairwise Spearman {number(self.mean_pairwise_spearman)} over {len(self.pairs)} rater pairs",
        ]
        for rater in self.per_rater:
            out.append(
                f"  {rater.name}: {rater.ratings} ratings, {rater.skips} skips, mean score "
                f"{number(rater.mean_score, 2)}, mean Spearman with others {number(rater.mean_spearman)}"
            )
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(scores: Sequence[int]) -> float:
    mean = sum(scores) / len(scores)
    return math.sqrt(sum((score - mean) ** 2 for score in scores) / len(scores))


def collect(
    store: Store,
    min_ratings: int = 1,
    min_overlap: int = DEFAULT_MIN_OVERLAP,
    absolute: bool = True,
    group_by: str | None = None,
) -> tuple[list[ImageVotes], AgreementSummary]:
    """Vote counts for every image with at least ``min_ratings`` ratings, and the agreement summary.

    ``absolute``: write paths joined to the images folder the database was served from (default),
    else relative to it. ``group_by="parent"``: fill :attr:`ImageVotes.group` with the photo's folder.
    """
    if group_by not in (None, "parent"):
        raise LabelError(f"--group-by must be 'parent', got {group_by!r}")
    if min_ratings < 1:
        raise LabelError(f"--min-ratings must be at least 1, got {min_ratings}")
    images_dir = store.meta("images_dir")
    if absolute and images_dir is None:
        raise LabelError(f"{store.path}: the database has no images folder recorded (was it ever served?)")
    rows = store.query(
        "SELECT i.path, ra.name, r.score FROM ratings AS r "
        "JOIN images AS i ON i.id = r.image_id JOIN raters AS ra ON ra.id = r.rater_id "
        "ORDER BY i.path, r.id"
    )
    by_image: dict[str, list[int]] = defaultdict(list)
    by_rater: dict[str, dict[str, int]] = defaultdict(dict)
    skips: dict[str, int] = defaultdict(int)
    for path, name, score in rows:
        if score is None:
            skips[str(name)] += 1
            by_rater.setdefault(str(name), {})
            continue
        by_image[str(path)].append(int(score))  # type: ignore[call-overload]
        by_rater[str(name)][str(path)] = int(score)  # type: ignore[call-overload]

    kept = {path: scores for path, scores in by_image.items() if len(scores) >= min_ratings}
    votes = []
    for path in sorted(kept):
        counts = [0] * 10
        for score in kept[path]:
            counts[score - 1] += 1
        shown = os.path.join(images_dir, *path.split("/")) if absolute and images_dir else path
        group = (path.rpartition("/")[0] or ".") if group_by == "parent" else None
        votes.append(ImageVotes(shown, tuple(counts), group))

    pairs = []
    for name_a, name_b in combinations(sorted(by_rater), 2):
        shared = sorted(set(by_rater[name_a]) & set(by_rater[name_b]) & set(kept))
        if len(shared) < min_overlap:
            continue
        rho = spearman([by_rater[name_a][p] for p in shared], [by_rater[name_b][p] for p in shared])
        if not math.isnan(rho):  # undefined when a rater gave one score to every shared photo
            pairs.append(PairAgreement(name_a, name_b, len(shared), rho))
    per_rater = []
    for name in sorted(by_rater):
        scores = list(by_rater[name].values())
        own = [pair.spearman for pair in pairs if name in (pair.rater_a, pair.rater_b)]
        per_rater.append(RaterSummary(name, len(scores), skips[name], _mean(scores), _mean(own)))

    summary = AgreementSummary(
        images=len(kept),
        dropped=len(by_image) - len(kept),
        ratings=sum(len(scores) for scores in kept.values()),
        raters=len(by_rater),
        mean_ratings_per_image=_mean([len(scores) for scores in kept.values()]),
        mean_image_std=_mean([_std(scores) for scores in kept.values() if len(scores) >= 2]),
        mean_pairwise_spearman=_mean([pair.spearman for pair in pairs]),
        pairs=pairs,
        per_rater=per_rater,
    )
    return votes, summary


def write_csv(votes: Sequence[ImageVotes], stream: TextIO) -> None:
    """Write ``path`` and the ten vote counts (and ``group`` when the votes carry one), one row per image."""
    grouped = any(item.group is not None for item in votes)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "group"] if grouped else CSV_COLUMNS)
    for item in votes:
        writer.writerow([item.path, *item.counts, item.group] if grouped else [item.path, *item.counts])


def split_holdout(
    votes: Sequence[ImageVotes], fraction: float, seed: int = 0
) -> tuple[list[ImageVotes], list[ImageVotes]]:
    """Hold out about ``fraction`` of the images for testing, whole groups at a time.

    Images without a group are their own group. Groups are drawn in a seeded shuffle until the test
    side has at least ``round(fraction * N)`` images; both sides keep the input order.
    """
    if not 0.0 < fraction < 1.0:
        raise LabelError(f"--test-fraction must be between 0 and 1, got {fraction}")
    groups: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(votes):
        groups[item.group if item.group is not None else item.path].append(index)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target = max(1, round(fraction * len(votes)))
    test: set[int] = set()
    for name in order:
        if len(test) >= target:
            break
        test.update(groups[name])
    if len(test) == len(votes) or not test:
        raise LabelError(
            f"cannot hold out {fraction:.0%} of {len(votes)} images in {len(groups)} group(s) and keep any for training"
        )
    return [v for i, v in enumerate(votes) if i not in test], [v for i, v in enumerate(votes) if i in test]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_labels` wrote."""

    summary: AgreementSummary
    written: list[tuple[str, int]]  # (file, images) per CSV written


def _write_file(votes: Sequence[ImageVotes], out: str | os.PathLike[str]) -> None:
    if str(out) == "-":
        write_csv(votes, sys.stdout)
        sys.stdout.flush()
        return
    try:
        with Path(out).open("w", newline="", encoding="utf-8") as stream:
            write_csv(votes, stream)
    except OSError as exc:
        raise LabelError(f"{out}: cannot write the labels CSV ({exc.strerror or exc})") from None


def export_labels(
    db: str | os.PathLike[str],
    out: str | os.PathLike[str],
    min_ratings: int = 1,
    min_overlap: int = DEFAULT_MIN_OVERLAP,
    absolute: bool = True,
    group_by: str | None = None,
    test_out: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ExportResult:
    """Export ``db`` to the CSV ``out`` (``-`` for stdout) and report agreement over everything exported.

    With ``test_out``, about ``test_fraction`` of the images (whole groups) go to that CSV instead,
    held out from training for a final evaluation.
    """
    with Store.open(db, read_only=True) as store:  # never writes: a database the user cannot write is read
        votes, summary = collect(store, min_ratings, min_overlap, absolute, group_by)
    if test_out is None:
        _write_file(votes, out)
        return ExportResult(summary, [(str(out), len(votes))])
    if str(test_out) == "-" or str(out) == "-":
        raise LabelError("with --test-out, both --out and --test-out must be files")
    if Path(test_out).resolve() == Path(out).resolve():
        raise LabelError(f"--test-out {test_out} is the same file as --out")
    train, test = split_holdout(votes, test_fraction, seed)
    _write_file(train, out)
    _write_file(test, test_out)
    return ExportResult(summary, [(str(out), len(train)), (str(test_out), len(test))])


__all__ = [
    "COUNT_COLUMNS",
    "CSV_COLUMNS",
    "AgreementSummary",
    "ExportResult",
    "ImageVotes",
    "PairAgreement",
    "RaterSummary",
    "collect",
    "export_labels",
    "split_holdout",
    "write_csv",
]
