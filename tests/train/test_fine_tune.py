"""Fine-tuning from a trained NIMA model (the seed's second iteration): the bundled aesthetic model, Keras
files and PyTorch NIMA state dicts start a run from their own weights, scoring exactly as the model before
any step, and the fine-tuned model keeps the parent's preprocessing and names its parent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("h5py")

from helpers.keras_nima import random_mobilenet_layers, write_layers_h5  # noqa: E402
from helpers.paths import EXAMPLE_PHOTOS  # noqa: E402
from helpers.tiny_models import write_tiny_model  # noqa: E402
from helpers.training_data import write_blur_set  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nima_rt import Scorer, bundled_models, load_model_file  # noqa: E402
from nima_rt.cli import app  # noqa: E402
from nima_rt.export.api import ExportRequest, run_export  # noqa: E402
from nima_rt.io.decode import Preprocess, decode_file  # noqa: E402
from nima_rt.train.fit.config import ConfigError, resolve_config  # noqa: E402
from nima_rt.train.model.contract_module import ContractModule  # noqa: E402
from nima_rt.train.model.network import ModelConfig, normalization_for  # noqa: E402
from nima_rt.train.model.pretrained import PretrainedError, build_network, describe_pretrained  # noqa: E402

PHOTOS = sorted(EXAMPLE_PHOTOS.glob("*.jpg"))
needs_aesthetic = pytest.mark.skipif("aesthetic" not in bundled_models(), reason="no bundled aesthetic model")


def network_means(network, metadata, photos: list[Path]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The network's mean scores on ``photos`` decoded as the runtime decodes them for ``metadata``."""
    spec = Preprocess.for_model(metadata)
    images = np.stack([decode_file(path, [spec])[0] for path in photos])
    module = ContractModule(network.eval(), normalization_for(network.config)).eval()
    with torch.no_grad():
        return module(torch.from_numpy(images))[1].numpy().astype(np.float64)


def runtime_means(model: str | Path, photos: list[Path]) -> np.ndarray:
    with Scorer([str(model)]) as scorer:
        rows = list(scorer.score_paths(photos))
        column = scorer.columns[0]
    return np.array([row.scores[column].mean for row in rows])


@needs_aesthetic
def test_the_bundled_aesthetic_model_is_read_back_scoring_exactly_as_it_does(one_torch_thread) -> None:
    parent = describe_pretrained("aesthetic")
    assert parent is not None
    assert (parent.backbone, parent.input_size) == ("keras_mobilenet_v1_1.00_folded", 224)
    assert parent.resize == {"policy": "squash", "interpolation": "nearest", "jpeg_draft": False}
    assert parent.licenses[0].startswith("Apache-2.0, Copyright 2018 idealo internet GmbH")
    network = build_network(ModelConfig(backbone=parent.backbone), "aesthetic")
    means = network_means(network, load_model_file("aesthetic").metadata, PHOTOS)
    assert np.abs(means - runtime_means("aesthetic", PHOTOS)).max() <= 1e-5  # before any step


def test_keras_files_and_pytorch_nima_files_start_from_their_weights(tmp_path: Path, one_torch_thread) -> None:
    keras = write_layers_h5(tmp_path / "weights_mobilenet_aesthetic_mine.hdf5", random_mobilenet_layers(seed=1))
    parent = describe_pretrained(keras)
    assert parent is not None and parent.backbone == "keras_mobilenet_v1_0.25"
    imported = tmp_path / "imported.onnx"
    run_export(ExportRequest(source=keras, output=imported, verify=False))
    network = build_network(ModelConfig(backbone=parent.backbone), keras)
    expected = runtime_means(imported, PHOTOS)
    assert np.ptp(expected) > 0.01
    assert np.abs(network_means(network, load_model_file(imported).metadata, PHOTOS) - expected).max() <= 1e-4

    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    state = {f"base_model.{k}": v for k, v in torch.nn.Sequential(*list(resnet.children())[:-1]).state_dict().items()}
    state.update({"head.2.weight": torch.randn(10, 512) * 0.05, "head.2.bias": torch.randn(10)})
    nima = tmp_path / "nima_resnet18.pth"
    torch.save({"model_type": "resnet18", "state_dict": state}, nima)
    parent = describe_pretrained(nima)
    assert parent is not None and parent.backbone == "nima.pytorch:resnet18"
    assert parent.resize["interpolation"] == "bilinear"
    imported = tmp_path / "nima.onnx"
    run_export(ExportRequest(source=nima, output=imported, verify=False))
    network = build_network(ModelConfig(backbone=parent.backbone), nima)
    got = network_means(network, load_model_file(imported).metadata, PHOTOS)
    assert np.abs(got - runtime_means(imported, PHOTOS)).max() <= 1e-4


def test_the_model_brings_its_network_unless_one_is_named(tmp_path: Path) -> None:
    keras = write_layers_h5(tmp_path / "idealo.hdf5", random_mobilenet_layers(seed=2))
    config = resolve_config("default", None, {"pretrained": str(keras), "data": {"labels": "x.csv"}})
    assert (config.model.backbone, config.model.image_size) == ("keras_mobilenet_v1_0.25", 224)
    named = resolve_config("default", None, {"pretrained": str(keras), "data": {"labels": "x.csv"},
                                             "model": {"backbone": "mobilenet_v2"}})
    with pytest.raises(PretrainedError, match=r"idealo.hdf5: a keras_mobilenet_v1_0.25 network, but backbone "
                                              r"'mobilenet_v2' was asked for \(leave --backbone out"):
        build_network(named.model, named.pretrained)
    assert resolve_config("default", None, {"data": {"labels": "x.csv"}}).model.backbone == "efficientnet_lite0"
    with pytest.raises(ConfigError):
        resolve_config("default", None, {"pretrained": str(keras)})  # no labels: still the usual error


