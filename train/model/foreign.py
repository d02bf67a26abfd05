"""Other projects' NIMA models as nima-rt networks: what export imports and what fine-tuning starts from.

:func:`keras_model` (idealo's and titu1994's Keras files, :mod:`.keras_files`), :func:`torch_model`
(nima.pytorch and pyiqa state dicts, :mod:`.nima_torch`) and :func:`onnx_model` (a contract ONNX model of a
Keras MobileNet, such as the bundled ``aesthetic.onnx``, read back) each return a :class:`ForeignModel`: a
:class:`~nima_rt.train.model.network.NimaNetwork` holding the file's weights (eval mode), and what a model
made from it must keep: its preprocessing (resize and normalisation), its licence and a description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nima_rt.contract.spec import Normalization, ResizeSpec
from nima_rt.train.model.network import ModelConfig, NimaNetwork
from nima_rt.train.model.refusal import ImportFailed

KERAS_LICENCE = ("the licence of their publisher applies (idealo/image-quality-assessment: Apache-2.0; "
                 "titu1994/neural-image-assessment: MIT)")
# Largest |Δ mean score| allowed between a network read back from an ONNX file and the file itself.
ONNX_READBACK_TOLERANCE = 1e-4


@dataclass
class ForeignModel:
    """A foreign model file as a nima-rt network, with what its descendants keep."""

    network: NimaNetwork
    input_size: int
    resize: ResizeSpec
    normalization: Normalization
    licenses: list[str]
    description: str  # what the file was, for metadata notes
    notes: list[str] = field(default_factory=list)  # things a user should know (printed by export)
    file: str = ""  # the file it was read from, when known

    @property
    def config(self) -> ModelConfig:
        return self.network.config


def _network(backbone, config: ModelConfig) -> NimaNetwork:  # type: ignore[no-untyped-def]
    return NimaNetwork(backbone, config)


def _padding_note(keras, padding: str) -> str | None:  # type: ignore[no-untyped-def]
    """Keras 2.1.5/2.1.6 padded every depthwise convolution symmetrically; its files show ``conv_pad_1``."""
    if padding == "symmetric":
        return "imported with Keras 2.1.5/2.1.6's symmetric padding (--keras-padding symmetric)"
    if "conv_pad_1" in keras.all_layer_names:
        return ("the file's layer names (conv_pad_1) show it was saved by Keras 2.1.5/2.1.6, whose MobileNet "
                "padded stride-2 convolutions symmetrically; imported with today's Keras padding (bottom/right), "
                "as tf.keras and idealo's current predict code load it (--keras-padding symmetric: as Keras 2.1.6)")
    return None


def keras_model(path: Path, padding: str = "keras", dropout: float = 0.75) -> ForeignModel:
    """A Keras NIMA file (Keras 2/3 HDF5, ``.weights.h5``, ``.keras``) as a network: its MobileNet and Dense."""
    from nima_rt.train.model.keras_files import INPUT_SIZE, KERAS_LOAD_IMG_RESIZE, read_keras_nima
    from nima_rt.train.model.keras_mobilenet import KERAS_NORMALIZATION, PADDINGS

    if padding not in PADDINGS:
        raise ImportFailed(f"--keras-padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    read = read_keras_nima(path, padding)
    config = ModelConfig(backbone=read.backbone.spec.name, dropout=dropout, image_size=INPUT_SIZE)
    network = _network(read.backbone, config)
    read.load_head(network.head.linear)
    keras = read.source
    layout = f"Sequential with nested base {keras.nested!r}" if keras.nested else "functional"
    notes = [note for note in [_padding_note(keras, padding)] if note]
    description = (f"imported from Keras {keras.keras_version} {keras.format} {path.name} ({layout} layout); "
                   "preprocessing as Keras load_img(target_size=(224, 224)) + mobilenet.preprocess_input")
    return ForeignModel(network.eval(), INPUT_SIZE, KERAS_LOAD_IMG_RESIZE, KERAS_NORMALIZATION,
                        [f"weights imported from {path.name}: {KERAS_LICENCE}"], description, notes)


def torch_model(path: Path, data: Any) -> ForeignModel:
    """A nima.pytorch / pyiqa state dict (``data``, as ``torch.load`` read it from ``path``) as a network."""
    import torch

    from nima_rt.train.model.nima_torch import BILINEAR_SQUASH, LICENCES, read_torch_nima

    spec, backbone, head = read_torch_nima(path, data)
    config = ModelConfig(backbone=spec.name, dropout=spec.dropout, image_size=spec.input_size)
    network = _network(backbone, config)
    with torch.no_grad():
        network.head.linear.weight.copy_(head["weight"])
        network.head.linear.bias.copy_(head["bias"])
    size = spec.input_size
    notes = [] if spec.layout == "nima.pytorch" else [
        f"pyiqa scores full-resolution images; this model sees a {size} x {size} squash (the contract's fixed size)"]
    description = (f"imported from a {spec.layout} state dict {path.name} ({spec.backbone}); preprocessing: "
                   f"PIL bilinear squash to {size} x {size}, ImageNet normalisation")
    return ForeignModel(network.eval(), size, BILINEAR_SQUASH, Normalization(),
                        [f"weights imported from {path.name}: the licence of their publisher applies "
                         f"({LICENCES[spec.layout]})"], description, notes)


def onnx_model(path: Path) -> ForeignModel:
    """A contract ONNX model of a Keras MobileNet (``keras_mobilenet_v1_*``, e.g. the bundled ``aesthetic``)
    read back into a network: export folded each BatchNorm into its convolution, so the network has a bias
    per convolution and no BatchNorm (training it trains with those statistics frozen). The network must
    score like the file (max |Δ mean| <= 1e-4 on generated images) or nothing is returned."""
    import dataclasses

    import onnx
    from onnx import numpy_helper

    from nima_rt.io.model_file import load_model_file
    from nima_rt.train.model.keras_mobilenet import KerasMobileNet, copy_array, parse_backbone

    metadata = load_model_file(path).metadata
    spec = parse_backbone(metadata.backbone)
    if spec is None:
        raise ImportFailed(f"{path}: an ONNX model of backbone {metadata.backbone!r}; only Keras MobileNet models "
                           "(keras_mobilenet_v1_*, e.g. the bundled aesthetic) are read back from ONNX: fine-tune from "
                           "the file it was exported from (a nima-rt checkpoint, Keras or PyTorch file)")
    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = [(weights.get(n.input[1]), weights.get(n.input[2]) if len(n.input) > 2 else None)
             for n in graph.node if n.op_type == "Conv"]
    dense = [n for n in graph.node if n.op_type == "Gemm"]
    folded = KerasMobileNet(dataclasses.replace(spec, folded=True))
    units = folded.units()
    if len(convs) != len(units) or len(dense) != 1 or any(w is None or b is None for w, b in convs):
        raise ImportFailed(f"{path}: {len(convs)} convolutions with weights and bias and {len(dense)} Gemm, not the "
                           f"{len(units)} convolutions and one Dense of {metadata.backbone}")
    kernel = _dense_kernel(weights, dense[0])
    head_inputs = kernel.shape[1] if kernel is not None else -1
    if head_inputs != folded.num_features:
        raise ImportFailed(
            f"{path}: a {metadata.backbone} network with a head on {head_inputs} features (a multilevel head, like "
            f"the bundled technical model's); only the Dense head on its {folded.num_features} pooled features is "
            "read back from ONNX: fine-tune from the checkpoint it was exported from, or train a new head on the "
            "aesthetic model's network as recipes/technical.toml does")
    config = ModelConfig(backbone=folded.spec.name, dropout=0.75, image_size=metadata.input_size)
    network = _network(folded, config)
    try:
        import torch

        with torch.no_grad():
            for (name, unit), (weight, bias) in zip(units, convs, strict=True):
                copy_array(unit.conv.weight, weight, name)
                copy_array(unit.conv.bias, bias, f"{name} bias")
            copy_array(network.head.linear.weight, kernel, "dense")
            copy_array(network.head.linear.bias, weights[dense[0].input[2]], "dense bias")
    except (KeyError, ValueError) as exc:
        raise ImportFailed(f"{path}: weights do not fit {metadata.backbone} ({exc})") from None
    _check_readback(path, network.eval(), metadata)
    described = f"read back from {path.name} ({metadata.name}, {metadata.backbone})"
    return ForeignModel(network, metadata.input_size, metadata.resize, metadata.normalization,
                        list(metadata.licenses), described)


def _dense_kernel(weights: dict[str, np.ndarray], gemm) -> np.ndarray | None:  # type: ignore[no-untyped-def]
    """The Dense (Gemm) layer's kernel as ``[out, in]`` (torch's layout, whatever its ``transB``); None when the
    graph has no 2-D kernel for it."""
    kernel = weights.get(gemm.input[1])
    if kernel is None or kernel.ndim != 2:
        return None
    trans_b = next((a.i for a in gemm.attribute if a.name == "transB"), 0)
    return kernel if trans_b else kernel.T


def _check_readback(path: Path, network: NimaNetwork, metadata) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import torch

    from nima_rt.train.model.contract_module import ContractModule

    images = np.random.default_rng(0).integers(0, 256, (4, metadata.input_size, metadata.input_size, 3), np.uint8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(["mean"], {"images": images})[0]
    with torch.no_grad():
        got = ContractModule(network, metadata.normalization)(torch.from_numpy(images))[1].numpy()
    drift = float(np.abs(got - expected).max())
    if not drift <= ONNX_READBACK_TOLERANCE:
        raise ImportFailed(f"{path}: the network read back from it scores up to {drift:.3g} away from the file "
                           f"(tolerance {ONNX_READBACK_TOLERANCE:g}); fine-tune from the file it was exported from")
