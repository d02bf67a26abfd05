"""Model, checkpoints, the two-stage trainer (run folder, exact resume, learning) and the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from helpers.training_data import write_blur_set  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import ContractError, ModelMetadata, Normalization  # noqa: E402
from nima_rt.runtime.metrics import compute_metrics  # noqa: E402
from nima_rt.train.data.label_sets import load_label_set, split_by_group  # noqa: E402
from nima_rt.train.evaluation.evaluate import evaluate_checkpoint  # noqa: E402
from nima_rt.train.fit.config import ConfigError, resolve_config  # noqa: E402
from nima_rt.train.fit.runs import read_metrics  # noqa: E402
from nima_rt.train.fit.train_run import train  # noqa: E402
from nima_rt.train.model import pretrained as pretrained_module  # noqa: E402
from nima_rt.train.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from nima_rt.train.model.network import ModelConfig, normalization_for  # noqa: E402
from nima_rt.train.model.pretrained import (  # noqa: E402
    PretrainedError,
    build_network,
    efficientnet_lite0_package_file,
    map_efficientnet_lite0,
)

TINY = "test_efficientnet"  # timm's test-size EfficientNet: a real architecture, milliseconds per batch


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny_config(labels: Path, out: Path, **changes) -> object:
    overrides = {
        "name": "tiny", "out": str(out), "batch_size": 16, "pretrained": "none", "seed": 0, "threads": 1,
        "model": {"backbone": TINY, "image_size": 64},
        "head": {"epochs": 1}, "full": {"epochs": 1, "lr": 1e-3},
        "data": {"labels": str(labels), "val_fraction": 0.25, "workers": 0},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            overrides[key] = {**overrides.get(key, {}), **value}
        else:
            overrides[key] = value
    return resolve_config("default", overrides=overrides)


@pytest.fixture(scope="module")
def blur48(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_blur_set(tmp_path_factory.mktemp("blur48"), 48, size=80)


@pytest.fixture(scope="module")
def full_run(blur48: Path, tmp_path_factory: pytest.TempPathFactory):
    """1 head + 1 full epoch on 48 generated 64-px images, random init, uninterrupted."""
    return train(tiny_config(blur48, tmp_path_factory.mktemp("runs")), echo=False, progress=False)


# --- model ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backbone", "head", "features"), [
    ("mobilenetv1_100", "linear", 1024), ("mobilenet_v2", "linear", 1280), ("mobilenet_v3_large", "linear", 1280),
    ("efficientnet_lite0", "linear", 1280), ("mobilenet_v2", "multilevel", 1280 + 2 * (16 + 24 + 32 + 96 + 320)),
    (TINY, "multilevel", 624),
])
def test_backbones_output_a_distribution(backbone: str, head: str, features: int) -> None:
    torch.manual_seed(0)
    network = build_network(ModelConfig(backbone=backbone, head=head, image_size=64), "none").eval()
    assert network.feature_dim == features
    with torch.no_grad():
        dist = network(torch.randn(2, 3, 64, 64))
    assert tuple(dist.shape) == (2, 10)
    torch.testing.assert_close(dist.sum(dim=1), torch.ones(2))
    assert (dist > 0).all()


def test_model_config_is_validated() -> None:
    with pytest.raises(ContractError, match="head 'deep' is not one of linear, multilevel"):
        ModelConfig(head="deep")
    with pytest.raises(ContractError, match="unknown backbone 'resnet9000'"):
        build_network(ModelConfig(backbone="resnet9000"), "none")


def test_efficientnet_lite0_package_weights_map_one_to_one() -> None:
    source = torch.load(efficientnet_lite0_package_file(), map_location="cpu", weights_only=True)
    config = ModelConfig(backbone="efficientnet_lite0")
    network = build_network(config, "none")
    mapped = map_efficientnet_lite0(source, network.backbone.state_dict())
    result = network.backbone.load_state_dict(mapped, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert len(mapped) == len(source) - 2  # everything but the classifier (_fc.weight, _fc.bias)
    loaded = build_network(config, "imagenet")
    torch.testing.assert_close(loaded.backbone.conv_stem.weight, source["_conv_stem.weight"])
    torch.testing.assert_close(loaded.backbone.bn2.running_var, source["_bn1.running_var"])
    # The stem's batch-norm means show the weights saw (x - 0.5) / 0.5 inputs (TF-Lite style), as
    # timm's data config says: predicted channel means from ImageNet's pixel mean correlate ~0.97.
    assert normalization_for(config) == Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    summed = source["_conv_stem.weight"].double().sum(dim=(2, 3)).numpy()
    predicted = summed @ ((np.array([0.485, 0.456, 0.406]) - 0.5) / 0.5)
    assert np.corrcoef(predicted, source["_bn0.running_mean"].double().numpy())[0, 1] > 0.95


def test_mismatched_lite0_weights_are_refused() -> None:
    source = torch.load(efficientnet_lite0_package_file(), map_location="cpu", weights_only=True)
    target = build_network(ModelConfig(backbone="efficientnet_lite0"), "none").backbone.state_dict()
    source["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(PretrainedError, match=r"_conv_stem.weight \(16, 3, 3, 3\) does not map onto "
                                              r"conv_stem.weight \(32, 3, 3, 3\)"):
        map_efficientnet_lite0(source, target)


def test_missing_imagenet_weights_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained_module, "_cached_timm_file", lambda name: None)
    with pytest.raises(PretrainedError, match=r"ImageNet weights for backbone 'mobilenet_v2' are not in the local "
                                              r"cache \(Hugging Face repo 'timm/mobilenetv2_100.ra_in1k'\)"):
        build_network(ModelConfig(backbone="mobilenet_v2"), "imagenet")


def test_pretrained_from_a_backbone_state_dict(tmp_path: Path) -> None:
    config = ModelConfig(backbone=TINY, image_size=64)
    torch.manual_seed(1)
    donor = build_network(config, "none")
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in donor.backbone.state_dict().items()}, path)
    torch.manual_seed(2)
    network = build_network(config, path)
    for key, value in donor.backbone.state_dict().items():
        torch.testing.assert_close(network.backbone.state_dict()[key], value)
    torch.save({"conv_stem.weight": torch.zeros(1)}, path)
    with pytest.raises(PretrainedError, match=f"{path}: does not fit backbone '{TINY}' \\(missing"):
        build_network(config, path)
    with pytest.raises(PretrainedError, match="nope.pt: pretrained weights file not found"):
        build_network(config, tmp_path / "nope.pt")


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(backbone=TINY, head="multilevel", image_size=48)
    torch.manual_seed(0)
    network = build_network(config, "none").eval()
    path = save_checkpoint(tmp_path / "model.pt", network, config,
                           ModelMetadata(name="t", kind="technical", trained_on="blur"), epoch=3)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "nima-rt-checkpoint" and raw["epoch"] == 3
    loaded = load_checkpoint(path)
    assert loaded.config == config
    assert loaded.metadata.input_size == 48 and loaded.metadata.backbone == TINY
    assert loaded.metadata.kind == "technical" and loaded.metadata.trained_on == "blur"
    assert loaded.metadata.normalization == normalization_for(config)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.state == {"epoch": 3} and not loaded.network.training
    images = torch.randint(0, 256, (3, 48, 48, 3), dtype=torch.uint8)
    norm = normalization_for(config)
    x = images.permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(norm.mean).view(1, 3, 1, 1) * 255) / (torch.tensor(norm.std).view(1, 3, 1, 1) * 255)
    with torch.no_grad():
        expected = network(x)
        dist, mean, std = loaded.contract_module()(images)
    torch.testing.assert_close(dist, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(mean, dist @ torch.arange(1.0, 11.0))


def test_bad_checkpoint_files_get_one_line_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ContractError, match=r"notes.pt: not a readable nima-rt checkpoint \("):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ContractError, match=r"other.pt: not a nima-rt checkpoint \(no 'format': "
                                            r"'nima-rt-checkpoint' entry\)"):
        load_checkpoint(other)
    with pytest.raises(ContractError, match="absent.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_partial_freeze_keeps_stem_and_first_blocks_fixed() -> None:
    from nima_rt.train.fit.stages import apply_freeze, set_train_mode

    network = build_network(ModelConfig(backbone=TINY, image_size=64), "none")
    frozen = apply_freeze(network, "blocks:2")
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("backbone.conv_stem", "backbone.bn1", "backbone.blocks.0", "backbone.blocks.1"))
                   for n in trainable)
    assert any(n.startswith("backbone.blocks.2") for n in trainable) and "head.linear.weight" in trainable
    set_train_mode(network, frozen)
    assert not network.backbone.bn1.training and network.backbone.blocks[2].training
    frozen = apply_freeze(network, "backbone")
    assert {n for n, p in network.named_parameters() if p.requires_grad} == {"head.linear.weight", "head.linear.bias"}
    set_train_mode(network, frozen)
    assert not any(m.training for m in network.backbone.modules()) and network.head.training


# --- configuration --------------------------------------------------------------------------------


def test_presets_carry_the_seed_recipes(tmp_path: Path) -> None:
    aesthetic = resolve_config("aesthetic", overrides={"data": {"labels": "AVA.txt"}})
    # idealo's aesthetic recipe, fine-tuning the bundled aesthetic model (its own network)
    assert (aesthetic.batch_size, aesthetic.pretrained, aesthetic.model.dropout) == (96, "aesthetic", 0.75)
    assert aesthetic.model.backbone == "keras_mobilenet_v1_1.00_folded"
    assert (aesthetic.head.epochs, aesthetic.head.lr, aesthetic.head.frozen) == (5, 1e-3, "backbone")
    assert (aesthetic.full.epochs, aesthetic.full.lr, aesthetic.full.decay) == (9, 3e-5, 2.3e-5)
    technical = resolve_config("technical", overrides={"data": {"labels": "mos_with_names.txt"}})
    assert (technical.batch_size, technical.head.epochs, technical.full.epochs, technical.full.lr) == (64, 25, 25, 3e-7)
    assert (technical.model.backbone, technical.pretrained) == ("efficientnet_lite0", "imagenet")  # offline weights
    settings = tmp_path / "train.toml"
    settings.write_text('batch_size = 8\n[model]\nbackbone = "mobilenet_v2"\n[full]\nepochs = 2\n')
    config = resolve_config("aesthetic", settings, {"full": {"lr": 1e-4, "epochs": None}, "data": {"labels": "x"}})
    assert (config.batch_size, config.model.backbone) == (8, "mobilenet_v2")
    assert (config.full.epochs, config.full.lr) == (2, 1e-4)
    settings.write_text("[full]\nepoch = 2\n")
    with pytest.raises(ConfigError, match=r"train.toml: unknown setting\(s\) full.epoch"):
        resolve_config("default", settings)
    with pytest.raises(ConfigError, match="head.cache_views needs frozen = 'backbone'"):
        resolve_config("default", overrides={"head": {"frozen": "none", "cache_views": 2}, "data": {"labels": "x"}})


# --- training runs --------------------------------------------------------------------------------


def test_two_stage_run_writes_a_complete_run_folder(full_run, blur48: Path) -> None:
    run = full_run.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl",
                                                      "train.log"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["backbone"] == TINY and config["data"]["labels"] == str(blur48)
    records = read_metrics(run)
    assert [(r["epoch"], r["stage"]) for r in records] == [(0, "init"), (1, "head"), (2, "full")]
    for record in records[1:]:
        for key in ("train_emd", "val_emd", "val_lcc", "val_srcc", "val_accuracy", "val_pred_mean_mean",
                    "val_pred_mean_std", "val_true_mean_mean", "val_true_mean_std", "train_lcc", "lr"):
            assert key in record
        assert record["val_count"] == 12 and record["train_count"] == 36
    # Keras-style decay per step: 36 training images in batches of 16 = 3 steps in the full epoch.
    assert records[1]["lr"] == pytest.approx(1e-3)
    assert records[2]["lr"] == pytest.approx(1e-3 / (1 + 2.3e-5 * 3))
    best_epoch = min(records[1:], key=lambda r: r["val_emd"])["epoch"]
    best = load_checkpoint(run / "best.pt")
    assert best.metadata.metrics["epoch"] == best_epoch
    assert best.metadata.metrics["val_emd"] == pytest.approx(full_run.best_val_emd)
    assert best.metadata.trained_on == "labels.csv" and best.metadata.input_size == 64
    log = (run / "train.log").read_text()
    assert "epoch 2/2 [full]" in log and "48 labelled images found" in log
    # Evaluating best.pt through the contract (runtime decode + resize) reproduces its val EMD.
    _, val = split_by_group(load_label_set(blur48), 0.25, seed=0)
    result = evaluate_checkpoint(best, val)
    assert result.metrics["emd"] == pytest.approx(best.metadata.metrics["val_emd"], abs=1e-5)
    assert result.metrics == pytest.approx(compute_metrics(result.true_dist, result.pred_dist))


def test_resume_continues_to_the_same_weights(full_run, blur48: Path, tmp_path: Path) -> None:
    interrupted = train(tiny_config(blur48, tmp_path), echo=False, progress=False, stop_after=1)
    assert [r["epoch"] for r in read_metrics(interrupted.run_dir)] == [0, 1]
    resumed = train(None, resume=interrupted.run_dir, echo=False, progress=False)
    assert resumed.run_dir == interrupted.run_dir
    expected = torch.load(full_run.last, weights_only=True)
    got = torch.load(resumed.last, weights_only=True)
    assert got["epoch"] == expected["epoch"] == 2
    for key, value in expected["network"].items():
        assert torch.equal(got["network"][key], value), key
    ours = read_metrics(resumed.run_dir)
    theirs = read_metrics(full_run.run_dir)
    assert [r["val_emd"] for r in ours] == [r["val_emd"] for r in theirs]


def test_cached_head_stage_resumes_exactly(blur48: Path, tmp_path: Path) -> None:
    changes = {"head": {"epochs": 3, "cache_views": 2, "lr": 3e-3}, "full": {"epochs": 0},
               "model": {"head": "multilevel"}}
    whole = train(tiny_config(blur48, tmp_path / "a", **changes), echo=False, progress=False)
    part = train(tiny_config(blur48, tmp_path / "b", **changes), echo=False, progress=False, stop_after=2)
    part = train(None, resume=part.run_dir, echo=False, progress=False)
    expected = torch.load(whole.last, weights_only=True)["network"]
    got = torch.load(part.last, weights_only=True)["network"]
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    # The head trained, the frozen backbone (batch-norm statistics included) did not move.
    torch.manual_seed(0)
    initial = build_network(ModelConfig(backbone=TINY, head="multilevel", image_size=64), "none")
    for key, value in initial.backbone.state_dict().items():
        assert torch.equal(got[f"backbone.{key}"], value), key
    assert not torch.equal(got["head.linear.weight"], initial.head.linear.weight)
    assert "feature cache ready: (2, 36, 624)" in (part.run_dir / "train.log").read_text()


def test_learns_blur_from_imagenet_features(tmp_path: Path) -> None:
    """Scores depend on blur strength: a short run cuts val EMD well below the start, SRCC > 0.8."""
    labels = write_blur_set(tmp_path / "blur", 96, size=80)
    config = tiny_config(labels, tmp_path / "runs", pretrained="imagenet",
                         model={"backbone": "efficientnet_lite0", "dropout": 0.5},
                         head={"epochs": 8, "lr": 5e-3, "cache_views": 2}, full={"epochs": 0})
    result = train(config, echo=False, progress=False)
    records = read_metrics(result.run_dir)
    start = records[0]["val_emd"]
    best = min(records[1:], key=lambda r: r["val_emd"])
    assert best["val_emd"] < 0.7 * start, (start, best)
    assert best["val_srcc"] > 0.8, best


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_evaluate_prints_and_saves_metrics(full_run, blur48: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(full_run.best), "--labels", str(blur48), "--out", str(out),
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["count"] == 48 and metrics["checkpoint_sha256"] == load_checkpoint(full_run.best).sha256
    printed = json.loads(result.stdout)
    assert printed == metrics["metrics"]
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("path,true_mean,pred_mean,true_std,pred_std,true_p1,")
    assert len(lines) == 49


def test_cli_train_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no training labels: pass --labels (or data.labels in --config)"
    result = runner.invoke(app, ["train", "--labels", str(tmp_path / "none.csv"), "--backbone", TINY,
                                 "--pretrained", "none", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'none.csv'}: label file not found"
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path}: not a run folder (no config.json)"


def test_cli_train_maps_options_onto_the_config(blur48: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["train", "--labels", str(blur48), "--backbone", TINY, "--pretrained", "none", "--image-size", "48",
            "--head", "multilevel", "--dropout", "0.5", "--head-epochs", "1", "--full-epochs", "0",
            "--head-lr", "0.002", "--cache-views", "2", "--batch-size", "12", "--val-fraction", "0.5",
            "--out", str(tmp_path), "--name", "cli", "--kind", "technical", "--seed", "3", "--threads", "1",
            "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    assert run.parent == tmp_path and run.name.endswith("-cli")
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {"backbone": TINY, "dropout": 0.5, "head": "multilevel", "image_size": 48}
    assert (config["head"]["epochs"], config["head"]["lr"], config["head"]["cache_views"]) == (1, 0.002, 2)
    assert (config["full"]["epochs"], config["batch_size"], config["seed"], config["kind"]) == (0, 12, 3, "technical")
    assert config["data"]["val_fraction"] == 0.5 and config["threads"] == 1
    assert load_checkpoint(run / "best.pt").metadata.kind == "technical"
    # Resuming a finished run trains nothing more.
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_metrics(run)] == [0, 1]
