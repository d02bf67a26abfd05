"""End to end in real headless Chromium: rate photos with the keyboard, export, train one epoch.

Uses Debian's ``chromium`` and ``chromium-driver`` through selenium, with the driver path given
explicitly so selenium-manager never downloads anything. Skipped when they are absent.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.browser_helpers import CHROMEDRIVER, CHROMIUM, chromium_driver
from helpers.label_helpers import make_photos, thread_server
from typer.testing import CliRunner

from nima_rt.apps.label.export import COUNT_COLUMNS
from nima_rt.cli import app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    with chromium_driver(tmp_path / "chromium-profile", monkeypatch, window=(1000, 800), log_console=True) as driver:
        yield driver


def _state(driver: object) -> dict[str, str]:
    return driver.execute_script(  # type: ignore[attr-defined]
        "const d = document.body.dataset;"
        "const img = document.getElementById('photo');"
        "return {state: d.state || '', image: d.imageId || '', rated: d.rated || '',"
        " shown: String(img.complete && img.naturalWidth > 0), alt: img.alt, src: img.src};"
    )


def _wait(driver: object, condition: object, what: str) -> dict[str, str]:
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, str] = {}

    def check(d: object) -> bool:
        seen.update(_state(d))
        return bool(condition(seen))  # type: ignore[operator]

    WebDriverWait(driver, 15, poll_frequency=0.05).until(check, f"timed out waiting for {what}: {seen}")
    return dict(seen)


def _press(driver: object, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()  # type: ignore[arg-type]


def _rate_all(driver: object, keys: str) -> list[tuple[int, int | None]]:
    """Press ``keys`` one photo at a time ('s' skips); return (image id, score) for each answer (the page
    knows photos by id only: its alt text and URL never hold the file name)."""
    answers: list[tuple[int, int | None]] = []
    for key in keys:
        now = _wait(driver, lambda s: s["state"] in ("ready", "done"), "a photo")
        if now["state"] == "done":
            break
        assert now["shown"] == "true", now  # the photo really rendered
        _press(driver, key)
        _wait(driver, lambda s, old=now["image"]: s["image"] != old and s["state"] != "busy", "the next photo")
        assert now["alt"] == "photo to rate" and now["src"].endswith(f"/images/{now['image']}"), now
        answers.append((int(now["image"]), None if key == "s" else (10 if key == "0" else int(key))))
    return answers


def _login(driver: object, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.ID, "rater")  # type: ignore[attr-defined]
    field.clear()
    field.send_keys(name + Keys.ENTER)


def test_rate_with_the_keyboard_export_and_train(browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    photos = tmp_path / "photos"
    make_photos(photos, 8, size=(96, 64))
    db = tmp_path / "ratings.sqlite"
    with thread_server(photos, db, ratings_per_image=2) as (server, _):
        browser.get(server.url)  # type: ignore[attr-defined]
        _wait(browser, lambda s: s["state"] == "login", "the name form")
        _login(browser, "ann")

        # undo: rate, take it back (the same photo returns), rate it again differently
        first = _wait(browser, lambda s: s["state"] == "ready", "the first photo")
        assert not browser.find_element(By.ID, "login").is_displayed()  # type: ignore[attr-defined]
        photo = browser.find_element(By.ID, "photo")  # type: ignore[attr-defined]
        assert photo.is_displayed() and photo.size["width"] > 96  # shown large: scaled up to the window
        _press(browser, "3")
        _wait(browser, lambda s: s["image"] != first["image"] and s["state"] == "ready", "the second photo")
        _press(browser, "u")
        back = _wait(browser, lambda s: s["image"] == first["image"] and s["state"] == "ready", "undo")
        assert back["rated"] == "0"
        answers = {"ann": _rate_all(browser, "8s1234567")}
        assert answers["ann"][0] == (int(first["image"]), 8)
        final = _wait(browser, lambda s: s["state"] == "done", "the end of ann's photos")
        assert final["rated"] == "7"
        assert browser.find_element(By.ID, "done").is_displayed()  # type: ignore[attr-defined]

        browser.find_element(By.ID, "switch").click()  # type: ignore[attr-defined]
        _login(browser, "bob")
        answers["bob"] = _rate_all(browser, "9012345678")
        _wait(browser, lambda s: s["state"] == "done", "the end of bob's photos")
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
        assert severe == []  # no CSP violation, no failed request, no script error

    # bob gets the 7 photos ann rated (to reach K=2) and the one she skipped
    assert len(answers["ann"]) == 8 and len(answers["bob"]) == 8
    with sqlite3.connect(db) as connection:
        stored = connection.execute(
            "SELECT ra.name, r.image_id, r.score FROM ratings r JOIN raters ra ON ra.id = r.rater_id ORDER BY r.id"
        ).fetchall()
        path_of = dict(connection.execute("SELECT id, path FROM images").fetchall())
    assert stored == [(rater, image, score) for rater in ("ann", "bob") for image, score in answers[rater]]

    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(app, ["label", "export", "--db", str(db), "--out", str(out), "--group-by", "parent"])
    assert result.exit_code == 0, result.output
    with out.open(newline="") as stream:
        rows = {row["path"]: row for row in csv.DictReader(stream)}
    assert len(rows) == 8
    for rater in ("ann", "bob"):
        for image, score in answers[rater]:
            if score is not None:
                assert int(rows[str(photos.resolve() / path_of[image])][COUNT_COLUMNS[score - 1]]) >= 1
    assert sum(int(row[c]) for row in rows.values() for c in COUNT_COLUMNS) == 15

    # one epoch of the project's trainer on the export (tiny backbone, 32 px, CPU: a few seconds)
    pytest.importorskip("torch", reason="training needs the 'train' extra")
    runs = tmp_path / "runs"
    train_args = ["train", "--labels", str(out), "--backbone", "mobilenetv3_small_050", "--pretrained", "none"]
    train_args += ["--image-size", "32", "--head-epochs", "1", "--full-epochs", "0", "--batch-size", "4"]
    train_args += ["--workers", "0", "--device", "cpu", "--out", str(runs), "--name", "labelled"]
    result = CliRunner().invoke(app, train_args)
    assert result.exit_code == 0, result.output
    (run,) = runs.iterdir()
    assert (run / "best.pt").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch = metrics[-1]
    assert (epoch["epoch"], epoch["stage"], epoch["skipped_images"]) == (1, "head", 0)
    assert epoch["train_count"] + epoch["val_count"] == 8 and math.isfinite(epoch["train_emd"])
    # the trainer's targets are the ratings given in the browser: same mean score over all photos
    scores: dict[str, list[int]] = {}
    for rater in ("ann", "bob"):
        for path, score in answers[rater]:
            if score is not None:
                scores.setdefault(path, []).append(score)
    expected = sum(sum(values) / len(values) for values in scores.values()) / len(scores)
    trained = (
        epoch["train_true_mean_mean"] * epoch["train_count"] + epoch["val_true_mean_mean"] * epoch["val_count"]
    ) / 8
    assert trained == pytest.approx(expected, abs=1e-4)
