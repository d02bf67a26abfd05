"""Which column a model's scores go under when names repeat, and what a model file computes in (issue 25,
item 16): no `technical_2` column nobody can read; `nima-rt info` shows the precision and the notes; the
CPU says when `--precision` or an fp16 file does not do what one may expect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.tiny_models import tiny_model_proto, write_tiny_model
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from nima_rt import Scorer, ScorerConfig
from nima_rt.cli import app
from nima_rt.io.model_file import ModelNotFound, bundled_models, column_names, load_model_file


def fp16_tiny_model(path: Path) -> Path:
    """The tiny model with its weights stored in float16 (cast back to float32 in the graph), as an fp16
    export stores its backbone."""
    model = tiny_model_proto(name="half")
    weights = next(t for t in model.graph.initializer if t.name == "W")
    half = numpy_helper.from_array(numpy_helper.to_array(weights).astype(np.float16), "W16")
    model.graph.initializer.remove(weights)
    model.graph.initializer.append(half)
    model.graph.node.insert(0, helper.make_node("Cast", ["W16"], ["W"], to=TensorProto.FLOAT))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def test_repeated_names_become_file_stems(tmp_path: Path) -> None:
    copy = tmp_path / "copy.onnx"
    shutil.copy(bundled_models()["technical"], copy)
    with Scorer(["technical", str(copy)]) as scorer:
        assert scorer.columns == ["technical", "copy"]  # before: technical, technical_2
    models = [(None, load_model_file("technical")), (None, load_model_file("technical.int8"))]
    assert column_names(models) == ["technical", "technical.int8"]  # the INT8 copy is named by its file
    # an explicit NAME equal to another model's metadata name: that model takes its file stem
    assert column_names([("technical", load_model_file(copy)), (None, load_model_file("technical.int8"))]) == [
        "technical", "technical.int8"]


def test_a_column_two_models_would_share_is_refused_with_the_way_out(tmp_path: Path) -> None:
    technical = load_model_file("technical")
    with pytest.raises(ModelNotFound) as twice:
        column_names([(None, technical), (None, technical)])
    assert str(twice.value) == (
        f"{technical.path}, {technical.path}: 2 model(s) would score under the column 'technical'; name each "
        f"with NAME=FILE (e.g. --model mine={technical.path}), NAME 1 to 64 characters of A-Z a-z 0-9 '_' '-' "
        "'.', starting with a letter or digit")
    odd = tmp_path / "my model.onnx"
    shutil.copy(technical.path, odd)
    with pytest.raises(ModelNotFound, match=r"would score under the column 'my model'"):
        column_names([(None, technical), (None, load_model_file(odd))])
    assert column_names([("mine", load_model_file(odd)), (None, technical)]) == ["mine", "technical"]


def test_precision_is_read_from_the_graph(tmp_path: Path, tiny_model: Path) -> None:
    assert load_model_file(tiny_model).precision == "fp32"
    assert load_model_file(fp16_tiny_model(tmp_path / "half.onnx")).precision == "fp16"
    assert load_model_file("technical").precision == "fp32"
    assert load_model_file("technical.int8").precision == "int8"  # QuantizeLinear/DequantizeLinear nodes


def test_info_shows_precision_and_notes(tmp_path: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(app, ["info", "technical.int8"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "precision:    int8" in lines
    notes = next(line for line in lines if line.startswith("notes:        "))
    assert "INT8 static QDQ" in notes and "Spearman 0.9946" in notes
    data = json.loads(runner.invoke(app, ["info", "technical.int8", "--json"]).stdout)
    assert data["precision"] == "int8" and "INT8 static QDQ" in data["metadata"]["notes"]
    half = runner.invoke(app, ["info", str(fp16_tiny_model(tmp_path / "half.onnx")), "--device", "cpu"])
    assert ("precision:    fp16 (note: an fp16 file runs slower on CPU than its fp32 original: score on CPU with "
            "the fp32 file)") in half.stdout.splitlines()


def test_models_and_info_say_a_model_s_blind_spots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    write_tiny_model(bundle / "seer.onnx", name="seer", blind_spots="over-exposure (-0.38); see the table\nbelow")
    write_tiny_model(bundle / "plain.onnx", name="plain")
    monkeypatch.setattr("nima_rt.io.model_file.BUNDLED_DIR", bundle)
    runner = CliRunner()
    listed = runner.invoke(app, ["models"]).stdout.splitlines()
    assert listed[listed.index(next(line for line in listed if line.startswith("seer:"))) + 2] == (
        "  blind spots: over-exposure (-0.38); see the table below")
    assert not any("blind spots" in line for line in listed if "plain" in line)
    assert sum("blind spots" in line for line in listed) == 1
    data = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert {row["name"]: row["blind_spots"] for row in data["bundled"]} == {
        "plain": "", "seer": "over-exposure (-0.38); see the table\nbelow"}
    info = runner.invoke(app, ["info", "seer"]).stdout.splitlines()
    assert "blind spots:  over-exposure (-0.38); see the table below" in info
    assert not any(line.startswith("blind spots") for line in runner.invoke(app, ["info", "plain"]).stdout.splitlines())


def test_the_cpu_says_what_precision_it_runs(tmp_path: Path, tiny_model: Path) -> None:
    with Scorer([tiny_model], ScorerConfig(device="cpu", precision="fp16")) as scorer:
        assert scorer.backend_summary[0] == (  # before: silently fp32
            "tiny: backend: onnxruntime-cpu; note: --precision fp16 applies to GPU backends: the CPU runs this "
            "fp32 file as it is")
    with Scorer([str(fp16_tiny_model(tmp_path / "half.onnx"))], ScorerConfig(device="cpu")) as scorer:
        assert scorer.backend_summary[0] == (
            "half: backend: onnxruntime-cpu; note: an fp16 file runs slower on CPU than its fp32 original: "
            "score on CPU with the fp32 file")
    with Scorer([tiny_model], ScorerConfig(device="cpu")) as scorer:
        assert scorer.backend_summary[0] == "tiny: backend: onnxruntime-cpu"  # nothing to say
