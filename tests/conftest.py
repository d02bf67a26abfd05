"""Shared fixtures: tiny contract models and generated photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.photos import photo_like
from helpers.tiny_models import write_tiny_model
from PIL import Image


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 px tiny contract model named 'tiny'."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx", name="tiny", size=32)


@pytest.fixture
def one_torch_thread():
    """One torch thread for tiny workloads: on a busy 2-core machine a second intra-op thread made
    them several times slower. Imports torch only for the tests that ask for it (skips without it)."""
    torch = pytest.importorskip("torch")

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Six JPEGs/PNGs in two sub-folders."""
    root = tmp_path / "photos"
    for index in range(6):
        folder = root / ("listing_a" if index < 3 else "listing_b")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if index % 2 == 0 else ".png"
        Image.fromarray(photo_like(index)).save(folder / f"img_{index}{suffix}", quality=90)
    return root
