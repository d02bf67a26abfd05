"""PyTorch NIMA state dicts (nima.pytorch, pyiqa) imported: parity with the publishers' module structure, refusals.

The references below re-declare each publisher's NIMA module as their code does (nima.pytorch:
``nn.Sequential(*list(resnet.children())[:-1])`` + ReLU/Dropout/Linear/Softmax head; pyiqa: timm
``features_only`` backbone, average pool, Flatten/Dropout/Linear/Softmax) with random weights and
perturbed BatchNorm statistics, and score the photos with the publishers' preprocessing
(torchvision ``Resize((224, 224))`` on the PIL image, ``ToTensor``, ImageNet ``Normalize``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch import needs the train extra")
torchvision = pytest.importorskip("torchvision", reason="PyTorch import needs the train extra")
timm = pytest.importorskip("timm", reason="PyTorch import needs the train extra")

from helpers.paths import EXAMPLE_PHOTOS  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from nima_rt.export.api import ExportRequest, run_export  # noqa: E402
from nima_rt.export.importers.base import ImportFailed  # noqa: E402
from nima_rt.runtime.scorer import Scorer  # noqa: E402

PHOTOS = sorted(EXAMPLE_PHOTOS.glob("*.jpg"))
BAR = 1e-3


class NimaPytorchReference(nn.Module):
    """truskovskiyk/nima.pytorch's NIMA class (nima/model.py) on a torchvision ResNet-18."""

    def __init__(self) -> None:
        super().__init__()
        base = torchvision.models.resnet18(weights=None)
        self.base_model = nn.Sequential(*list(base.children())[:-1])
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Dropout(p=0.75), nn.Linear(512, 10), nn.Softmax(dim=1))

    def forward(self, x):
        x = self.base_model(x)
        return self.head(x.view(x.size(0), -1))


class PyiqaReference(nn.Module):
    """chaofengc/IQA-PyTorch's NIMA (pyiqa/archs/nima_arch.py) with a timm backbone; input in [0, 1]."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.base_model = timm.create_model(name, pretrained=False, features_only=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        channels = self.base_model.feature_info.channels()[-1]
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(p=0.0), nn.Linear(channels, 10), nn.Softmax(dim=-1))
        self.register_buffer("default_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("default_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        x = (x - self.default_mean) / self.default_std
        return self.classifier(self.global_pool(self.base_model(x)[-1]))


def randomise(module: nn.Module, inputs: torch.Tensor, features, seed: int) -> nn.Module:
    """Non-trivial weights that tell photos apart: BatchNorm statistics measured on ``inputs`` (one training-mode
    pass with momentum 1) and then perturbed, random affine terms, and a head with a bias scaled to the pooled
    ``features``' spread."""
    generator = torch.Generator().manual_seed(seed)
    norms = [layer for layer in module.modules() if isinstance(layer, nn.BatchNorm2d)]
    with torch.no_grad():
        for layer in norms:
            c = layer.num_features
            layer.weight.copy_(torch.rand(c, generator=generator) * 0.8 + 0.6)
            layer.bias.copy_(torch.randn(c, generator=generator) * 0.2 + 0.2)
            layer.momentum = 1.0
        module.train()
        module(inputs)
        for layer in norms:
            c = layer.num_features
            layer.running_mean.add_(torch.randn(c, generator=generator) * 0.1 * layer.running_var.sqrt())
            layer.running_var.mul_(torch.rand(c, generator=generator) * 0.7 + 0.7)
            layer.momentum = 0.1
        module.eval()
        pooled = features(module, inputs)
        head = next(layer for layer in module.modules() if isinstance(layer, nn.Linear))
        weight = torch.randn(head.weight.shape, generator=generator) / pooled.shape[1] ** 0.5
        weight /= pooled.std(0) + 1e-2
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ pooled.mean(0)) + torch.randn(head.bias.shape, generator=generator) * 0.5)
    return module


