"""Keras's MobileNet v1 (the backbone of idealo's and titu1994's NIMA models) rebuilt in PyTorch,
operation for operation, as a backbone of :class:`~nima_rt.train.model.network.NimaNetwork` (the Dense
head is the network's linear head), so imported Keras weights score, train and export like any backbone.

What Keras computes (``keras.applications.MobileNet``, Keras >= 2.2, tf.keras and Keras 3):

- ``conv1``: 3x3 stride-2 convolution, no bias, TensorFlow ``same`` padding. At the stride-2 layers
  of a 224-pixel network every input side is even, where ``same`` pads one row/column on the
  bottom/right only: the same as the explicit ``ZeroPadding2D(((0, 1), (0, 1)))`` + ``valid`` that
  Keras 2.2 writes before ``conv1`` and the stride-2 depthwise convolutions. PyTorch's symmetric
  ``padding=1`` would shift the sampling grid by one pixel, so the pad here is explicit.
- 13 blocks ``conv_dw_N`` (3x3 depthwise) -> ``conv_dw_N_bn`` -> ReLU6 -> ``conv_pw_N`` (1x1) ->
  ``conv_pw_N_bn`` -> ReLU6; BatchNormalization epsilon 1e-3 (Keras's default, not PyTorch's 1e-5).
- global average pooling (this backbone's output), Dropout (identity at inference), Dense to 10 with
  softmax (the network's linear head).

Keras 2.1.5 and 2.1.6 built MobileNet with ``ZeroPadding2D((1, 1))`` (symmetric) before every
depthwise convolution and ``conv1``; ``padding="symmetric"`` reproduces that architecture
(``keras_import`` says when a file's layer names show it). Input normalisation
(``preprocess_input``: ``x / 127.5 - 1``, :data:`KERAS_NORMALIZATION`) is not here: the contract module
puts it in the graph.

Backbone names (``ModelConfig.backbone``): ``keras_mobilenet_v1_<alpha>`` (``keras_mobilenet_v1_1.00``),
``_symmetric`` for Keras 2.1.6's padding, ``_folded`` for weights whose BatchNorm was folded into the
convolutions (read back from an exported ONNX model: a bias per convolution, no BatchNorm layer, so
training it is training with frozen BatchNorm statistics).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nima_rt.contract.spec import Normalization

# (stride of the depthwise convolution) for conv_dw_1 .. conv_dw_13 (Keras's MobileNet table).
BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
BLOCKS = len(BLOCK_STRIDES)
KERAS_BN_EPSILON = 1e-3
PADDINGS = ("keras", "symmetric")
# mobilenet.preprocess_input: x / 127.5 - 1 == (x / 255 - 0.5) / 0.5
KERAS_NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# Keras's filters of conv1 and conv_pw_1..13 at alpha 1.0; each is int(filters * alpha).
BASE_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
# The conv_pw_N whose output ends each resolution (strides 2, 4, 8, 16, 32): the stages whose channel
# statistics the multilevel head reads, as timm's feature_info lists them for its MobileNets.
FEATURE_TAPS = (1, 3, 5, 11, 13)
BACKBONE_NAME = re.compile(r"keras_mobilenet_v1_(?P<alpha>\d+\.\d\d)(?P<symmetric>_symmetric)?(?P<folded>_folded)?")


@dataclass(frozen=True)
class KerasMobileNetSpec:
    """What a ``keras_mobilenet_v1_*`` backbone name says."""

    alpha: float
    padding: str = "keras"
    folded: bool = False

    @property
    def name(self) -> str:
        return (f"keras_mobilenet_v1_{self.alpha:.2f}{'_symmetric' if self.padding == 'symmetric' else ''}"
                f"{'_folded' if self.folded else ''}")

    @property
    def widths(self) -> list[int]:
        return [int(width * self.alpha) for width in BASE_WIDTHS]


def parse_backbone(name: str) -> KerasMobileNetSpec | None:
    """The spec a backbone name gives, or None when it is not a Keras MobileNet name."""
    match = BACKBONE_NAME.fullmatch(name)
    if match is None:
        return None
    return KerasMobileNetSpec(float(match["alpha"]), "symmetric" if match["symmetric"] else "keras",
                              bool(match["folded"]))


def conv_names() -> list[str]:
    """The weighted layers of Keras's MobileNet v1, in order (BatchNorm layers are ``<name>_bn``)."""
    names = ["conv1"]
    for block in range(1, BLOCKS + 1):
        names += [f"conv_dw_{block}", f"conv_pw_{block}"]
    return names


@dataclass(frozen=True)
class KerasLayerWeights:
    """The arrays of one Keras layer, keyed by their Keras names (``kernel``, ``gamma``, ...)."""

    arrays: Mapping[str, np.ndarray]

    def get(self, *names: str) -> np.ndarray:
        for name in names:
            if name in self.arrays:
                return self.arrays[name]
        raise KeyError(names[0])