@needs_aesthetic
def test_models_that_cannot_be_read_back_are_refused_saying_what_to_do(tmp_path: Path) -> None:
    # The bundled technical model (v3) is a multilevel head on the aesthetic model's network.
    refusal = (r"technical.onnx: a keras_mobilenet_v1_1.00_folded network with a head on 4992 features \(a multilevel "
               r"head, like the bundled technical model's\); only the Dense head on its 1024 pooled features is read "
               r"back from ONNX: fine-tune from the checkpoint it was exported from, or train a new head")
    with pytest.raises(Exception, match=refusal):
        build_network(ModelConfig(), "technical")
    v1 = tmp_path / "v1.onnx"  # a model of another backbone
    write_tiny_model(v1)
    with pytest.raises(Exception, match=r"v1.onnx: an ONNX model of backbone 'channel-mean'; only Keras MobileNet "
                                        r"models .* fine-tune from the file it was exported from"):
        build_network(ModelConfig(), str(v1))


@needs_aesthetic
def test_fine_tuning_the_bundled_aesthetic_model_end_to_end(tmp_path: Path, one_torch_thread) -> None:
    labels = write_blur_set(tmp_path / "photos", 12, size=96)
    args = ["train", "--preset", "aesthetic", "--labels", str(labels), "--head-epochs", "1", "--full-epochs", "1",
            "--batch-size", "6", "--threads", "1", "--workers", "0", "--out", str(tmp_path / "runs"),
            "--name", "hotel-aesthetic"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    config = json.loads((run / "config.json").read_text())
    assert (config["pretrained"], config["model"]["backbone"]) == ("aesthetic", "keras_mobilenet_v1_1.00_folded")
    assert config["parent"]["sha256"] == load_model_file("aesthetic").sha256
    exported = tmp_path / "hotel.onnx"
    run_export(ExportRequest(source=run / "best.pt", output=exported, verify_count=4))
    metadata = load_model_file(exported).metadata
    assert (metadata.name, metadata.kind, metadata.backbone) == ("hotel-aesthetic", "aesthetic",
                                                                  "keras_mobilenet_v1_1.00_folded")
    assert (metadata.resize.interpolation, metadata.resize.jpeg_draft) == ("nearest", False)  # the parent's
    assert tuple(metadata.normalization.mean) == (0.5, 0.5, 0.5)
    assert metadata.parent["name"] == "aesthetic" and metadata.parent["sha256"] == load_model_file("aesthetic").sha256
    assert metadata.licenses[0].startswith("Apache-2.0, Copyright 2018 idealo internet GmbH")
    assert "fine-tuned from aesthetic" in metadata.notes
    scores = runtime_means(exported, PHOTOS)
    assert np.all((scores >= 1) & (scores <= 10))
    before = CliRunner().invoke(app, ["evaluate", "aesthetic", "--labels", str(labels), "--json",
                                      "--out", str(tmp_path / "eval-before")])
    assert before.exit_code == 0, before.output  # the model the run started from, measured the same way
    assert set(json.loads(before.stdout)) >= {"emd", "lcc", "srcc"}


def test_a_multilevel_head_on_a_keras_model_s_backbone(tmp_path: Path, one_torch_thread) -> None:
    # The v3 technical recipe: a new multilevel head on the frozen network of an aesthetic (Keras) model.
    keras = write_layers_h5(tmp_path / "aesthetic_mine.hdf5", random_mobilenet_layers(seed=3))
    parent = describe_pretrained(keras)
    assert parent is not None
    plain = build_network(ModelConfig(backbone=parent.backbone), keras)
    network = build_network(ModelConfig(backbone=parent.backbone, head="multilevel"), keras)
    # The backbone's weights are the model's; the head is new: pooled features + mean/std of the five
    # resolution stages (conv_pw_1, 3, 5, 11, 13 at alpha 0.25: 16, 32, 64, 128, 256 channels).
    for name, tensor in plain.backbone.state_dict().items():
        assert torch.equal(tensor, network.backbone.state_dict()[name]), name
    assert [info["num_chs"] for info in network.backbone.feature_info] == [16, 32, 64, 128, 256]
    assert network.feature_dim == 256 + 2 * (16 + 32 + 64 + 128 + 256)
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    network.eval()
    plain.eval()
    with torch.no_grad():
        features = network.features(x)
        units = [plain.backbone.stem(x)]
        for unit in plain.backbone.blocks:
            units.append(unit(units[-1]))
    # conv_pw_N is unit 2N of [stem, dw1, pw1, ...]; the first stage's statistics follow the pooled features.
    pw1 = units[2].flatten(2)
    assert torch.allclose(features[:, :256], units[-1].mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(features[:, 256:272], pw1.mean(2), atol=1e-6)
    assert torch.allclose(features[:, 272:288], torch.sqrt(pw1.var(2, unbiased=False) + 1e-6), atol=1e-6)