def torchvision_inputs(paths: list[Path], normalise: bool) -> torch.Tensor:
    from torchvision import transforms

    steps = [transforms.Resize((224, 224)), transforms.ToTensor()]
    if normalise:
        steps.append(transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    transform = transforms.Compose(steps)
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def convert_and_score(source: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    output = tmp_path / "imported.onnx"
    result = run_export(ExportRequest(source=source, output=output, verify=False, name="imported"))
    with Scorer([output]) as scorer:
        rows = list(scorer.score_paths(PHOTOS))
    assert all(row.ok for row in rows)
    return (np.array([r.scores["imported"].mean for r in rows]),
            np.array([r.scores["imported"].dist for r in rows]), result.metadata)


def check_parity(reference: nn.Module, inputs: torch.Tensor, mean: np.ndarray, dist: np.ndarray) -> None:
    with torch.no_grad():
        expected = reference(inputs).double().numpy()
    expected_mean = expected @ np.arange(1, 11)
    assert np.ptp(expected_mean) > 0.5  # the reference tells the photos apart
    assert np.abs(mean - expected_mean).max() <= BAR
    assert np.abs(dist - expected).max() <= BAR


def test_nima_pytorch_resnet_checkpoint(tmp_path: Path, one_torch_thread) -> None:
    inputs = torchvision_inputs(PHOTOS, normalise=True)
    reference = randomise(NimaPytorchReference(), inputs, lambda m, x: torch.relu(m.base_model(x).flatten(1)), seed=1)
    source = tmp_path / "nima_resnet18.pth"
    torch.save({"model_type": "resnet18", "state_dict": reference.state_dict()}, source)
    mean, dist, metadata = convert_and_score(source, tmp_path)
    check_parity(reference, inputs, mean, dist)
    assert metadata.backbone == "nima.pytorch:resnet18"
    assert (metadata.resize.policy, metadata.resize.interpolation, metadata.resize.jpeg_draft) == (
        "squash", "bilinear", False)


def test_pyiqa_params_checkpoint(tmp_path: Path, one_torch_thread) -> None:
    inputs = torchvision_inputs(PHOTOS, normalise=False)
    pooled = lambda m, x: m.global_pool(m.base_model((x - m.default_mean) / m.default_std)[-1]).flatten(1)  # noqa: E731
    reference = randomise(PyiqaReference("mobilenetv2_100"), inputs, pooled, seed=2)
    source = tmp_path / "NIMA_mobilenet.pth"
    torch.save({"params": reference.state_dict()}, source)
    mean, dist, metadata = convert_and_score(source, tmp_path)
    check_parity(reference, inputs, mean, dist)
    assert (metadata.backbone, metadata.input_size) == ("pyiqa:mobilenetv2_100", 224)


def test_an_import_reads_its_source_once_and_decodes_each_verification_image_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread
) -> None:
    import nima_rt.export.images as images

    source = tmp_path / "nima_resnet18.pth"
    torch.save({"model_type": "resnet18", "state_dict": NimaPytorchReference().state_dict()}, source)
    loads: list[str] = []
    decoded: list[str] = []
    real_load, real_decode = torch.load, images.decode_file
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: loads.append(str(path)) or real_load(path, *a, **k))
    monkeypatch.setattr(images, "decode_file",
                        lambda path, *a, **k: decoded.append(str(path)) or real_decode(path, *a, **k))
    run_export(ExportRequest(source=source, output=tmp_path / "m.onnx", verify_images=PHOTOS[0].parent, verify_count=3))
    assert loads == [str(source)]  # classified and imported from one read
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 3  # fp32 verification and fp16 check share them


def test_unknown_state_dicts_are_refused_naming_the_keys(tmp_path: Path) -> None:
    source = tmp_path / "classifier.pt"
    torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, source)
    with pytest.raises(ImportFailed) as caught:
        run_export(ExportRequest(source=source, output=tmp_path / "x.onnx", verify=False))
    assert str(caught.value) == (
        f"{source}: not a nima-rt checkpoint and no NIMA head (head.2.* or classifier.2.*) (2 tensors: fc.weight, "
        "fc.bias); nima-rt imports nima.pytorch (base_model.* + head.2.*, torchvision ResNet-18..152) and pyiqa NIMA "
        "(base_model.* + classifier.2.*, timm vgg16, inception_resnet_v2, mobilenetv2_100, resnet50) state dicts"
    )


def test_a_head_on_an_unsupported_backbone_is_refused(tmp_path: Path) -> None:
    base = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1))
    model = nn.Module()
    model.base_model, model.head = base, nn.Sequential(nn.ReLU(), nn.Dropout(), nn.Linear(8, 10))
    source = tmp_path / "custom.pth"
    torch.save(model.state_dict(), source)
    with pytest.raises(ImportFailed, match=r"custom.pth: a nima.pytorch NIMA head on a backbone that is none of "
                                           r"resnet18, resnet34, resnet50, resnet101, resnet152 \(4 tensors: "
                                           r"base_model.0.weight, base_model.0.bias, head.2.weight, \.\.\.\)"):
        run_export(ExportRequest(source=source, output=tmp_path / "x.onnx", verify=False))
    own = {"base_model.0.0.0.weight": torch.zeros(32, 3, 3, 3),
           "base_model.0.1.conv.0.weight": torch.zeros(32, 32, 1, 1),
           "head.2.weight": torch.zeros(10, 1280), "head.2.bias": torch.zeros(10)}
    torch.save({"state_dict": own}, source)
    with pytest.raises(ImportFailed, match=r"custom.pth: nima.pytorch's own MobileNetV2 \(its pretrain-model.pth: ReLU "
                                           r"stem .*\); nima-rt imports nima.pytorch"):
        run_export(ExportRequest(source=source, output=tmp_path / "x.onnx", verify=False))
    model.head = nn.Sequential(nn.ReLU(), nn.Dropout(), nn.Linear(8, 5))
    torch.save(model.state_dict(), source)
    with pytest.raises(ImportFailed, match=r"custom.pth: the head has 5 outputs, NIMA's has 10"):
        run_export(ExportRequest(source=source, output=tmp_path / "x.onnx", verify=False))


def test_kind_and_name_rename_checkpoints_and_onnx_variants(tmp_path: Path) -> None:
    """--kind/--name apply to nima-rt checkpoints and to ONNX sources of fp16 variants too, not only to imports."""
    from helpers.export_models import tiny_checkpoint

    from nima_rt.io.model_file import load_model_file

    checkpoint = tiny_checkpoint(tmp_path / "best.pt")
    plain = run_export(ExportRequest(checkpoint, tmp_path / "plain.onnx", verify=False))
    renamed = run_export(ExportRequest(checkpoint, tmp_path / "renamed.onnx", verify=False, kind="aesthetic",
                                       name="mine"))
    assert (renamed.metadata.kind, renamed.metadata.name) == ("aesthetic", "mine") != (
        plain.metadata.kind, plain.metadata.name)
    half = run_export(ExportRequest(tmp_path / "plain.onnx", tmp_path / "half.onnx", precision="fp16",
                                    verify=False, name="half"))
    assert load_model_file(half.output).metadata.name == "half"
    with pytest.raises(ValueError, match="model kind 'pretty' is not one of aesthetic, technical, custom"):
        run_export(ExportRequest(checkpoint, tmp_path / "bad.onnx", verify=False, kind="pretty"))