class _ConvBN(nn.Module):
    """Convolution -> BatchNorm (eps 1e-3) -> ReLU6 with Keras's padding; ``folded``: a convolution with a
    bias and no BatchNorm (the BatchNorm folded into it)."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int], folded: bool = False) -> None:
        super().__init__()
        self.pad = pad  # (left, right, top, bottom), as F.pad takes it
        self.conv = conv
        self.bn = nn.Identity() if folded else nn.BatchNorm2d(conv.out_channels, eps=KERAS_BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.relu6(self.bn(self.conv(x)))


def _pad_for(stride: int, padding: str) -> tuple[int, int, int, int]:
    if stride == 1 or padding == "symmetric":
        return (1, 1, 1, 1)
    return (0, 1, 0, 1)  # TensorFlow "same" at stride 2 on an even side: bottom/right only


class KerasMobileNet(nn.Module):
    """Normalised float NCHW in (``x / 127.5 - 1``), the globally pooled features ``[N, widths[-1]]`` out.

    ``widths`` are the output channels of conv1 and of conv_pw_1..13 (32, 64, ..., 1024 for alpha 1.0).
    Children ``stem`` and ``blocks`` (26 units: conv_dw_N, conv_pw_N), so ``frozen = "blocks:N"`` works.
    """

    def __init__(self, spec: KerasMobileNetSpec) -> None:
        super().__init__()
        if spec.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {spec.padding!r}")
        widths, padding, folded = spec.widths, spec.padding, spec.folded
        self.spec = spec
        self.stem = _ConvBN(nn.Conv2d(3, widths[0], 3, stride=2, bias=folded), _pad_for(2, padding), folded)
        layers: list[nn.Module] = []
        for block, stride in enumerate(BLOCK_STRIDES):
            channels, out = widths[block], widths[block + 1]
            depthwise = nn.Conv2d(channels, channels, 3, stride=stride, groups=channels, bias=folded)
            layers.append(_ConvBN(depthwise, _pad_for(stride, padding), folded))
            layers.append(_ConvBN(nn.Conv2d(channels, out, 1, bias=folded), (0, 0, 0, 0), folded))
        self.blocks = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    @property
    def feature_info(self) -> list[dict[str, object]]:
        """The stages the multilevel head reads (timm's ``feature_info`` layout: one per resolution)."""
        return [{"module": f"blocks.{2 * tap - 1}", "num_chs": self.spec.widths[tap], "reduction": 2 ** (i + 1)}
                for i, tap in enumerate(FEATURE_TAPS)]

    def forward_intermediates(self, x: torch.Tensor, indices: int = len(FEATURE_TAPS),
                              intermediates_only: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(final feature map, the last ``indices`` stage outputs)`` as timm's models return them."""
        x = self.stem(x)
        stages = []
        for index, unit in enumerate(self.blocks):
            x = unit(x)
            if index % 2 == 1 and (index + 1) // 2 in FEATURE_TAPS:
                stages.append(x)
        return x, stages[len(stages) - indices:]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """Global average pooling of the final feature map (the backbone has no classifier)."""
        return x.mean(dim=(2, 3))

    def units(self) -> list[tuple[str, _ConvBN]]:
        """The weighted units with their Keras layer names (conv1, conv_dw_1, conv_pw_1, ...)."""
        return list(zip(conv_names(), [self.stem, *self.blocks], strict=True))

    @torch.no_grad()
    def load_keras(self, layers: Mapping[str, KerasLayerWeights]) -> None:
        """Copy Keras arrays in: HWIO kernels to OIHW, HWC1 depthwise kernels to C1HW, BatchNorm statistics."""
        for name, unit in self.units():
            kernel = layers[name].get("kernel", "depthwise_kernel")
            if name.startswith("conv_dw_"):
                tensor = np.transpose(kernel, (2, 3, 0, 1))  # (3, 3, C, 1) -> (C, 1, 3, 3)
            else:
                tensor = np.transpose(kernel, (3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
            copy_array(unit.conv.weight, tensor, name)
            bn = layers[f"{name}_bn"]
            copy_array(unit.bn.weight, bn.get("gamma"), f"{name}_bn/gamma")
            copy_array(unit.bn.bias, bn.get("beta"), f"{name}_bn/beta")
            copy_array(unit.bn.running_mean, bn.get("moving_mean"), f"{name}_bn/moving_mean")
            copy_array(unit.bn.running_var, bn.get("moving_variance"), f"{name}_bn/moving_variance")


def load_dense(linear: nn.Linear, dense: KerasLayerWeights) -> None:
    """Keras's Dense (kernel [in, out]) into a PyTorch Linear (weight [out, in])."""
    with torch.no_grad():
        copy_array(linear.weight, dense.get("kernel").T, "dense/kernel")
        copy_array(linear.bias, dense.get("bias"), "dense/bias")


def copy_array(target: torch.Tensor, array: np.ndarray, label: str) -> None:
    if tuple(array.shape) != tuple(target.shape):
        raise ValueError(f"{label}: shape {tuple(array.shape)} does not fit {tuple(target.shape)}")
    target.copy_(torch.from_numpy(np.array(array, dtype=np.float32)))  # a copy: ONNX arrays are read-only
