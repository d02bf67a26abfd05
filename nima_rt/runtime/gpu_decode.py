"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``), in batches.

The Scorer uses it when ``ScorerConfig.gpu_decode`` is ``"on"``, or ``"auto"`` (the default) and a
model runs on a CUDA backend and torch with CUDA is installed. For each batch of files:

1. the files are read and their headers parsed (Pillow, no pixel decode) in the decode threads;
   only baseline/progressive JPEGs whose mode is RGB or L, within the decompression-bomb limit, go
   to the GPU; everything else (PNG, WebP, CMYK JPEGs, unreadable files...) goes to the CPU decoder
   :func:`nima_rt.io.decode.decode_file`, so its rules and error messages hold unchanged;
2. the JPEGs are decoded by one batched nvJPEG call; if that call fails, each file is retried alone
   and any file that still fails goes to the CPU decoder;
3. EXIF orientation is applied on the GPU (flips/rotations equal to Pillow's ``exif_transpose``);
4. each image is resized on the GPU to every model's input following the contract's
   :class:`~nima_rt.contract.spec.ResizeSpec` (``squash`` or ``center_crop``, same sizes and rounding)
   with Pillow's own resampling maths: the per-axis filter weights Pillow computes (box, bilinear,
   bicubic a=-0.5, lanczos-3, widened by the scale factor when shrinking) as two matrix products,
   horizontal then vertical with rounding to 8 bits in between as Pillow does; nearest picks the
   pixels Pillow picks. Measured on CPU against Pillow on the same decoded pixels: at most 1 grey
   level apart (tests/runtime/test_gpu_decode.py);
5. the resized uint8 squares come back to the host in one copy per batch (the backend protocol takes
   numpy arrays; 150 KB per 224 px image).

