"""Headless Chromium through selenium for the browser tests (Debian's chromium + chromium-driver).

The driver path is given explicitly and selenium-manager is kept offline, so nothing is downloaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_screenshot import HEADLESS_FLAGS, find_chromium

CHROMIUM = find_chromium()
CHROMEDRIVER = shutil.which("chromedriver")


@contextmanager
def chromium_driver(profile: Path, monkeypatch: pytest.MonkeyPatch, window: tuple[int, int] = (1000, 700),
                    log_console: bool = False) -> Iterator[object]:
    """A selenium Chrome driver on Debian's Chromium, quit and its profile removed afterwards."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never download a driver
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*HEADLESS_FLAGS, f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if log_console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
