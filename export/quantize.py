"""CPU INT8: static QDQ quantisation with ONNX Runtime, offered only when it keeps the ranking.

Weights are quantised per channel (int8, symmetric), activations per tensor (uint8) from ranges
observed on calibration images decoded like the runtime decodes them. ``reduce_range`` keeps 7-bit
weights, which avoids int16 saturation on CPUs without VNNI. float32 stays:

- the contract's own nodes (input normalisation, the logits layer, softmax, mean/std);
- the stem convolution: quantising its input re-grids the uint8 pixels onto another 8-bit grid
  (per-tensor, across three differently normalised channels), which adds about half a grey level
  of noise to every pixel, exactly what a technical-quality model measures;
- depthwise convolutions (``group > 1``): few FLOPs, and per-tensor activation ranges suit them badly.

Measured on an EfficientNet-Lite0 with a fitted quality head (docs/guide/export.md): Spearman against
float32 0.64 with everything quantised, 0.97 with stem and depthwise kept float32.

A *selective* recipe also keeps the first ``float_stages`` backbone stages (timm's ``blocks.N``
modules, found by node name) and the head (the convolutions after the last stage and every
``Gemm``) in float32: the early, high-resolution stages carry the fine detail a technical-quality
model reads, and the head turns features into scores. :data:`SELECTIVE` is the recipe chosen by
measurement for the bundled model (``tools/ship_int8.py`` measures the candidates; docs/guide/export.md).
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from nima_rt.contract.spec import INPUT_NAME, ModelMetadata
from nima_rt.export.images import batches
from nima_rt.export.onnx_export import ExportError, check_contract_graph, contract_nodes, set_metadata

CALIBRATION_BATCH = 8
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantizeSettings:
    """How to quantise; the defaults are what docs/guide/export.md measured."""

    per_channel: bool = True
    reduce_range: bool = True
    method: str = "minmax"
    float_stem: bool = True
    float_depthwise: bool = True
    float_stages: int = 0  # leading backbone stages (nodes named ``.../blocks.N/...``, N < float_stages) kept float32
    float_head: bool = False  # the convolutions after the last stage and every Gemm kept float32
    # TensorRT's explicit quantisation (export/tensorrt_build.py): int8 activations with zero point 0, biases float
    signed_activations: bool = False

    @property
    def label(self) -> str:
        """A short name of what stays float32, for tables and the model's notes."""
        kept = ["contract"] + (["stem"] if self.float_stem else []) + (["depthwise"] if self.float_depthwise else [])
        if self.float_stages:
            kept.append(f"stages 0-{self.float_stages - 1}")
        if self.float_head:
            kept.append("head")
        return "float32: " + ", ".join(kept)


# The bundled technical model's recipe (EfficientNet-Lite0): measured in docs/guide/export.md.
SELECTIVE = QuantizeSettings(float_stages=3, float_head=True)

_STAGE = re.compile(r"(?:^|/)blocks\.(\d+)(?:/|$)")


def node_stage(name: str) -> int | None:
    """The backbone stage a node belongs to, from its name (``/network/blocks.3/blocks.3.1/...`` -> 3)."""
    match = _STAGE.search(name)
    return int(match.group(1)) if match else None


def float32_nodes(model: onnx.ModelProto, settings: QuantizeSettings) -> list[str]:
    """Nodes INT8 leaves in float32: the contract's, the stem and depthwise convolutions, and with a
    selective recipe the leading stages and the head (see above)."""
    names = contract_nodes(model)  # also names unnamed nodes
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if settings.float_stem and convs:
        names.append(convs[0].name)
    if settings.float_depthwise:
        names += [n.name for n in convs if next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    if settings.float_stages:
        names += [n.name for n in model.graph.node
                  if (stage := node_stage(n.name)) is not None and stage < settings.float_stages]
    if settings.float_head:
        staged = [index for index, node in enumerate(convs) if node_stage(node.name) is not None]
        after = staged[-1] + 1 if staged else len(convs)  # no stages found: no convolution counts as head
        names += [n.name for n in convs[after:]]
        names += [n.name for n in model.graph.node if n.op_type == "Gemm"]
    return sorted(set(names))


class _Reader(CalibrationDataReader):
    """ONNX Runtime CalibrationDataReader over decoded uint8 batches."""

    def __init__(self, images: np.ndarray) -> None:
        self._batches = iter(list(batches(images, CALIBRATION_BATCH)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # part of the reader protocol; calibration reads once
        pass


def quantize_qdq(fp32_model: Path, output: Path, calibration: np.ndarray, metadata: ModelMetadata,
                 settings: QuantizeSettings = QuantizeSettings()) -> onnx.ModelProto:
    """Write a static-QDQ INT8 copy of ``fp32_model`` to ``output`` and return it (checked, with metadata)."""
    if settings.method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method {settings.method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    reader = _Reader(calibration)
    with tempfile.TemporaryDirectory(prefix="nima-rt-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
            keep = float32_nodes(model, settings)  # names unnamed nodes too, so save the named graph
            onnx.save(model, str(prepared))
            quantize_static(
                str(prepared),
                str(output),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=QUANTIZED_OPS,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QInt8 if settings.signed_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep,
                calibrate_method=methods[settings.method],
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": settings.signed_activations,
                               "QuantizeBias": not settings.signed_activations},
            )
    quantized = onnx.load(str(output))
    set_metadata(quantized, metadata)
    check_contract_graph(quantized, metadata.input_size, str(output))
    onnx.save(quantized, str(output))
    return quantized
