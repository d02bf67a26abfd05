"""Graded image distortions for a TID/KADID-style technical-quality dataset.

Every distortion takes an RGB uint8 array ``[H, W, 3]`` and returns a new one of the same shape;
randomness (noise, motion direction) comes only from the ``numpy.random.Generator`` passed in, so a
dataset is reproducible from its seed.

Each type has five levels (:data:`DISTORTIONS`), mildest first. Parameters are meant for images
whose *shorter side is about 384 pixels* (KADID-10k's 512 x 384), the resolution at which
``build_dataset`` applies them; :func:`apply` scales spatial parameters (blur sizes, block sizes)
by ``shorter_side / 384`` for other sizes so a level looks the same at any resolution.

The levels were chosen to be visible after the model's 224-pixel resize and to spread over the
human-opinion range KADID-10k measured for the same distortion (``train/datasets/kadid.py`` turns a level's
parameter into a label by interpolating KADID's scores along KADID's own parameter axis). Where a
re-implementation only approximates KADID's, the docstring says so (and docs/reference/models.md).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

REFERENCE_SHORT_SIDE = 384  # KADID-10k images are 512 x 384
NUM_LEVELS = 5


class DistortionError(ValueError):
    """An unknown distortion type or level, or an image it cannot be applied to."""


# --- helpers -------------------------------------------------------------------------------------


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter each channel with a 2-D kernel, replicating the border (float in, float out)."""
    from scipy import ndimage

    return np.stack([ndimage.convolve(image[..., c], kernel, mode="nearest") for c in range(3)], axis=-1)


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb

    return lab2rgb(lab)


# --- the distortions -----------------------------------------------------------------------------


