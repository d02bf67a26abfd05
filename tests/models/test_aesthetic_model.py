"""The bundled aesthetic model (nima_rt/models/aesthetic.onnx): idealo's weights, provenance, licence, scores."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from helpers.paths import REPO

from nima_rt import Scorer, ScorerConfig, bundled_models, load_model_file

pytestmark = pytest.mark.skipif("aesthetic" not in bundled_models(), reason="no bundled aesthetic model")

# Mean scores of the example photos (ONNX Runtime, CPU, fp32, exact decode), recorded when the model was
# shipped; the tolerance covers ONNX Runtime versions and CPU kernels, not another model.
GOLDEN = {
    "chelsea.jpg": 5.1699,
    "chelsea_noisy.jpg": 4.5729,
    "coffee.jpg": 5.4090,
    "coffee_blurred.jpg": 3.9232,
    "seeding.jpg": 5.0395,
    "seeding_dark.jpg": 4.9012,
}
BLOB = "003fb321ce92445e41d708144a3656589f9214e7"
SHA256 = "e563ad91b3d47410e45f7238f07ab8f6abd1bd0c4b18a4b0af9c681a21a91cb2"


def test_metadata_names_the_source_licence_and_reported_figures() -> None:
    model = load_model_file("aesthetic")
    meta = model.metadata
    assert (meta.name, meta.kind, meta.input_size, meta.backbone) == ("aesthetic", "aesthetic", 224,
                                                                       "keras_mobilenet_v1_1.00")
    assert (meta.resize.policy, meta.resize.interpolation, meta.resize.jpeg_draft) == ("squash", "nearest", False)
    assert (meta.normalization.mean, meta.normalization.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert meta.source_checkpoint_sha256 == SHA256
    assert "AVA" in meta.trained_on
    assert meta.licenses == [
        "Apache-2.0, Copyright 2018 idealo internet GmbH: weights from "
        "https://github.com/idealo/image-quality-assessment (models/MobileNet/weights_mobilenet_aesthetic_0.07.hdf5), "
        "converted to ONNX by nima-rt; licence text and attribution in aesthetic.LICENSE.txt beside this file"]
    assert f"git blob {BLOB}" in meta.notes and f"sha256 {SHA256}" in meta.notes
    assert "not re-measured" in meta.notes
    assert {k: meta.metrics[k] for k in ("reported_ava_emd", "reported_ava_lcc", "reported_ava_srcc")} == {
        "reported_ava_emd": 0.071, "reported_ava_lcc": 0.626, "reported_ava_srcc": 0.609}
    assert meta.metrics["keras_parity_max_abs_mean"] <= 1e-3 and meta.metrics["keras_parity_photos"] >= 100
    assert model.path.stat().st_size < 20 * 1024 * 1024


def test_idealo_licence_and_attribution_ship_beside_the_model() -> None:
    text = (load_model_file("aesthetic").path.parent / "aesthetic.LICENSE.txt").read_text(encoding="utf-8")
    assert "Copyright 2018 idealo internet GmbH" in text
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert BLOB in text and SHA256 in text


def test_example_photos_get_their_recorded_scores() -> None:
    photos = sorted((REPO / "examples" / "photos").glob("*.jpg"))
    with Scorer(["aesthetic"], ScorerConfig(batch_size=8, threads=1)) as scorer:
        scores = {Path(r.path).name: r.scores["aesthetic"].mean for r in scorer.score_paths(photos)}
    assert scores == pytest.approx(GOLDEN, abs=0.002)
    assert scores["coffee.jpg"] > scores["coffee_blurred.jpg"] + 1.0  # the blurred copy is the worse photo


def test_the_ship_tool_refuses_any_other_file() -> None:
    from ship_aesthetic import WeightsError, check_weights, git_blob_id

    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    with pytest.raises(WeightsError, match=r"^x.hdf5: not idealo's models/MobileNet/weights_mobilenet_aesthetic"):
        check_weights(b"\x89HDF\r\n\x1a\n", "x.hdf5")


def test_the_wheel_carries_the_model_and_its_licence(tmp_path: Path) -> None:
    """What `pip wheel .` packs for nima_rt/models (package data), checked on a wheel built from this tree."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.skip(f"pip wheel could not build here: {out.stderr.strip()[-200:]}")
    (wheel,) = tmp_path.glob("nima_rt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = archive.read("nima_rt/models/aesthetic.onnx")
    assert {"nima_rt/models/aesthetic.onnx", "nima_rt/models/aesthetic.LICENSE.txt"} <= names
    assert hashlib.sha256(shipped).hexdigest() == load_model_file("aesthetic").sha256
