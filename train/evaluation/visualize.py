"""Feature visualisation: what a channel of a convolutional layer responds to, and how fine-tuning
changed it (the seed's figures 13-15).

Activation maximisation in the spirit of the Lucid library: an input image is optimised by gradient
ascent so that one channel's mean activation grows. Three things keep the result natural-looking
rather than adversarial noise:

- the image lives in a Fourier parametrisation whose frequencies are scaled by 1/f, so the
  optimiser moves low frequencies as easily as high ones;
- colours are decorrelated: the parameters are mixed by the square root of ImageNet's colour
  correlation (an SVD factor) before a sigmoid maps them into 0..1;
- every step sees the image padded, jittered, scaled and rotated at random, so only features that
  survive small transformations pay off.

All channels of one network are optimised together as one batch. :func:`visualize_grid` lays out
one row per network and one column per channel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from nima_rt.contract.spec import Normalization

# Square root of ImageNet's RGB colour correlation (as an SVD factor), from the Lucid library's
# published constants; its columns are scaled so the largest has unit norm.
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
COLOR_MIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


class VisualizeError(ValueError):
    """A layer or channel that does not exist, or a bad setting; ``str()`` says which."""


@dataclass(frozen=True)
class VisualizeConfig:
    """How the images are optimised. Transform sizes are fractions of ``image_size``."""

    image_size: int = 224
    steps: int = 256
    learning_rate: float = 0.05
    fourier: bool = True  # False: optimise raw pixels (for comparison)
    decorrelate: bool = True
    transforms: bool = True
    pad: float = 0.05
    jitter: float = 0.035
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    max_rotation_degrees: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 1024:
            raise VisualizeError(f"image size must be in 16..1024, got {self.image_size}")
        if self.steps < 0:
            raise VisualizeError(f"steps must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class Layer:
    """A layer that can be visualised: its dotted module name and the module."""

    index: int
    name: str
    module: nn.Module


def feature_layers(network: nn.Module) -> list[Layer]:
    """The layers ``--layer N`` counts: for timm EfficientNet/MobileNet backbones the stem, every
    block of every stage, and the final 1x1 convolution's activation; otherwise every Conv2d."""
    backbone = getattr(network, "backbone", network)
    prefix = "backbone." if backbone is not network else ""
    blocks = getattr(backbone, "blocks", None)
    named: list[tuple[str, nn.Module]] = []
    if isinstance(blocks, nn.Sequential):
        if isinstance(getattr(backbone, "bn1", None), nn.Module):
            named.append(("bn1", backbone.bn1))
        for i, stage in enumerate(blocks):
            if isinstance(stage, nn.Sequential):
                named += [(f"blocks.{i}.{j}", block) for j, block in enumerate(stage)]
            else:
                named.append((f"blocks.{i}", stage))
        if isinstance(getattr(backbone, "bn2", None), nn.Module):
            named.append(("bn2", backbone.bn2))
        return [Layer(k, prefix + name, module) for k, (name, module) in enumerate(named)]
    convs = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    return [Layer(k, name, module) for k, (name, module) in enumerate(convs)]


def find_layer(network: nn.Module, layer: int | str) -> Layer:
    """``layer``: an index into :func:`feature_layers` (negative counts from the end) or any
    module's dotted name (as in ``named_modules``)."""
    layers = feature_layers(network)
    if isinstance(layer, int) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
        index = int(layer)
        if not -len(layers) <= index < len(layers):
            raise VisualizeError(f"layer {index} is out of range: this network has {len(layers)} layers "
                                 f"(0..{len(layers) - 1}; see --list-layers)")
        return layers[index]
    modules = dict(network.named_modules())
    if layer not in modules:
        raise VisualizeError(f"no layer named {layer!r} (see --list-layers)")
    by_name = {entry.name: entry.index for entry in layers}
    return Layer(by_name.get(layer, -1), layer, modules[layer])


class _Stop(Exception):
    """Raised by the hook once the layer has run: the rest of the network is not needed."""


