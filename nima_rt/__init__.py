"""nima-rt: fast NIMA photo scoring (ONNX Runtime on CPU, TensorRT/CUDA on NVIDIA GPUs).

Importing this package loads numpy, Pillow and onnxruntime only; torch and GPU libraries load
lazily inside the backends and commands that need them.
"""

from nima_rt.contract.spec import ContractError, ModelMetadata, ResizeSpec
from nima_rt.io.model_file import ModelFile, ModelNotFound, bundled_models, load_model_file
from nima_rt.io.results import ModelScore, ScoreResult
from nima_rt.runtime.run import RunOptions, RunSummary, SettingError, score_run
from nima_rt.runtime.scorer import Scorer, ScorerConfig

__version__ = "0.1.0"

__all__ = [
    "ContractError",
    "ModelFile",
    "ModelMetadata",
    "ModelNotFound",
    "ModelScore",
    "ResizeSpec",
    "RunOptions",
    "RunSummary",
    "ScoreResult",
    "Scorer",
    "ScorerConfig",
    "SettingError",
    "__version__",
    "bundled_models",
    "load_model_file",
    "score_run",
]
