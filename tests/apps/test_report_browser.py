"""The report in real headless Chromium (Debian's package): every thumbnail loads, the best photo of
each listing is marked, and a screenshot is saved. Skipped when Chromium is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_screenshot import screenshot
from helpers.browser_helpers import CHROMIUM, chromium_driver
from helpers.tiny_models import write_tiny_model
from PIL import Image
from test_report import BROKEN, LISTINGS, _photo
from typer.testing import CliRunner

from nima_rt.cli import app

GOLD = np.array([0xD4, 0xA0, 0x17])  # the best photo's border colour in page.py's CSS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs a local Chromium (Debian: apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    photos = root / "photos"
    for listing, reds in LISTINGS.items():
        (photos / listing).mkdir(parents=True)
        for index, red in enumerate(reds):
            Image.fromarray(_photo(red)).save(photos / listing / f"photo_{index}_r{red}.jpg", quality=90)
    (photos / BROKEN).write_bytes(b"not a JPEG")
    model = write_tiny_model(root / "tiny.onnx", name="tiny", size=32)
    page = root / "site" / "report.html"
    result = CliRunner().invoke(app, ["report", str(photos), "-m", str(model), "-o", str(page), "-q"])
    assert result.exit_code == 0, result.output
    return page


def test_screenshot_shows_the_page(report: Path, tmp_path: Path):
    png = screenshot(report, tmp_path / "report.png", width=1100, height=800)
    with Image.open(png) as image:
        assert image.size == (1100, 800)
        pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    assert png.stat().st_size > 20_000
    assert pixels.std() > 20  # not a blank page
    gold = np.all(np.abs(pixels - GOLD) <= 12, axis=-1).sum()
    assert gold > 500, gold  # the best photos' borders and badges were drawn


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    with chromium_driver(tmp_path / "profile", monkeypatch, window=(1000, 700)) as driver:
        yield driver


def test_every_thumbnail_loads_and_each_listing_has_one_best(report: Path, browser: object):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(report.resolve().as_uri())  # type: ignore[attr-defined]
    # Lazy images load when they come near the viewport: scroll each into view.
    driver.execute_script(  # type: ignore[attr-defined]
        "for (const img of document.images) img.scrollIntoView();"
    )
    loaded = "return Array.from(document.images).every(i => i.complete)"
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(loaded))
    state = driver.execute_script(  # type: ignore[attr-defined]
        "return {"
        " widths: Array.from(document.images).map(i => i.naturalWidth),"
        " scripts: document.scripts.length,"
        " listings: Array.from(document.querySelectorAll('section.listing')).map(s => ["
        "   s.querySelector('h2').textContent.split(' ')[0],"
        "   s.querySelectorAll('li.card').length, s.querySelectorAll('li.card.best').length,"
        "   s.querySelectorAll('details.failed li').length]),"
        " failed: Array.from(document.querySelectorAll('details.failed li')).map(li => li.textContent),"
        "}"
    )
    assert len(state["widths"]) == 9 and all(width == 200 for width in state["widths"]), state["widths"]
    assert state["scripts"] == 0
    assert state["listings"] == [["hotel_alpha", 3, 1, 0], ["hotel_beta", 2, 1, 1], ["hotel_gamma", 4, 1, 0]]
    assert state["failed"][0].endswith("broken.jpg: not an image file Pillow can read")
    assert os.path.isfile(report)
