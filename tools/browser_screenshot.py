"""A screenshot of a report page with a local headless Chromium (for tests and the docs image).

Nothing is downloaded: the browser must be installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


class ScreenshotError(RuntimeError):
    """The browser is missing or did not write the screenshot; ``str()`` says why."""


def find_chromium() -> str | None:
    """The first Chromium/Chrome on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: str | os.PathLike[str], png: str | os.PathLike[str], width: int = 1280, height: int = 900,
               chromium: str | None = None, timeout: float = 90.0) -> Path:
    """Open ``page`` through file:// in headless Chromium and save a ``width`` x ``height`` PNG."""
    browser = chromium or find_chromium()
    if browser is None:
        raise ScreenshotError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH)")
    target = Path(png).resolve()
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="nima-rt-chromium-") as profile:
        command = [browser, *HEADLESS_FLAGS, f"--user-data-dir={profile}", f"--screenshot={target}",
                   f"--window-size={width},{height}", "--virtual-time-budget=3000", Path(page).resolve().as_uri()]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"{browser} took more than {timeout:.0f} s to render {page}") from None
    if not target.is_file():
        tail = " ".join(completed.stderr.split())[-300:]
        raise ScreenshotError(f"{browser} exited with {completed.returncode} without writing {target} ({tail})")
    return target
