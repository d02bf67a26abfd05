"""Helpers for the tests marked ``gpu``: build a real TensorRT engine (+ sidecar) from an ONNX file.

Used by tests/test_gpu_*.py and benchmarks/gpu_check.py on machines with TensorRT and a GPU; the
export command (`nima-rt export --format tensorrt`) is the product's way to build engines.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nima_rt.backends import tensorrt_engine
from nima_rt.contract import INPUT_NAME, EngineInfo, ModelMetadata, engine_sidecar_json
from nima_rt.model_file import file_sha256, load_model_file, sidecar_path


def build_engine(onnx_path: Path, engine_path: Path, precision: str, profile: tuple[int, int, int]) -> Path:
    """Build ``engine_path`` from ``onnx_path`` with the TensorRT 10 builder and write its sidecar."""
    import tensorrt as trt

    model = load_model_file(onnx_path)
    size = model.metadata.input_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the model ({errors})")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(INPUT_NAME, *[(batch, size, size, 3) for batch in profile])
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine")
    engine_path.write_bytes(bytes(serialized))
    target = tensorrt_engine.current_target()
    info = EngineInfo(target.tensorrt_version, target.gpu_name, target.compute_capability, precision, *profile,
                      source_onnx_sha256=file_sha256(onnx_path))
    sidecar_path(engine_path).write_text(engine_sidecar_json(model.metadata, info), encoding="utf-8")
    return engine_path


def build_model_pair(folder: Path, backbone: str = "mobilenet_v2", size: int = 224, seed: int = 0) -> Path:
    """A random-weight training checkpoint ``<name>.pt`` and its ONNX export ``<name>.onnx`` side by side,
    the ONNX metadata recording the checkpoint's sha256 (what the torch-cuda backend looks for)."""
    import torch
    from nima_rt.export.onnx_export import finish_model, save_model, trace_to_onnx
    from nima_rt.train.checkpoint import load_checkpoint, save_checkpoint
    from nima_rt.train.model import ModelConfig, build_network

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
