"""nima-rt report: ranked listings, thumbnails, best marks, failures, escaping, score files."""

from __future__ import annotations

import base64
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from helpers.tiny_models import reference_scores, write_tiny_model
from PIL import Image
from typer.testing import CliRunner

from nima_rt.apps.report import ReportConfig, build_report, read_score_file
from nima_rt.apps.report.page import dist_svg
from nima_rt.cli import app
from nima_rt.io.inputs import SKIP_MARKER
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.io.scores.writers import CsvWriter, JsonlWriter, OutputError, ParquetWriter
from nima_rt.runtime.scorer import Scorer, ScorerConfig

# Listing -> red level of each photo. The tiny model scores redder images higher, so the ranking
# inside each listing is known from construction: the reddest photo is the best.
LISTINGS = {
    "hotel_alpha": [40, 200, 120],
    "hotel_beta": [230, 60],
    "hotel_gamma": [90, 150, 10, 250],
}
BROKEN = "hotel_beta/broken.jpg"


def _photo(red: int, width: int = 300, height: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.float32)
    image[..., 0] = red
    image[..., 1] = 100 + 40 * np.sin(xx / 9.0)
    image[..., 2] = 80 + 30 * np.cos(yy / 7.0)
    return image.clip(0, 255).astype(np.uint8)


@pytest.fixture
def listings(tmp_path: Path) -> Path:
    """Three listing folders of PNG photos and one file that is not an image."""
    root = tmp_path / "photos"
    for listing, reds in LISTINGS.items():
        (root / listing).mkdir(parents=True)
        for index, red in enumerate(reds):
            Image.fromarray(_photo(red)).save(root / listing / f"photo_{index}_r{red}.png")
    (root / BROKEN).write_bytes(b"this is not a JPEG")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx", name="tiny", size=32)


