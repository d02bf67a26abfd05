"""ONNX Runtime on the GPU: the TensorRT execution provider (with an engine cache) and the CUDA one.

Both reuse :class:`~nima_rt.runtime.backends.onnxruntime_backend.OnnxRuntimeBackend`; only the provider
list differs. They need the ``onnxruntime-gpu`` build (``pip install 'nima-rt[gpu]'``); the CPU
build lists neither provider, which is what the availability check reports.

- ``onnxruntime-tensorrt``: ONNX Runtime builds TensorRT engines for the graph at the first run and
  keeps them in a cache folder (``BackendOptions.cache_dir``, default ``~/.cache/nima-rt/ort-tensorrt``,
  one sub-folder per model sha256), with an explicit batch profile 1..max_batch so a new batch
  size never triggers a rebuild. FP16 only where the model's metadata records a passed fp16 check
  (``contract.default_gpu_precision``), else fp32; ``precision=`` overrides. Nodes TensorRT cannot take
  run on the CUDA provider.
- ``onnxruntime-cuda``: the model as exported (its own precision; fp32 for a plain export).

ONNX Runtime silently drops a provider it cannot start (missing CUDA/cuDNN/TensorRT libraries);
``create`` checks the session's providers and reports that as unavailability, so ``--device auto``
moves on to the next backend instead of running on the CPU under a GPU name.

Not yet run on a GPU: CPU tests cover availability and the provider options; gpu_check runs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from nima_rt.contract.choices import GPU_PRECISIONS
from nima_rt.contract.spec import ContractError, default_gpu_precision
from nima_rt.io.model_file import ModelFile
from nima_rt.runtime.backends import cuda_driver
from nima_rt.runtime.backends.base import BackendOptions, BackendUnavailable
from nima_rt.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, provider_unavailable_reason

TENSORRT_PROVIDER = "TensorrtExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
INSTALL_HINT = "pip install 'nima-rt[gpu]' for onnxruntime-gpu"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nima-rt/ort-tensorrt`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nima-rt" / "ort-tensorrt"


def engine_cache_dir(model: ModelFile, options: BackendOptions) -> Path:
    """Where the TensorRT provider keeps this model's engines (one folder per model sha256)."""
    root = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    return root / model.sha256[:16]


def _precision(options: BackendOptions, default: str) -> str:
    precision = options.precision or default
    if precision not in GPU_PRECISIONS:
        raise BackendUnavailable(f"precision {precision!r} is not one of {', '.join(GPU_PRECISIONS)} here")
    return precision


def cuda_provider_options() -> dict[str, str]:
    return {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}


def tensorrt_provider_options(model: ModelFile, options: BackendOptions) -> dict[str, str]:
    """The TensorRT provider's options: engine + timing cache folder, batch profile, precision."""
    cache = engine_cache_dir(model, options)
    size = model.metadata.input_size
    shape = f"{size}x{size}x3"
    fp16 = _precision(options, default_gpu_precision(model.metadata)) == "fp16"
    return {
        "device_id": "0",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": "True" if fp16 else "False",
        "trt_profile_min_shapes": f"images:1x{shape}",
        "trt_profile_opt_shapes": f"images:{options.max_batch}x{shape}",
        "trt_profile_max_shapes": f"images:{options.max_batch}x{shape}",
    }


def _gpu_reason(model: ModelFile, provider: str) -> str | None:
    try:
        cuda_driver.probe_gpu()
    except BackendUnavailable as exc:
        return str(exc)
    if model.format != "onnx":
        return f"runs .onnx models, not {model.format} files"
    missing = provider_unavailable_reason(provider)
    if missing is not None:
        return f"{missing}; {INSTALL_HINT}"
    return None


def tensorrt_availability(model: ModelFile) -> str | None:
    """Why ``onnxruntime-tensorrt`` cannot run ``model`` here, or None when it can."""
    return _gpu_reason(model, TENSORRT_PROVIDER)


def cuda_availability(model: ModelFile) -> str | None:
    """Why ``onnxruntime-cuda`` cannot run ``model`` here, or None when it can."""
    return _gpu_reason(model, CUDA_PROVIDER)


class OnnxRuntimeGpuBackend(OnnxRuntimeBackend):
    """An :class:`OnnxRuntimeBackend` on a GPU provider that also says which precision it runs."""

    def __init__(self, model: ModelFile, providers: list, name: str, options: BackendOptions, precision: str) -> None:
        super().__init__(model, providers, name, options)
        self.precision = precision


def _open(
    model: ModelFile, providers: list, name: str, wanted: str, options: BackendOptions, precision: str
) -> OnnxRuntimeGpuBackend:
    reason = _gpu_reason(model, wanted)
    if reason is not None:
        raise BackendUnavailable(reason)
    if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21: find CUDA/cuDNN from the nvidia-* wheels torch uses
        try:
            ort.preload_dlls()
        except Exception:  # best effort: the session below reports what is really missing
            pass
    try:
        backend = OnnxRuntimeGpuBackend(model, providers, name, options, precision)
    except ContractError as exc:  # let --device auto move on; the CPU backend reports a truly bad model
        raise BackendUnavailable(f"{name} cannot load the model ({exc})") from None
    if wanted not in backend.providers:
        backend.close()
        raise BackendUnavailable(
            f"onnxruntime did not start {wanted} (session runs on {', '.join(backend.providers)}); "
            "check that the CUDA, cuDNN and TensorRT libraries it needs are installed"
        )
    return backend


def create_tensorrt(model: ModelFile, options: BackendOptions) -> OnnxRuntimeGpuBackend:
    provider_options = tensorrt_provider_options(model, options)
    Path(provider_options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    providers = [(TENSORRT_PROVIDER, provider_options), (CUDA_PROVIDER, cuda_provider_options())]
    precision = "fp16" if provider_options["trt_fp16_enable"] == "True" else "fp32"
    return _open(model, providers, "onnxruntime-tensorrt", TENSORRT_PROVIDER, options, precision)


def create_cuda(model: ModelFile, options: BackendOptions) -> OnnxRuntimeGpuBackend:
    if options.precision not in (None, "fp32"):
        raise BackendUnavailable(
            f"onnxruntime-cuda runs the model's own precision; precision {options.precision} needs a model "
            "exported with `--precision fp16`, or the tensorrt / onnxruntime-tensorrt / torch-cuda backends"
        )
    providers = [(CUDA_PROVIDER, cuda_provider_options())]
    return _open(model, providers, "onnxruntime-cuda", CUDA_PROVIDER, options, "model")