def gaussian_blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (KADID #1 uses the same filter)."""
    return _to_uint8(_gaussian(_to_float(image), sigma))


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel ``length`` pixels long at ``angle_deg`` (anti-aliased by supersampling)."""
    size = int(np.ceil(length)) | 1
    size = max(size, 3)
    kernel = np.zeros((size, size), dtype=np.float64)
    centre = (size - 1) / 2.0
    theta = np.deg2rad(angle_deg)
    for t in np.linspace(-length / 2.0, length / 2.0, max(8, int(length * 8))):
        x, y = centre + t * np.cos(theta), centre - t * np.sin(theta)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < size and 0 <= y0 + dy < size:
                kernel[y0 + dy, x0 + dx] += w
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur ``length`` pixels long in a random direction (KADID #3)."""
    angle = float(rng.uniform(0.0, 180.0))
    return _to_uint8(_convolve(_to_float(image), motion_kernel(length, angle)))


def _encode_decode(image: np.ndarray, format: str, **options: object) -> np.ndarray:
    """Encode with Pillow in ``format`` and decode again (a lossy codec's artefacts)."""
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def jpeg(image: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG compression at ``quality`` (Pillow/libjpeg, 4:2:0 chroma subsampling; KADID #10 used MATLAB)."""
    return _encode_decode(image, "JPEG", quality=int(round(quality)), subsampling=2)


def white_noise(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise of ``variance`` on the 0..1 scale, per RGB channel (KADID #11)."""
    x = _to_float(image)
    noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(np.sqrt(variance))
    return _to_uint8(x + noise)


def impulse_noise(image: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: a ``density`` share of channel values set to 0 or 255 (KADID #13)."""
    out = image.copy()
    hit = rng.random(out.shape) < density
    salt = rng.random(out.shape) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def exposure_curve(x: np.ndarray, stops: float) -> np.ndarray:
    """Change exposure by ``stops`` (EV): scale linear light by ``2 ** stops``, clip, back to sRGB."""
    return _linear_to_srgb(_srgb_to_linear(np.clip(x, 0.0, 1.0)) * (2.0**stops))


def exposure_midpoint(stops: float) -> float:
    """Where mid-grey (0.5) lands after :func:`exposure_curve`: the point KADID's tone curves move."""
    return float(exposure_curve(np.array([0.5]), stops)[0])


def underexposure(image: np.ndarray, stops: float, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure by ``stops`` EV (linear light scaled by ``2 ** -stops``).

    KADID #17 (darken) applies a tone curve through (0.5, 0.5 - a / 2); labels match our level to
    KADID's axis by where mid-grey lands (``train/datasets/kadid.py``).
    """
    return _to_uint8(exposure_curve(_to_float(image), -stops))


def overexposure(image: np.ndarray, stops: float, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure by ``stops`` EV: linear light scaled by ``2 ** stops``, highlights clip.

    KADID #16 (brighten) uses a tone curve through (0.5, 0.5 + a / 2) without clipping; labels
    match by where mid-grey lands.
    """
    return _to_uint8(exposure_curve(_to_float(image), stops))


def contrast_loss(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast reduction towards the image's mean luminance: ``mean + factor * (x - mean)``.

    Labels come from TID2013's contrast-decrease levels (#17, levels 1/3/5): see ``train/datasets/kadid.py``.
    """
    x = _to_float(image)
    luma = float((x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    return _to_uint8(luma + factor * (x - luma))


def saturation(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Colour over-saturation: Lab a* and b* multiplied by ``factor`` (KADID #8, "saturation 2")."""
    import warnings

    lab = _rgb_to_lab(_to_float(image).astype(np.float64))
    lab[..., 1:] *= factor
    with warnings.catch_warnings():
        # Strong saturation leaves the sRGB gamut: clipping it is the distortion.
        warnings.simplefilter("ignore", UserWarning)
        rgb = _lab_to_rgb(lab)
    return _to_uint8(np.clip(rgb, 0.0, 1.0))


def pixelate(image: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Nearest-neighbour down-scaling by ``scale`` and back up (KADID #21: ``scale = 0.95 - s ** 0.6``)."""
    height, width = image.shape[:2]
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    low = Image.fromarray(image, "RGB").resize(small, Image.Resampling.NEAREST)
    return np.asarray(low.resize((width, height), Image.Resampling.NEAREST), dtype=np.uint8).copy()


def oversharpen(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Over-sharpening: unsharp masking of every channel, ``x + amount * (x - blur(x))`` (KADID #24).

    The blur is a Gaussian of sigma 1 px (MATLAB ``imsharpen``'s default radius); KADID's amounts
    are ``[1, 2, 3, 6, 12]`` (ARNIQA's re-implementation) and our levels use the same ones, so each
    level takes KADID's score of the same level. Halos and clipped edges are the distortion.
    """
    x = _to_float(image)
    return _to_uint8(x + amount * (x - _gaussian(x, 1.0)))


HALO_SIGMA = 2.5  # px at a 384-pixel shorter side: the blur radius of the wide unsharp mask


def _spatial_scale(image: np.ndarray) -> float:
    return min(image.shape[:2]) / REFERENCE_SHORT_SIDE


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a ``[H, W]`` or ``[H, W, C]`` float image (each channel), border replicated."""
    from scipy import ndimage

    if x.ndim == 2:
        return ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=3.0)
    return np.stack([ndimage.gaussian_filter(x[..., c], sigma, mode="nearest", truncate=3.0)
                     for c in range(x.shape[2])], -1)


def halo(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Wide over-sharpening: an unsharp mask of radius :data:`HALO_SIGMA` px (at 384 px, scaled with the image).

    What an editor's "unsharp mask, radius 3, amount 300%" does to a listing photo: bright and dark
    bands (halos) along every edge. No human study has this radius; labels are KADID #24 (high
    sharpen, sigma 1 px) at the amount with the same halo energy on a step edge (the energy of
    ``amount * (x - blur(x))`` grows with ``amount ** 2 * sigma``: ``amount * sqrt(sigma / 1 px)``).
    """
    x = _to_float(image)
    return _to_uint8(x + amount * (x - _gaussian(x, HALO_SIGMA * _spatial_scale(image))))


TONE_MAP_SIGMA = 12.0  # px at 384: the size of the "local" in local tone mapping


def tone_mapping(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """HDR-like local tone mapping ("HDR look") of ``strength`` 0..1.

    Log luminance is split into a base (Gaussian of :data:`TONE_MAP_SIGMA` px at 384) and detail;
    the base is compressed towards its mean by ``1 - 0.6 * strength``, the detail boosted by
    ``1 + 2 * strength``, and colour saturation raised (chroma ratios to the power ``1 + 0.5 *
    strength``): flat, haloed, over-saturated, as overdone HDR processing looks. No human study has
    it; labels take KADID #24 (high sharpen: halos, exaggerated edges) level for level.
    """
    lin = _srgb_to_linear(_to_float(image).astype(np.float64))
    luma = np.maximum(lin @ np.array([0.2126, 0.7152, 0.0722]), 1e-4)
    log_luma = np.log2(luma)
    base = _gaussian(log_luma, TONE_MAP_SIGMA * _spatial_scale(image))
    centre = float(base.mean())
    mapped = centre + (1.0 - 0.6 * strength) * (base - centre) + (1.0 + 2.0 * strength) * (log_luma - base)
    new_luma = np.exp2(mapped)[..., None]
    chroma = np.maximum(lin, 0.0) / luma[..., None]
    return _to_uint8(_linear_to_srgb(new_luma * chroma ** (1.0 + 0.5 * strength)).astype(np.float32))


# Colour-cast directions in the Lab a*b* plane (degrees): amber (warm), blue (cool), green, magenta.
CAST_HUES = (75.0, 255.0, 165.0, 345.0)
MID_GREY_L = 53.39  # L* of sRGB 0.5


def white_balance(image: np.ndarray, delta_e: float, rng: np.random.Generator) -> np.ndarray:
    """A white-balance error: per-channel gains in linear light (von Kries) that move mid-grey by
    ``delta_e`` (CIELAB Delta E) towards amber, blue, green or magenta (chosen by ``rng``).

    No human study has casts; labels are KADID #8 (Lab chroma scaling) at the factor whose mean
    colour change on a typical photo is the same: ``1 + delta_e / 20`` (20: about the median mean
    chroma of the training photos, 18.8 at 384 px).
    """
    hue = np.deg2rad(CAST_HUES[int(rng.integers(len(CAST_HUES)))])
    target = np.array([[[MID_GREY_L, delta_e * np.cos(hue), delta_e * np.sin(hue)]]])
    grey = _srgb_to_linear(np.array([0.5, 0.5, 0.5]))
    gains = _srgb_to_linear(np.clip(_lab_to_rgb(target)[0, 0], 0.0, 1.0)) / grey
    lin = _srgb_to_linear(_to_float(image))
    return _to_uint8(_linear_to_srgb(lin * gains.astype(np.float32)))


def quantize(image: np.ndarray, levels: float, rng: np.random.Generator) -> np.ndarray:
    """Colour quantisation: every channel to ``levels`` evenly spaced values (banding; KADID #22).

    KADID quantises to ``[20, 16, 13, 10, 7]`` levels with Otsu thresholds; ours are evenly spaced,
    an approximation with the same level counts (labels: KADID's score of the same level).
    """
    steps = int(round(levels)) - 1
    return _to_uint8(np.rint(_to_float(image) * steps) / steps)


def jpeg2000(image: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG 2000 at compression ratio ``ratio`` (Pillow/OpenJPEG; KADID #9, ratios as ARNIQA's)."""
    return _encode_decode(image, "JPEG2000", quality_mode="rates", quality_layers=[float(ratio)])


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distortion:
    """One distortion type: its function, its five level parameters and whether they are lengths."""

    name: str
    function: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: tuple[float, float, float, float, float]
    parameter: str
    spatial: bool = False  # parameter is a length in pixels (scaled with the image size)
    description: str = ""


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("gaussian_blur", gaussian_blur, (1.0, 1.5, 2.2, 3.2, 5.0), "sigma (px)", True,
                   "Gaussian blur"),
        Distortion("motion_blur", motion_blur, (3.0, 4.5, 6.0, 8.0, 10.0), "length (px)", True,
                   "linear motion blur, random direction"),
        Distortion("jpeg", jpeg, (24.0, 15.0, 10.0, 7.0, 4.0), "quality", False, "JPEG compression"),
        Distortion("white_noise", white_noise, (0.002, 0.003, 0.005, 0.0075, 0.01), "variance", False,
                   "additive white Gaussian noise"),
        Distortion("impulse_noise", impulse_noise, (0.005, 0.01, 0.015, 0.02, 0.03), "density", False,
                   "salt-and-pepper noise"),
        Distortion("underexposure", underexposure, (0.6, 1.0, 1.5, 2.2, 3.2), "stops (EV)", False,
                   "under-exposure"),
        Distortion("overexposure", overexposure, (0.4, 0.7, 1.0, 1.4, 2.0), "stops (EV)", False,
                   "over-exposure with clipped highlights"),
        Distortion("contrast_loss", contrast_loss, (0.7, 0.55, 0.42, 0.32, 0.22), "contrast factor", False,
                   "contrast reduction towards mean grey"),
        Distortion("saturation", saturation, (1.5, 2.0, 3.0, 4.5, 6.0), "chroma factor", False,
                   "colour over-saturation"),
        Distortion("pixelation", pixelate, (0.57, 0.48, 0.40, 0.34, 0.29), "scale", False,
                   "nearest-neighbour pixelation"),
        Distortion("oversharpen", oversharpen, (1.0, 2.0, 3.0, 6.0, 12.0), "unsharp amount", False,
                   "over-sharpening halos"),
        Distortion("quantization", quantize, (20.0, 16.0, 13.0, 10.0, 7.0), "levels per channel", False,
                   "colour quantisation (banding)"),
        Distortion("jpeg2000", jpeg2000, (16.0, 32.0, 45.0, 120.0, 170.0), "compression ratio", False,
                   "JPEG 2000 compression"),
        Distortion("halo", halo, (0.6, 1.0, 1.6, 2.5, 4.0), "unsharp amount (radius 2.5 px)", False,
                   "wide over-sharpening halos"),
        Distortion("tone_mapping", tone_mapping, (0.3, 0.45, 0.6, 0.8, 1.0), "strength", False,
                   "HDR-like local tone mapping"),
        Distortion("white_balance", white_balance, (4.0, 7.0, 11.0, 16.0, 24.0), "Delta E on mid-grey", False,
                   "white-balance colour cast"),
    )
}


def level_parameter(name: str, level: int) -> float:
    """The parameter of ``name`` at ``level`` (1..5) for a 384-pixel shorter side."""
    distortion = _get(name)
    if not isinstance(level, int) or not 1 <= level <= NUM_LEVELS:
        raise DistortionError(f"distortion level must be an integer in 1..{NUM_LEVELS}, got {level!r}")
    return distortion.levels[level - 1]


def _get(name: str) -> Distortion:
    try:
        return DISTORTIONS[name]
    except KeyError:
        raise DistortionError(f"unknown distortion {name!r}: use one of {', '.join(DISTORTIONS)}") from None


def apply(image: np.ndarray, name: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Distort an RGB uint8 ``[H, W, 3]`` image with ``name`` at ``level`` (1..5)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DistortionError(
            f"expected an RGB uint8 array [H, W, 3], got {getattr(image, 'dtype', type(image))} "
            f"{getattr(image, 'shape', '')}"
        )
    distortion = _get(name)
    value = level_parameter(name, level)
    if distortion.spatial:
        value *= min(image.shape[:2]) / REFERENCE_SHORT_SIDE
    return distortion.function(image, value, rng)
