"""Keras's MobileNet v1 + NIMA head rebuilt in PyTorch, operation for operation.

What Keras computes (``keras.applications.MobileNet``, Keras >= 2.2, tf.keras and Keras 3):

- ``conv1``: 3x3 stride-2 convolution, no bias, TensorFlow ``same`` padding. At the stride-2 layers
  of a 224-pixel network every input side is even, where ``same`` pads one row/column on the
  bottom/right only: the same as the explicit ``ZeroPadding2D(((0, 1), (0, 1)))`` + ``valid`` that
  Keras 2.2 writes before ``conv1`` and the stride-2 depthwise convolutions. PyTorch's symmetric
  ``padding=1`` would shift the sampling grid by one pixel, so the pad here is explicit.
- 13 blocks ``conv_dw_N`` (3x3 depthwise) -> ``conv_dw_N_bn`` -> ReLU6 -> ``conv_pw_N`` (1x1) ->
  ``conv_pw_N_bn`` -> ReLU6; BatchNormalization epsilon 1e-3 (Keras's default, not PyTorch's 1e-5).
- global average pooling, Dropout (identity at inference), Dense to 10 with softmax.

Keras 2.1.5 and 2.1.6 built MobileNet with ``ZeroPadding2D((1, 1))`` (symmetric) before every
depthwise convolution and ``conv1``; ``padding="symmetric"`` reproduces that architecture
(``keras_import`` says when a file's layer names show it). Input normalisation
(``preprocess_input``: ``x / 127.5 - 1``) is not here: the contract module puts it in the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nima_rt.contract.spec import NUM_BINS

# (stride of the depthwise convolution) for conv_dw_1 .. conv_dw_13 (Keras's MobileNet table).
BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
BLOCKS = len(BLOCK_STRIDES)
KERAS_BN_EPSILON = 1e-3
PADDINGS = ("keras", "symmetric")


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
    """Convolution (no bias) -> BatchNorm (eps 1e-3) -> ReLU6 with Keras's padding."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.pad = pad  # (left, right, top, bottom), as F.pad takes it
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels, eps=KERAS_BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.relu6(self.bn(self.conv(x)))


def _pad_for(stride: int, padding: str) -> tuple[int, int, int, int]:
    if stride == 1 or padding == "symmetric":
        return (1, 1, 1, 1)
    return (0, 1, 0, 1)  # TensorFlow "same" at stride 2 on an even side: bottom/right only


class KerasMobileNetNima(nn.Module):
    """Normalised float NCHW in (``x / 127.5 - 1``), the 10-bin distribution out.

    ``widths`` are the output channels of conv1 and of conv_pw_1..13 (32, 64, ..., 1024 for alpha 1.0).
    """

    def __init__(self, widths: list[int], padding: str = "keras") -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        if len(widths) != BLOCKS + 1:
            raise ValueError(f"MobileNet v1 has {BLOCKS + 1} widths (conv1, conv_pw_1..13), got {len(widths)}")
        self.padding = padding
        self.stem = _ConvBN(nn.Conv2d(3, widths[0], 3, stride=2, bias=False), _pad_for(2, padding))
        layers: list[nn.Module] = []
        for block, stride in enumerate(BLOCK_STRIDES):
            channels, out = widths[block], widths[block + 1]
            depthwise = nn.Conv2d(channels, channels, 3, stride=stride, groups=channels, bias=False)
            layers.append(_ConvBN(depthwise, _pad_for(stride, padding)))
            layers.append(_ConvBN(nn.Conv2d(channels, out, 1, bias=False), (0, 0, 0, 0)))
        self.blocks = nn.Sequential(*layers)
        self.dense = nn.Linear(widths[-1], NUM_BINS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return torch.softmax(self.dense(x.mean(dim=(2, 3))), dim=1)

    def _units(self) -> list[tuple[str, _ConvBN]]:
        return list(zip(conv_names(), [self.stem, *self.blocks], strict=True))

    @torch.no_grad()
    def load_keras(self, layers: Mapping[str, KerasLayerWeights], dense: KerasLayerWeights) -> None:
        """Copy Keras arrays in: HWIO kernels to OIHW, HWC1 depthwise kernels to C1HW, Dense transposed."""
        for name, unit in self._units():
            kernel = layers[name].get("kernel", "depthwise_kernel")
            if name.startswith("conv_dw_"):
                tensor = np.transpose(kernel, (2, 3, 0, 1))  # (3, 3, C, 1) -> (C, 1, 3, 3)
            else:
                tensor = np.transpose(kernel, (3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, kh, kw)
            _copy(unit.conv.weight, tensor, name)
            bn = layers[f"{name}_bn"]
            _copy(unit.bn.weight, bn.get("gamma"), f"{name}_bn/gamma")
            _copy(unit.bn.bias, bn.get("beta"), f"{name}_bn/beta")
            _copy(unit.bn.running_mean, bn.get("moving_mean"), f"{name}_bn/moving_mean")
            _copy(unit.bn.running_var, bn.get("moving_variance"), f"{name}_bn/moving_variance")
        _copy(self.dense.weight, dense.get("kernel").T, "dense/kernel")
        _copy(self.dense.bias, dense.get("bias"), "dense/bias")


def _copy(target: torch.Tensor, array: np.ndarray, label: str) -> None:
    if tuple(array.shape) != tuple(target.shape):
        raise ValueError(f"{label}: shape {tuple(array.shape)} does not fit {tuple(target.shape)}")
    target.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
