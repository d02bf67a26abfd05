"""Which nodes INT8 keeps in float32: stem, depthwise, leading stages and head, found by node name."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nima_rt.export.quantize import SELECTIVE, QuantizeSettings, float32_nodes, node_stage  # noqa: E402

# (name, group): a stem, three stages of pointwise + depthwise convolutions, a head convolution
CONVS = [
    ("/network/conv_stem/Conv", 1),
    ("/network/blocks.0/blocks.0.0/conv_dw/Conv", 4), ("/network/blocks.0/blocks.0.0/conv_pw/Conv", 1),
    ("/network/blocks.1/blocks.1.0/conv_pw/Conv", 1), ("/network/blocks.1/blocks.1.0/conv_dw/Conv", 4),
    ("/network/blocks.2/blocks.2.0/conv_pw/Conv", 1), ("/network/blocks.2/blocks.2.1/conv_pwl/Conv", 1),
    ("/network/conv_head/Conv", 1),
]


def timm_like_graph() -> onnx.ModelProto:
    nodes, inits, previous = [], [], "x"
    for index, (name, group) in enumerate(CONVS):
        weight = np.ones((4, 4 // group, 1, 1), np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{index}"], [f"c{index}"], name=name, group=group))
        previous = f"c{index}"
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"], name="/network/pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="/network/flatten"),
        helper.make_node("Gemm", ["flat", "wl"], ["features"], name="/network/head/fc/Gemm"),
        helper.make_node("Gemm", ["features", "wl"], ["logits"], name="/network/head/linear/Gemm"),
        helper.make_node("Softmax", ["logits"], ["dist"], name="/Softmax", axis=1),
    ]
    inits.append(numpy_helper.from_array(np.ones((4, 4), np.float32), "wl"))
    graph = helper.make_graph(nodes, "timm_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("dist", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph)


def kept_convs(settings: QuantizeSettings) -> list[str]:
    names = set(float32_nodes(timm_like_graph(), settings))
    return [name.split("/network/")[1] for name, _ in CONVS if name in names]


def test_node_stage_reads_timm_block_names() -> None:
    assert node_stage("/network/blocks.3/blocks.3.1/conv_pw/Conv") == 3
    assert node_stage("/network/blocks.12/x") == 12
    assert node_stage("/network/conv_head/Conv") is None
    assert node_stage("/network/subblocks.1/Conv") is None


def test_default_keeps_stem_and_depthwise() -> None:
    assert kept_convs(QuantizeSettings()) == [
        "conv_stem/Conv", "blocks.0/blocks.0.0/conv_dw/Conv", "blocks.1/blocks.1.0/conv_dw/Conv"]


def test_selective_recipe_keeps_leading_stages_and_head() -> None:
    assert kept_convs(QuantizeSettings(float_stages=1, float_head=True)) == [
        "conv_stem/Conv", "blocks.0/blocks.0.0/conv_dw/Conv", "blocks.0/blocks.0.0/conv_pw/Conv",
        "blocks.1/blocks.1.0/conv_dw/Conv", "conv_head/Conv"]
    names = float32_nodes(timm_like_graph(), QuantizeSettings(float_stages=1, float_head=True))
    assert "/network/head/fc/Gemm" in names and "/network/head/linear/Gemm" in names
    assert "/network/head/fc/Gemm" not in float32_nodes(timm_like_graph(), QuantizeSettings())
    # SELECTIVE (stages 0-2) covers every stage of this 3-stage graph: every convolution stays float32
    assert kept_convs(SELECTIVE) == [name.split("/network/")[1] for name, _ in CONVS]
    assert SELECTIVE.label == "float32: contract, stem, depthwise, stages 0-2, head"


def test_head_needs_stages_to_be_found() -> None:
    graph = timm_like_graph()
    for node in graph.graph.node:
        node.name = node.name.replace("blocks.", "layer")
    kept = set(float32_nodes(graph, QuantizeSettings(float_stem=False, float_depthwise=False, float_head=True)))
    assert not {n.name for n in graph.graph.node if n.op_type == "Conv"} & kept  # no stage: no conv is "head"
    assert {"/network/head/fc/Gemm", "/network/head/linear/Gemm"} <= kept