class PageParser(HTMLParser):
    """Collects what the tests check: listings, cards (with their images) and failed entries."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: list[dict] = []
        self.cards: list[dict] = []
        self.failed_paths: list[str] = []
        self.stack: list[str] = []
        self._in_h2 = self._in_failed = self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "listing":
            self.listings.append({"group": a["data-group"], "title": "", "cards": []})
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "li" and (a.get("class") or "").startswith("card"):
            card = {"path": a["data-path"], "best": "best" in (a.get("class") or "").split(), "imgs": []}
            self.cards.append(card)
            self.listings[-1]["cards"].append(card)
        elif tag == "img":
            self.cards[-1]["imgs"].append(a)
        elif tag == "a" and a.get("class") == "thumb":
            self.cards[-1]["href"] = a["href"]
        elif tag == "details":
            self._in_failed = True
        elif tag == "code" and self._in_failed:
            self._in_code = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        elif tag == "details":
            self._in_failed = False
        elif tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.listings[-1]["title"] += data
        if self._in_code:
            self.failed_paths.append(data)


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", *args])
    text = result.output
    if result.exit_code == 2:  # typer draws usage errors in a box; keep just the words
        text = " ".join(text.replace("│", " ").split())
    return result.exit_code, text


def _red(path: str) -> int:
    return int(Path(path).stem.rsplit("_r", 1)[1])


def test_report_names_listings_ranks_marks_best_and_lists_failures(listings: Path, model: Path, tmp_path: Path):
    page = tmp_path / "out" / "report.html"
    code, output = _run(str(listings), "-m", str(model), "-o", str(page))
    assert code == 0, output
    assert "9 photos in 3 listing(s), 1 failed" in output
    parsed = parse(page)

    assert [listing["group"] for listing in parsed.listings] == [str(listings / name) for name in LISTINGS]
    for listing, name in zip(parsed.listings, LISTINGS, strict=True):
        assert listing["title"].startswith(name + " ")
        reds = [_red(card["path"]) for card in listing["cards"]]
        assert reds == sorted(LISTINGS[name], reverse=True)  # best first
        assert [card["best"] for card in listing["cards"]] == [True] + [False] * (len(reds) - 1)
    assert "photo_1_r200.png" in parsed.listings[0]["cards"][0]["path"]

    # One thumbnail per scored photo, each pointing at a real JPEG beside the page.
    assert len(parsed.cards) == 9
    for card in parsed.cards:
        assert len(card["imgs"]) == 1
        img = card["imgs"][0]
        assert img["loading"] == "lazy"
        thumb = page.parent / unquote(img["src"])
        assert thumb.is_file(), img["src"]
        with Image.open(thumb) as opened:
            assert opened.format == "JPEG"
            assert opened.size == (int(img["width"]), int(img["height"])) == (200, 133)
        assert (page.parent / unquote(card["href"])).resolve() == Path(card["path"]).resolve()
    assert len(list((page.parent / "report_files").glob("*.jpg"))) == 9
    assert (page.parent / "report_files" / SKIP_MARKER).is_file()  # walks of the photos leave it out

    # The failed file is listed, with its reason, inside its listing.
    assert parsed.failed_paths == [str(listings / BROKEN)]
    text = page.read_text(encoding="utf-8")
    assert "not an image file Pillow can read" in text
    assert "1 failed" in parsed.listings[1]["title"]


def test_report_scores_match_the_model(listings: Path, model: Path, tmp_path: Path):
    page = tmp_path / "report.html"
    assert _run(str(listings / "hotel_alpha"), "-m", str(model), "-o", str(page))[0] == 0
    text = page.read_text(encoding="utf-8")
    from nima_rt.contract.spec import ResizeSpec, resize_image

    for red in LISTINGS["hotel_alpha"]:
        small = np.asarray(resize_image(Image.fromarray(_photo(red)), 32, ResizeSpec()))
        _, mean, std = reference_scores(small[None])
        assert f"<b>{mean[0]:.2f}</b><span>&plusmn;{std[0]:.2f}</span>" in text


def test_top_and_flat_ranking(listings: Path, model: Path, tmp_path: Path):
    page = tmp_path / "top.html"
    assert _run(str(listings), "-m", str(model), "-o", str(page), "--top", "1")[0] == 0
    parsed = parse(page)
    assert [len(listing["cards"]) for listing in parsed.listings] == [1, 1, 1]
    assert [_red(listing["cards"][0]["path"]) for listing in parsed.listings] == [200, 230, 250]
    assert "top 1 shown" in parsed.listings[2]["title"]
    assert len(list((tmp_path / "top_files").glob("*.jpg"))) == 3

    flat = tmp_path / "flat.html"
    assert _run(str(listings), "-m", str(model), "-o", str(flat), "--group-by", "none")[0] == 0
    parsed = parse(flat)
    assert len(parsed.listings) == 1
    reds = [_red(card["path"]) for card in parsed.cards]
    assert reds == sorted(sum(LISTINGS.values(), []), reverse=True)
    assert sum(card["best"] for card in parsed.cards) == 1 and parsed.cards[0]["best"]


def test_embedded_thumbnails_need_no_folder(listings: Path, model: Path, tmp_path: Path):
    page = tmp_path / "one.html"
    assert _run(str(listings / "hotel_beta"), "-m", str(model), "-o", str(page), "--embed",
                "--thumb-size", "64")[0] == 0
    assert not (tmp_path / "one_files").exists()
    parsed = parse(page)
    assert len(parsed.cards) == 2
    for card in parsed.cards:
        src = card["imgs"][0]["src"]
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as opened:
            assert opened.size == (64, 43)


def test_file_names_are_escaped(tmp_path: Path, model: Path):
    folder = tmp_path / 'a&b <listing>'
    folder.mkdir()
    evil = '"><script>alert(1)<!--.png'
    Image.fromarray(_photo(100)).save(folder / evil)
    (folder / "<img src=x onerror=alert(2)>.jpg").write_bytes(b"broken")
    page = tmp_path / "r.html"
    assert _run(str(folder), "-m", str(model), "-o", str(page), "--title", "<b>mine</b>")[0] == 0
    text = page.read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text and "<b>mine</b>" not in text
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;!--.png" in text
    assert "&lt;img src=x onerror=alert(2)&gt;.jpg" in text
    parsed = parse(page)
    assert parsed.cards[0]["path"] == str(folder / evil)
    assert (page.parent / unquote(parsed.cards[0]["href"])).resolve() == (folder / evil).resolve()


def test_file_names_that_are_not_utf8(tmp_path: Path, model: Path):
    folder = tmp_path / "listing"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"  # Latin-1 bytes in a file name
    Image.fromarray(_photo(90)).save(raw.decode("utf-8", "surrogateescape"))
    page = tmp_path / "r.html"
    code, output = _run(str(folder), "-m", str(model), "-o", str(page))
    assert code == 0, output
    parsed = parse(page)
    assert parsed.cards[0]["path"].endswith("/caf\ufffd.png")
    assert parsed.cards[0]["href"] == "listing/caf%E9.png"  # the link keeps the real bytes
    assert (page.parent / unquote(parsed.cards[0]["imgs"][0]["src"])).is_file()


def _scored(listings: Path, model: Path) -> tuple[list[str], list[ScoreResult]]:
    with Scorer([str(model)], ScorerConfig(workers=1, threads=1)) as scorer:
        return scorer.columns, list(scorer.score_paths([listings]))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_score_files_read_back(listings: Path, model: Path, tmp_path: Path, suffix: str):
    columns, results = _scored(listings, model)
    path = tmp_path / f"scores.{suffix}"
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
        writer = ParquetWriter(str(path), columns)
    else:
        stream = open(path, "w", encoding="utf-8", newline="")
        writer = CsvWriter(stream, columns) if suffix == "csv" else JsonlWriter(stream, columns)
    for result in results:
        writer.write(result)
    writer.close()
    if suffix != "parquet":
        stream.close()
    read_columns, rows = read_score_file(path)
    assert read_columns == ["tiny"]
    assert [(r.path, r.error) for r in rows] == [(r.path, r.error) for r in results]
    for got, want in zip(rows, results, strict=True):
        if want.ok:
            assert got.scores["tiny"].mean == pytest.approx(want.scores["tiny"].mean, abs=1e-5)
            assert got.scores["tiny"].dist == pytest.approx(want.scores["tiny"].dist, abs=1e-5)

    page = tmp_path / "from_file.html"
    code, output = _run("--scores", str(path), "-o", str(page))
    assert code == 0, output
    parsed = parse(page)
    assert [_red(c["path"]) for c in parsed.listings[2]["cards"]] == [250, 150, 90, 10]
    assert parsed.failed_paths == [str(listings / BROKEN)]


def test_score_file_from_score_command_with_groups(listings: Path, model: Path, tmp_path: Path):
    scores = tmp_path / "s.csv"
    result = CliRunner().invoke(app, ["score", str(listings), "-m", str(model), "-o", str(scores),
                                      "--group-by", "parent", "-q"])
    assert result.exit_code == 0, result.output
    columns, rows = read_score_file(scores)
    assert columns == ["tiny"] and len(rows) == 10


def test_usage_and_input_errors(listings: Path, model: Path, tmp_path: Path):
    code, output = _run(str(listings), "--scores", str(tmp_path / "x.csv"), "-o", str(tmp_path / "r.html"))
    assert code == 2 and "not both" in output
    code, output = _run("-o", str(tmp_path / "r.html"))
    assert code == 2

    missing = tmp_path / "nope.csv"
    code, output = _run("--scores", str(missing), "-o", str(tmp_path / "r.html"))
    assert code == 1
    assert output.strip() == f"error: {missing}: cannot read score file (No such file or directory)"

    bad = tmp_path / "bad.csv"
    bad.write_text("file,score\na.jpg,5\n")
    code, output = _run("--scores", str(bad), "-o", str(tmp_path / "r.html"))
    assert code == 1 and output.strip() == f"error: {bad}: not a nima-rt score file (header starts 'file, score')"

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps({"path": "a.jpg", "error": None, "m": {"mean": 5, "std": 1, "dist": [1]}}) + "\n")
    with pytest.raises(OutputError, match=r"bad.jsonl:1: dist has 1 values, expected 10"):
        read_score_file(bad_json)

    code, output = _run(str(listings), "-m", str(model), "-o", str(tmp_path / "r.html"), "--sort-by", "nope")
    assert code == 1 and "--sort-by nope: no such model column (have tiny)" in output


def test_rows_without_the_ranked_score_are_listed_as_failed(tmp_path: Path):
    score = ModelScore(6.0, 1.0, (0.0,) * 5 + (1.0,) + (0.0,) * 4)
    rows = [ScoreResult("x/a.jpg", None, {"m": score}), ScoreResult("x/b.jpg", None, {})]
    summary = build_report(rows, ["m"], tmp_path / "r.html", ReportConfig())
    assert (summary.scored, summary.failed, summary.thumbnail_failures) == (1, 1, 1)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "has no &#x27;m&#x27; score" in text
    assert "no preview: x/a.jpg: cannot make a thumbnail" in text  # the file does not exist here


def test_stale_thumbnails_are_removed(listings: Path, model: Path, tmp_path: Path):
    page = tmp_path / "r.html"
    assert _run(str(listings), "-m", str(model), "-o", str(page))[0] == 0
    (tmp_path / "r_files" / "mine.txt").write_text("kept")
    assert _run(str(listings / "hotel_beta"), "-m", str(model), "-o", str(page))[0] == 0
    assert sorted(p.name[-4:] for p in (tmp_path / "r_files").iterdir()) == [".jpg", ".jpg", ".txt", "skip"]


def test_distribution_bars_scale_to_the_peak():
    svg = dist_svg(ModelScore(5.5, 1.0, (0, 0, 0, 0.1, 0.4, 0.4, 0.1, 0, 0, 0)), width=100, height=24)
    heights = [float(h) for h in __import__("re").findall(r'height="([0-9.]+)"/>', svg)]
    assert heights == [0.5, 0.5, 0.5, 5.8, 23.0, 23.0, 5.8, 0.5, 0.5, 0.5]
    assert svg.count('class="peak"') == 1
    assert "score 1..10: 0.00 0.00 0.00 0.10 0.40 0.40 0.10 0.00 0.00 0.00" in svg
