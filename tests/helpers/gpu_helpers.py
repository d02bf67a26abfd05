"""Helpers shared by the GPU tests and benchmarks/gpu_check.py: a TensorRT engine built by the export
command's builder, a random-weight checkpoint + ONNX export pair, and the gpu extra's requirements."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from packaging.requirements import Requirement

from helpers.paths import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

from nima_rt.contract.spec import ModelMetadata
from nima_rt.io.model_file import load_model_file


def build_engine(onnx_path: Path, engine_path: Path, precision: str, profile: tuple[int, int, int]) -> Path:
    """Build ``engine_path`` (+ sidecar) from ``onnx_path`` with the export command's builder."""
    from nima_rt.export.tensorrt_build import TensorRTSettings
    from nima_rt.export.tensorrt_build import build_engine as export_engine

    metadata = load_model_file(onnx_path).metadata
    built = export_engine(onnx_path, engine_path, metadata, precision, TensorRTSettings(*profile), None, lambda _: None)
    built.write()
    return engine_path


def build_model_pair(folder: Path, backbone: str = "mobilenet_v2", size: int = 224, seed: int = 0) -> Path:
    """A random-weight training checkpoint ``<name>.pt`` and its ONNX export ``<name>.onnx`` side by side,
    the ONNX metadata recording the checkpoint's sha256 (what the torch-cuda backend looks for)."""
    import torch

    from nima_rt.export.onnx_export import finish_model, save_model, trace_to_onnx
    from nima_rt.train.model.checkpoint import load_checkpoint, save_checkpoint
    from nima_rt.train.model.network import ModelConfig
    from nima_rt.train.model.pretrained import build_network

    torch.manual_seed(seed)
    config = ModelConfig(backbone=backbone, image_size=size)
    network = build_network(config, pretrained=None)
    name = f"{backbone}-{size}"
    metadata = ModelMetadata(name=name, kind="custom", input_size=size, backbone=backbone,
                             trained_on="nothing: random weights (GPU checks)")
    checkpoint = load_checkpoint(save_checkpoint(folder / f"{name}.pt", network, config, metadata))
    traced = trace_to_onnx(checkpoint.contract_module(), size)
    onnx_path = folder / f"{name}.onnx"
    exported = dataclasses.replace(checkpoint.metadata, source_checkpoint_sha256=checkpoint.sha256)
    proto, _ = finish_model(traced, exported, str(onnx_path), simplify_graph=False)
    save_model(proto, onnx_path)
    return onnx_path


def gpu_extra() -> dict[str, Requirement]:
    """pyproject.toml's ``gpu`` extra, by package name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(text) for text in project["optional-dependencies"]["gpu"]]
    return {r.name: r for r in requirements}
