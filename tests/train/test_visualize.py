"""nima-rt visualize: activation maximisation raises the target channel; the grid's shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import ModelMetadata, Normalization  # noqa: E402
from nima_rt.train.evaluation.visualize import (  # noqa: E402
    ChannelImages,
    GridGeometry,
    VisualizeConfig,
    VisualizeError,
    channel_activation,
    feature_layers,
    find_layer,
    make_grid,
    parse_channels,
    visualize_channels,
)
from nima_rt.train.model.checkpoint import save_checkpoint  # noqa: E402
from nima_rt.train.model.network import ModelConfig  # noqa: E402
from nima_rt.train.model.pretrained import build_network  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3))


def _small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()


def test_optimisation_raises_the_channel_well_above_random_images():
    net = _small_net()
    channels = [0, 3, 7]
    config = VisualizeConfig(image_size=32, steps=200, learning_rate=0.1, seed=0)
    result = visualize_channels(net, "relu2", channels, Normalization(), config)
    assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.layer == "relu2" and result.channels == (0, 3, 7)

    layer = find_layer(net, "relu2")
    noise = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        random_level = torch.stack(
            [channel_activation(net, layer, noise, [c] * 8, Normalization()).mean() for c in channels]
        ).numpy()
        # The returned uint8 images, fed back, still excite their channel as reported.
        back = torch.from_numpy(result.images).permute(0, 3, 1, 2).float() / 255.0
        again = channel_activation(net, layer, back, channels, Normalization()).numpy()
    np.testing.assert_allclose(again, result.activations, rtol=0.05)
    ratio = result.activations / random_level
    assert ratio.min() > 3.0, ratio
    # Without optimisation (0 steps) the grey start image is far below random images.
    start = visualize_channels(net, "relu2", channels, Normalization(), VisualizeConfig(image_size=32, steps=0))
    assert (start.activations < random_level).all()


def test_pixel_parametrisation_without_transforms_also_climbs():
    net = _small_net()
    grey = visualize_channels(net, "relu2", list(range(16)), Normalization(), VisualizeConfig(image_size=32, steps=0))
    channel = int(np.argmax(grey.activations))  # a channel alive on the grey start (ReLU passes a gradient)
    config = VisualizeConfig(image_size=32, steps=60, learning_rate=0.05, fourier=False, decorrelate=False,
                             transforms=False)
    result = visualize_channels(net, "relu2", [channel], Normalization(), config)
    assert result.activations[0] > 3 * grey.activations[channel] > 0


def test_grid_has_one_row_per_network_and_one_column_per_channel():
    rng = np.random.default_rng(0)
    rows = [
        ChannelImages(rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8), np.zeros(4), (1, 2, 5, 9), "blocks.1")
        for _ in range(3)
    ]
    grid = make_grid(rows, ["imagenet:mobilenet_v2", "runs/a/best.pt", "runs/b/" + "x" * 80 + ".pt"])
    geometry = GridGeometry(rows=3, columns=4, cell=24)
    assert grid.size == geometry.size == (180 + 4 * 24 + 5 * 4, 18 + 3 * 24 + 4 * 4)
    pixels = np.asarray(grid)
    for r, row in enumerate(rows):
        for c, image in enumerate(row.images):
            x, y = geometry.origin(r, c)
            np.testing.assert_array_equal(pixels[y : y + 24, x : x + 24], image)


def test_parse_channels():
    assert parse_channels("0,3, 5-8") == [0, 3, 5, 6, 7, 8]
    with pytest.raises(VisualizeError, match=r"channels: 'x' is not a number or a range like 4-7"):
        parse_channels("1,x")
    with pytest.raises(VisualizeError, match="channels: '8-5' is not"):
        parse_channels("8-5")


def test_layer_errors():
    net = _small_net()
    with pytest.raises(VisualizeError, match=r"layer 5 is out of range: this network has 2 layers \(0..1"):
        find_layer(net, 5)
    with pytest.raises(VisualizeError, match=r"no layer named 'conv9'"):
        find_layer(net, "conv9")
    with pytest.raises(VisualizeError, match=r"layer conv2 has 16 channels \(0..15\); not 16, 20"):
        visualize_channels(net, 1, [0, 16, 20], Normalization(), VisualizeConfig(image_size=16, steps=0))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two checkpoints of the same small timm backbone with different random weights."""
    folder = tmp_path_factory.mktemp("ckpt")
    config = ModelConfig(backbone="mobilenetv3_small_050", image_size=64)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        network = build_network(config, None)
        paths.append(save_checkpoint(folder / f"seed{seed}.pt", network, config, ModelMetadata(name="t")))
    return paths


def test_nima_network_layers(checkpoints: list[Path]):
    from nima_rt.train.model.checkpoint import load_checkpoint

    layers = feature_layers(load_checkpoint(checkpoints[0]).network)
    names = [entry.name for entry in layers]
    assert names[:3] == ["backbone.bn1", "backbone.blocks.0.0", "backbone.blocks.1.0"]
    assert names[-1].startswith("backbone.blocks.5.")
    assert [entry.index for entry in layers] == list(range(len(layers)))


def test_cli_writes_a_grid_of_the_requested_shape(checkpoints: list[Path], tmp_path: Path):
    out = tmp_path / "grid.png"
    args = ["visualize", *map(str, checkpoints), "--layer", "3", "--channels", "0-2,5", "--image-size", "32",
            "--steps", "4", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rows x 4 channels" in result.output
    with Image.open(out) as grid:
        assert grid.size == GridGeometry(rows=2, columns=4, cell=32).size
        pixels = np.asarray(grid.convert("RGB"))
    geometry = GridGeometry(rows=2, columns=4, cell=32)
    (x0, y0), (x1, y1) = geometry.origin(0, 0), geometry.origin(1, 0)
    row0, row1 = pixels[y0 : y0 + 32, x0 : x0 + 32], pixels[y1 : y1 + 32, x1 : x1 + 32]
    assert not np.array_equal(row0, row1)  # same seed, different networks

    listed = CliRunner().invoke(app, ["visualize", str(checkpoints[0]), "--list-layers"])
    assert listed.exit_code == 0
    first = listed.output.splitlines()[0].split("\t")
    assert first[:2] == ["0", "backbone.bn1"] and first[2].endswith(" channels")


def test_cli_errors_are_one_line(checkpoints: list[Path], tmp_path: Path):
    result = CliRunner().invoke(app, ["visualize", str(checkpoints[0]), "--layer", "0", "--channels", "999",
                                      "--steps", "0", "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 1
    assert result.output.startswith("error: layer backbone.bn1 has 16 channels (0..15); not 999")
    missing = tmp_path / "nope.pt"
    result = CliRunner().invoke(app, ["visualize", str(missing), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 1 and result.output.strip() == f"error: {missing}: checkpoint not found"
