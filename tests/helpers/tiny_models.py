"""Tiny contract models built in code with onnx.helper (no training, no downloads).

The graph follows the model contract: uint8 NHWC ``images`` in; ``dist``/``mean``/``std`` out.
It averages each colour channel, so its scores depend on what the image shows (brighter and
redder images score higher), which lets tests check real values and order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nima_rt.contract.spec import INPUT_NAME, METADATA_KEY, ModelMetadata, ResizeSpec

OPSET = 17

# 3 channel means -> 10 logits: red pushes mass to high scores, blue to low ones.
WEIGHTS = np.stack(
    [np.linspace(-4.0, 4.0, 10), np.linspace(-1.0, 1.0, 10), np.linspace(2.0, -2.0, 10)]
).astype(np.float32)
BIAS = np.zeros(10, dtype=np.float32)


def reference_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the tiny model computes, in numpy: (dist, mean, std) for uint8 [N, S, S, 3]."""
    x = images.astype(np.float32).mean(axis=(1, 2)) / 255.0
    logits = x @ WEIGHTS + BIAS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    dist = e / e.sum(axis=1, keepdims=True)
    scores = np.arange(1, 11, dtype=np.float32)
    mean = dist @ scores
    std = np.sqrt(np.maximum(dist @ scores**2 - mean**2, 0))
    return dist, mean, std


def tiny_model_proto(name: str = "tiny", size: int = 32, kind: str = "technical",
                     resize: ResizeSpec | None = None, metadata: bool = True,
                     blind_spots: str = "") -> onnx.ModelProto:
    scores = np.arange(1, 11, dtype=np.float32)
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["m", "inv255"], ["m01"]),
        helper.make_node("MatMul", ["m01", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["dist"], axis=1),
        helper.make_node("MatMul", ["dist", "scores"], ["mean"]),
        helper.make_node("MatMul", ["dist", "scores_sq"], ["ex2"]),
        helper.make_node("Mul", ["mean", "mean"], ["mean_sq"]),
        helper.make_node("Sub", ["ex2", "mean_sq"], ["var_raw"]),
        helper.make_node("Relu", ["var_raw"], ["var"]),
        helper.make_node("Sqrt", ["var"], ["std"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 255.0, dtype=np.float32), "inv255"),
        numpy_helper.from_array(WEIGHTS, "W"),
        numpy_helper.from_array(BIAS, "B"),
        numpy_helper.from_array(scores, "scores"),
        numpy_helper.from_array(scores**2, "scores_sq"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_nima",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", size, size, 3])],
        [
            helper.make_tensor_value_info("dist", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("std", TensorProto.FLOAT, ["N"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if metadata:
        meta = ModelMetadata(name=name, kind=kind, input_size=size, resize=resize or ResizeSpec(),
                             backbone="channel-mean", trained_on="nothing (test model)", blind_spots=blind_spots)
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model, full_check=True)
    return model


def write_tiny_model(path: Path, **kwargs) -> Path:
    """Write a tiny contract model to ``path`` and return it."""
    onnx.save(tiny_model_proto(**kwargs), str(path))
    return path