def layer_output(network: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``module`` when ``network`` runs on ``x`` (the forward pass stops there)."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        network(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise VisualizeError("the layer did not run in the network's forward pass")
    output = captured[0]
    if output.ndim != 4:
        raise VisualizeError(f"the layer's output has shape {tuple(output.shape)}, expected [N, C, H, W]")
    return output


def layer_channels(network: nn.Module, layer: Layer, image_size: int = 64) -> int:
    """How many channels the layer outputs (one probe forward pass)."""
    with torch.no_grad():
        return int(layer_output(network, layer.module, torch.zeros(1, 3, image_size, image_size)).shape[1])


def channel_activation(
    network: nn.Module, layer: Layer, images: torch.Tensor, channels: Sequence[int], normalization: Normalization
) -> torch.Tensor:
    """Mean activation of ``channels[b]`` for image ``b`` (``images`` float [B, 3, H, W] in 0..1)."""
    mean = torch.tensor(normalization.mean, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std, dtype=images.dtype).view(1, 3, 1, 1)
    output = layer_output(network, layer.module, (images - mean) / std)
    index = torch.as_tensor(list(channels), dtype=torch.long)
    return output[torch.arange(len(index)), index].mean(dim=(1, 2))


class ImageParam(nn.Module):
    """A batch of images as trainable parameters: Fourier (1/f-scaled) or pixels, colours
    decorrelated or not; :meth:`forward` returns float [B, 3, S, S] in 0..1."""

    def __init__(self, batch: int, size: int, fourier: bool, decorrelate: bool, generator: torch.Generator):
        super().__init__()
        self.size, self.fourier, self.decorrelate = size, fourier, decorrelate
        if fourier:
            fy = torch.fft.fftfreq(size).view(-1, 1)
            fx = torch.fft.rfftfreq(size).view(1, -1)
            freqs = torch.sqrt(fx * fx + fy * fy)
            self.register_buffer("scale", 1.0 / torch.clamp(freqs, min=1.0 / size), persistent=False)
            shape = (batch, 3, size, size // 2 + 1, 2)
        else:
            shape = (batch, 3, size, size)
        self.raw = nn.Parameter(torch.randn(shape, generator=generator) * 0.01)
        self.register_buffer("mix", torch.from_numpy(COLOR_MIX), persistent=False)

    def forward(self) -> torch.Tensor:
        if self.fourier:
            spectrum = torch.view_as_complex(self.raw) * self.scale
            image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        else:
            image = self.raw
        if self.decorrelate:
            image = torch.einsum("bchw,dc->bdhw", image, self.mix)
        return torch.sigmoid(image)


def random_transform(images: torch.Tensor, config: VisualizeConfig, generator: torch.Generator) -> torch.Tensor:
    """Pad, jitter, scale and rotate at random, jitter again (same transform for the whole batch)."""
    size = images.shape[-1]

    def jitter(x: torch.Tensor, amount: int) -> torch.Tensor:
        if amount < 1:
            return x
        dy, dx = (int(v) for v in torch.randint(0, amount + 1, (2,), generator=generator))
        return x[..., dy : x.shape[-2] - amount + dy, dx : x.shape[-1] - amount + dx]

    pad = max(1, round(config.pad * size))
    x = F.pad(images, (pad, pad, pad, pad), mode="constant", value=0.5)
    x = jitter(x, max(1, round(config.jitter * size)))
    scale = config.scales[int(torch.randint(0, len(config.scales), (1,), generator=generator))]
    angle = math.radians(float(torch.empty(1).uniform_(-1, 1, generator=generator)) * config.max_rotation_degrees)
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return jitter(x, max(1, round(config.jitter * size / 2)))


@dataclass(frozen=True)
class ChannelImages:
    """Optimised images (uint8 [C, S, S, 3]) for ``channels`` and their final mean activations."""

    images: np.ndarray
    activations: np.ndarray
    channels: tuple[int, ...]
    layer: str


def visualize_channels(
    network: nn.Module, layer: int | str, channels: Sequence[int], normalization: Normalization,
    config: VisualizeConfig = VisualizeConfig(),
) -> ChannelImages:
    """Optimise one image per channel of ``layer`` to maximise that channel's mean activation."""
    if not channels:
        raise VisualizeError("no channels given")
    found = find_layer(network, layer)
    available = layer_channels(network, found)
    bad = [c for c in channels if not 0 <= c < available]
    if bad:
        raise VisualizeError(f"layer {found.name} has {available} channels (0..{available - 1}); "
                             f"not {', '.join(map(str, bad))}")
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    param = ImageParam(len(channels), config.image_size, config.fourier, config.decorrelate, generator)
    optimizer = torch.optim.Adam(param.parameters(), lr=config.learning_rate)
    for _ in range(config.steps):
        optimizer.zero_grad(set_to_none=True)
        images = param()
        if config.transforms:
            images = random_transform(images, config, generator)
        loss = -channel_activation(network, found, images, channels, normalization).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = param()
        activations = channel_activation(network, found, final, channels, normalization)
    pixels = (final.permute(0, 2, 3, 1).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    return ChannelImages(pixels, activations.numpy(), tuple(channels), found.name)


# --- the grid --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridGeometry:
    """Where each cell of the grid is: a label column on the left, a header row on top."""

    rows: int
    columns: int
    cell: int
    gap: int = 4
    label_width: int = 180
    header_height: int = 18

    @property
    def size(self) -> tuple[int, int]:
        width = self.label_width + self.columns * self.cell + (self.columns + 1) * self.gap
        height = self.header_height + self.rows * self.cell + (self.rows + 1) * self.gap
        return width, height

    def origin(self, row: int, column: int) -> tuple[int, int]:
        """Top-left pixel of a cell."""
        x = self.label_width + self.gap + column * (self.cell + self.gap)
        y = self.header_height + self.gap + row * (self.cell + self.gap)
        return x, y


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def make_grid(rows: Sequence[ChannelImages], row_labels: Sequence[str]) -> Image.Image:
    """One row per network, one column per channel, labelled; white background."""
    if not rows:
        raise VisualizeError("nothing to lay out")
    cell = rows[0].images.shape[1]
    geometry = GridGeometry(len(rows), len(rows[0].channels), cell)
    grid = Image.new("RGB", geometry.size, "white")
    draw = ImageDraw.Draw(grid)
    try:
        font = ImageFont.load_default(size=12)  # Pillow >= 10.1; at its default size ':' vanishes
    except TypeError:
        font = ImageFont.load_default()
    draw.text((4, 3), _fit(draw, rows[0].layer, font, geometry.label_width - 8), fill="black", font=font)
    for column, channel in enumerate(rows[0].channels):
        x, _ = geometry.origin(0, column)
        draw.text((x, 3), f"channel {channel}", fill="black", font=font)
    for row_index, (row, label) in enumerate(zip(rows, row_labels, strict=True)):
        _, y = geometry.origin(row_index, 0)
        draw.text((4, y + 2), _fit(draw, label, font, geometry.label_width - 8), fill="black", font=font)
        for column, image in enumerate(row.images):
            grid.paste(Image.fromarray(image), geometry.origin(row_index, column))
    return grid


def parse_channels(text: str) -> list[int]:
    """``"0,3,5-8"`` -> [0, 3, 5, 6, 7, 8]."""
    channels: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                start, end = (int(v) for v in part.split("-", 1))
                if end < start:
                    raise ValueError
                channels += range(start, end + 1)
            else:
                channels.append(int(part))
        except ValueError:
            raise VisualizeError(f"channels: {part!r} is not a number or a range like 4-7") from None
    if not channels:
        raise VisualizeError("channels: none given")
    return channels


@dataclass
class Subject:
    """A network to visualise, its input normalisation and its row label."""

    network: nn.Module
    normalization: Normalization
    label: str


def load_subject(spec: str) -> Subject:
    """A checkpoint path, or ``imagenet:<backbone>`` for the ImageNet backbone before fine-tuning."""
    from nima_rt.train.model.network import ModelConfig, normalization_for
    from nima_rt.train.model.pretrained import build_network

    if spec.startswith("imagenet:"):
        config = ModelConfig(backbone=spec.split(":", 1)[1])
        return Subject(build_network(config, "imagenet").eval(), normalization_for(config), spec)
    from nima_rt.train.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(spec)
    label = os.path.join(Path(spec).parent.name, Path(spec).name) if Path(spec).parent.name else spec
    return Subject(checkpoint.network, checkpoint.metadata.normalization, label)


def visualize_grid(
    subjects: Sequence[Subject], layer: int | str, channels: Sequence[int], config: VisualizeConfig = VisualizeConfig()
) -> tuple[Image.Image, list[ChannelImages]]:
    """Optimise ``channels`` of ``layer`` for every subject; the grid has one row per subject.
    Each row starts from the same random seed, so rows differ only through the networks."""
    rows = [visualize_channels(s.network, layer, channels, s.normalization, config) for s in subjects]
    return make_grid(rows, [s.label for s in subjects]), rows
