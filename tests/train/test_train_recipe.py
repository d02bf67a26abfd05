"""The training recipe as documented (issue 13, item 17): fine-tuning from a checkpoint keeps the
checkpoint's backbone; the offline-weights hint names today's Hugging Face command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from helpers.training_data import write_blur_set  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import ModelMetadata  # noqa: E402
from nima_rt.train.model.checkpoint import load_checkpoint, recorded_backbone, save_checkpoint  # noqa: E402
from nima_rt.train.model.network import ModelConfig  # noqa: E402
from nima_rt.train.model.pretrained import build_network

TINY = "test_efficientnet"


def test_fine_tuning_a_checkpoint_keeps_its_backbone(tmp_path: Path, one_torch_thread: None) -> None:
    config = ModelConfig(backbone=TINY, image_size=48)
    checkpoint = save_checkpoint(tmp_path / "ava.pt", build_network(config, "none"), config,
                                 ModelMetadata(name="ava", kind="aesthetic", trained_on="x"))
    assert recorded_backbone(checkpoint) == TINY and recorded_backbone("imagenet") is None
    labels = write_blur_set(tmp_path / "photos", 16, size=48)
    args = ["train", "--labels", str(labels), "--pretrained", str(checkpoint), "--image-size", "48",
            "--head-epochs", "1", "--full-epochs", "0", "--batch-size", "8", "--threads", "1", "--workers", "0",
            "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args)  # no --backbone: the default preset's mobilenet_v2 used to be "requested"
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads((run / "config.json").read_text())["model"]["backbone"] == TINY
    assert load_checkpoint(run / "best.pt").metadata.name == "nima-labels"
    clash = CliRunner().invoke(app, args + ["--backbone", "mobilenet_v3_large"])  # asked for: still an error
    assert clash.exit_code == 1
    assert f"checkpoint backbone '{TINY}' differs from the requested 'mobilenet_v3_large'" in clash.stderr


def test_missing_imagenet_weights_name_the_hf_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import nima_rt.train.model.pretrained as model

    monkeypatch.setattr(model, "_cached_timm_file", lambda name: None)
    with pytest.raises(model.PretrainedError) as info:
        build_network(ModelConfig(backbone="mobilenet_v2"), "imagenet")
    assert "fetch them once (e.g. `hf download timm/mobilenetv2_100.ra_in1k`)" in str(info.value)
    assert "huggingface-cli" not in str(info.value)  # huggingface_hub 2.4 installs no such command