Differences from the CPU path, by design: no JPEG DCT-domain draft (nvJPEG decodes full size, which
is closer to a full decode than the CPU's draft), and nvJPEG's IDCT/upsampling and PyTorch's resize
kernels are not bit-identical to libjpeg-turbo and Pillow. benchmarks/gpu_check.py measures the
pixel and score differences; docs/guide/gpu.md records the tolerance.

Not yet run on a GPU: CPU tests run this module with ``device="cpu"`` (torchvision's libjpeg path).
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from nima_rt.contract.messages import one_line
from nima_rt.io.decode import DecodeError, DecodeOptions, Preprocess, decode_file
from nima_rt.io.inputs import InputItem
from nima_rt.runtime.backends.base import BackendUnavailable

JPEG_MAGIC = b"\xff\xd8\xff"
GPU_MODES = ("RGB", "L")  # JPEG colour modes nvJPEG decodes to RGB as Pillow's convert("RGB") does
EXIF_ORIENTATION = 0x0112
FILTER_SUPPORT = {"box": 0.5, "bilinear": 1.0, "bicubic": 2.0, "lanczos": 3.0}  # Pillow's filters
MAX_CACHED_WEIGHTS = 512
Row = tuple[str, "list[np.ndarray] | None", "str | None"]  # (path, arrays, error) as the Scorer wants


@dataclass
class _Jpeg:
    index: int
    data: np.ndarray
    orientation: int



class GpuDecoder:
    """Decodes JPEG files on ``device`` and resizes them to each :class:`Preprocess`.

    Raises :class:`BackendUnavailable` (one line) when torch/torchvision/nvJPEG cannot run here.
    ``device="cpu"`` runs the same code through torchvision's CPU decoder (for tests).
    """

    def __init__(self, specs: list[Preprocess], options: DecodeOptions = DecodeOptions(), device: str = "cuda"):
        try:
            import torch
            import torchvision
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError as exc:
            raise BackendUnavailable(f"GPU decode needs torch and torchvision ({one_line(exc)})") from None
        self.torch = torch
        self._weight_cache: dict[tuple[int, int, str], Any] = {}
        self.decode_jpeg = decode_jpeg
        self.read_mode = ImageReadMode.RGB
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"GPU decode: torch {torch.__version__} cannot use the GPU "
                                     "(torch.cuda.is_available() is False)")
        self.specs = list(specs)
        self.options = options
        self.gpu_decoded = 0  # files decoded on the device
        self.cpu_decoded = 0  # files sent to the CPU decoder (other formats, failures)
        self._probe()
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.description = f"nvJPEG via torchvision {torchvision.__version__} on {where}"

    def _probe(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG")
        data = self.torch.from_numpy(np.frombuffer(buffer.getvalue(), np.uint8).copy())
        try:
            self.decode_jpeg([data], mode=self.read_mode, device=self.device)
        except Exception as exc:
            raise BackendUnavailable(f"GPU decode: nvJPEG cannot decode a test image ({one_line(exc)})") from None

    # -- the Scorer's hook ----------------------------------------------------------------------

    def iter_decoded(self, items: Iterable[InputItem], pool: Executor, batch_size: int) -> Iterator[Row]:
        """Rows ``(path, arrays, error)`` in input order; the next batch decodes while this one is used."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nima-gpu-decode") as stage:
            pending: deque[Future[list[Row]]] = deque()
            group: list[InputItem] = []
            for item in items:
                group.append(item)
                if len(group) >= batch_size:
                    pending.append(stage.submit(self.decode_items, group, pool))
                    group = []
                    if len(pending) >= 2:
                        yield from pending.popleft().result()
            if group:
                pending.append(stage.submit(self.decode_items, group, pool))
            while pending:
                yield from pending.popleft().result()

    def decode_items(self, items: list[InputItem], pool: Executor) -> list[Row]:
        """Decode one batch of inputs; listing errors pass through as error rows."""
        paths = [item.location for item in items if item.error is None]
        labels = [item.path for item in items if item.error is None]
        decoded = iter(self.decode_paths(paths, pool, labels))
        rows: list[Row] = []
        for item in items:
            if item.error is not None:
                rows.append((item.path, None, item.error))
                continue
            result = next(decoded)
            if isinstance(result, str):
                rows.append((item.path, None, result))
            else:
                rows.append((item.path, result, None))
        return rows

    # -- decoding -------------------------------------------------------------------------------

    def decode_paths(self, paths: list[str], pool: Executor, labels: list[str] | None = None
                     ) -> list[list[np.ndarray] | str]:
        """One entry per path: arrays (one per spec) or the one-line error of the CPU decoder (naming the
        path's label: the path as the output writes it, when it is read from elsewhere)."""
        labels = labels if labels is not None else paths
        results: list[list[np.ndarray] | str | None] = [None] * len(paths)
        jpegs = [j for j in pool.map(self._read_jpeg, range(len(paths)), paths) if j is not None]
        for jpeg, arrays in zip(jpegs, self._decode_on_device(jpegs), strict=True):
            results[jpeg.index] = arrays
        self.gpu_decoded += sum(r is not None for r in results)
        fallback = [i for i, r in enumerate(results) if r is None]
        self.cpu_decoded += len(fallback)
        outcomes = pool.map(self._decode_on_cpu, [paths[i] for i in fallback], [labels[i] for i in fallback])
        for index, outcome in zip(fallback, outcomes, strict=True):
            results[index] = outcome
        return results  # type: ignore[return-value]

    def _read_jpeg(self, index: int, path: str) -> _Jpeg | None:
        """The file's bytes when it is a JPEG the GPU path takes; None sends it to the CPU decoder."""
        try:
            data = np.fromfile(path, dtype=np.uint8)
            if data[:3].tobytes() != JPEG_MAGIC:
                return None
            with Image.open(io.BytesIO(memoryview(data))) as image:
                width, height = image.size
                if image.format != "JPEG" or image.mode not in GPU_MODES:
                    return None
                if width * height > self.options.max_pixels or width == 0 or height == 0:
                    return None  # the CPU decoder words the refusal
                orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
        except Exception:  # anything odd: the CPU decoder decides and explains
            return None
        return _Jpeg(index, data, orientation)

    def _decode_on_device(self, jpegs: list[_Jpeg]) -> list[list[np.ndarray] | None]:
        if not jpegs:
            return []
        tensors = [self.torch.from_numpy(j.data) for j in jpegs]
        try:
            images: list[Any] = self.decode_jpeg(tensors, mode=self.read_mode, device=self.device)
        except Exception:  # one bad file fails the whole batched call: retry one by one
            images = [self._decode_one(t) for t in tensors]
        per_spec: list[list[Any]] = [[] for _ in self.specs]
        done: list[int] = []
        for position, (jpeg, image) in enumerate(zip(jpegs, images, strict=True)):
            if image is None:
                continue
            oriented = orient(image, jpeg.orientation)
            for spec_index, spec in enumerate(self.specs):
                per_spec[spec_index].append(self.resize(oriented, spec))
            done.append(position)
        results: list[list[np.ndarray] | None] = [None] * len(jpegs)
        if done:
            host = [self.torch.stack(squares).cpu().numpy() for squares in per_spec]  # one copy per spec
            for row, position in enumerate(done):
                results[position] = [np.ascontiguousarray(batch[row]) for batch in host]
        return results

    def _decode_one(self, tensor: Any) -> Any:
        try:
            return self.decode_jpeg([tensor], mode=self.read_mode, device=self.device)[0]
        except Exception:
            return None

    def _decode_on_cpu(self, path: str, label: str) -> list[np.ndarray] | str:
        try:
            return decode_file(path, self.specs, self.options, label=label)
        except DecodeError as exc:
            return str(exc)
        except Exception as exc:  # same rule as the Scorer: the row says what happened
            return f"{label}: unexpected {type(exc).__name__} ({one_line(exc)})"

    def resize(self, image: Any, spec: Preprocess) -> Any:
        """A uint8 [3, H, W] tensor to uint8 [S, S, 3] following ``spec`` (the contract's geometry)."""
        size = spec.size
        _, height, width = image.shape
        if spec.resize.policy == "squash":
            target = (size, size)
        else:  # center_crop: shorter side to size (Python rounding, as nima_rt.contract.spec.resize_image)
            scale = size / min(width, height)
            target = (max(size, round(height * scale)), max(size, round(width * scale)))
        out = image
        if target != (height, width):
            out = self._resample(image, target, spec.resize.interpolation)
        top, left = (target[0] - size) // 2, (target[1] - size) // 2
        return out[:, top:top + size, left:left + size].permute(1, 2, 0).contiguous()

    def _resample(self, image: Any, target: tuple[int, int], interpolation: str) -> Any:
        torch = self.torch
        _, height, width = image.shape
        if interpolation == "nearest":
            rows = torch.from_numpy(nearest_indices(height, target[0])).to(self.device)
            cols = torch.from_numpy(nearest_indices(width, target[1])).to(self.device)
            return image.index_select(1, rows).index_select(2, cols)
        out = image
        if target[1] != width:  # horizontal pass first, rounded to 8 bits, as Pillow does
            weights = self._weights(width, target[1], interpolation)
            out = (out.float() @ weights.T).round_().clamp_(0, 255).to(torch.uint8)
        if target[0] != height:
            weights = self._weights(height, target[0], interpolation)
            out = (weights @ out.float()).round_().clamp_(0, 255).to(torch.uint8)
        return out

    def _weights(self, in_size: int, out_size: int, interpolation: str) -> Any:
        key = (in_size, out_size, interpolation)
        cached = self._weight_cache.get(key)
        if cached is None:
            if len(self._weight_cache) >= MAX_CACHED_WEIGHTS:
                self._weight_cache.clear()
            matrix = pillow_weights(in_size, out_size, interpolation)
            cached = self._weight_cache[key] = self.torch.from_numpy(matrix).to(self.device)
        return cached

    def close(self) -> None:
        """Nothing is held between batches; here for symmetry with backends."""


def _filter(interpolation: str, x: np.ndarray) -> np.ndarray:
    """Pillow's resampling filters (libImaging/Resample.c), vectorised."""
    ax = np.abs(x)
    if interpolation == "box":
        return ((x > -0.5) & (x <= 0.5)).astype(np.float64)
    if interpolation == "bilinear":
        return np.where(ax < 1.0, 1.0 - ax, 0.0)
    if interpolation == "bicubic":
        a = -0.5
        near = ((a + 2.0) * ax - (a + 3.0)) * ax * ax + 1.0
        far = (((ax - 5.0) * ax + 8.0) * ax - 4.0) * a
        return np.where(ax < 1.0, near, np.where(ax < 2.0, far, 0.0))
    if interpolation == "lanczos":
        return np.where(ax < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
    raise ValueError(f"no resampling filter for {interpolation!r}")


def pillow_weights(in_size: int, out_size: int, interpolation: str) -> np.ndarray:
    """The [out, in] float32 matrix of Pillow's resampling weights along one axis (full-image box)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = FILTER_SUPPORT[interpolation] * filter_scale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = _filter(interpolation, (np.arange(low, high) - center + 0.5) / filter_scale)
        total = taps.sum()
        weights[out, low:high] = taps / total if total != 0.0 else taps
    return weights.astype(np.float32)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """The source pixel Pillow's nearest resize takes for each output pixel.

    Pillow walks ``(i + 0.5) * in / out`` by repeated addition in double precision and truncates
    (libImaging/Geometry.c, affine nearest); the same additions give the same pixels here.
    """
    step = in_size / out_size
    position = step * 0.5
    indices = np.empty(out_size, dtype=np.int64)
    for index in range(out_size):
        indices[index] = min(int(position), in_size - 1)
        position += step
    return indices


def orient(image: Any, orientation: int) -> Any:
    """Apply an EXIF orientation (1-8) to a [C, H, W] tensor exactly as Pillow's ``exif_transpose``."""
    import torch

    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, (-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, (-2, -1))
    return image


@dataclass
class GpuDecodeChoice:
    """The decoder the Scorer uses (None: the CPU decoder) and the line that says why."""

    decoder: GpuDecoder | None
    summary: str | None  # None when GPU decode was never in question (CPU backends, mode "auto"/"off")


def choose_gpu_decode(mode: str, specs: list[Preprocess], options: DecodeOptions, on_gpu: bool,
                      device: str = "cuda") -> GpuDecodeChoice:
    """``"off"``: CPU; ``"on"``: nvJPEG or :class:`BackendUnavailable`; ``"auto"``: nvJPEG when a model
    runs on a CUDA backend and it works here, else the CPU decoder (the summary says why)."""
    if mode == "off" or (mode == "auto" and not on_gpu):
        return GpuDecodeChoice(None, None)
    try:
        decoder = GpuDecoder(specs, options, device)
    except BackendUnavailable as exc:
        if mode == "on":
            raise
        return GpuDecodeChoice(None, f"decode: CPU ({exc})")
    return GpuDecodeChoice(decoder, f"decode: {decoder.description}")
