"""Where the tests find the repository and their fixtures (tests/fixtures/README.md lists what is there)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
EXAMPLE_PHOTOS = REPO / "examples" / "photos"
