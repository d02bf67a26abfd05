"""Hostile model outputs and names (issue 25, item 10): NaN and out-of-range outputs are error rows naming
the model, never rows of `nan`; a metadata name that would corrupt CSV headers or Parquet columns is
refused when the model is loaded."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.tiny_models import tiny_model_proto
from onnx import helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from nima_rt import ContractError, Scorer
from nima_rt.cli import app
from nima_rt.contract.spec import METADATA_KEY, check_output_values
from nima_rt.io.model_file import load_model_file


def nan_for_dark_images(path: Path) -> Path:
    """The tiny model, except that images whose channel mean is below one half score NaN: its ``m01``
    (channel means in 0..1) gains ``0 * sqrt(m01 - 0.5)``."""
    model = tiny_model_proto(name="nanny")
    graph = model.graph
    at = next(i for i, node in enumerate(graph.node) if node.output[0] == "m01")
    graph.node[at].output[0] = "m01_raw"
    for offset, node in enumerate([helper.make_node("Sub", ["m01_raw", "half"], ["shifted"]),
                                   helper.make_node("Sqrt", ["shifted"], ["root"]),  # NaN below one half
                                   helper.make_node("Mul", ["root", "zero"], ["nan_or_zero"]),
                                   helper.make_node("Add", ["m01_raw", "nan_or_zero"], ["m01"])]):
        graph.node.insert(at + 1 + offset, node)
    graph.initializer.extend([numpy_helper.from_array(np.array(0.5, np.float32), "half"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def mean_times_ten(path: Path) -> Path:
    inits = [numpy_helper.from_array(np.array(10.0, np.float32), "ten")]
    model = tiny_model_proto(name="loud")
    graph = model.graph
    for node in graph.node:
        if node.output[0] == "mean":
            node.output[0] = "mean_raw"
        node.input[:] = ["mean_raw" if i == "mean" else i for i in node.input]
    graph.node.append(helper.make_node("Mul", ["mean_raw", "ten"], ["mean"]))
    graph.initializer.extend(inits)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _photos(folder: Path) -> Path:
    folder.mkdir()
    Image.new("RGB", (40, 30), (250, 240, 230)).save(folder / "bright.png")
    Image.new("RGB", (40, 30), (10, 20, 30)).save(folder / "dark.png")
    return folder


def test_nan_outputs_are_error_rows_naming_the_model(tmp_path: Path, tiny_model: Path) -> None:
    model = nan_for_dark_images(tmp_path / "nanny.onnx")
    photos = _photos(tmp_path / "photos")
    with Scorer([tiny_model, model]) as scorer:
        rows = {Path(r.path).name: r for r in scorer.score_paths(photos)}
    assert rows["bright.png"].ok and set(rows["bright.png"].scores) == {"tiny", "nanny"}
    assert np.isfinite(rows["bright.png"].scores["nanny"].mean)
    dark = photos / "dark.png"
    assert rows["dark.png"].error == f"{dark}: model nanny: output is not a number (NaN or infinity)"
    assert rows["dark.png"].scores == {}
    result = CliRunner().invoke(app, ["score", str(photos), "--model", str(model)])
    assert result.exit_code == 0, result.output  # one scored, one error row
    lines = list(csv.reader(io.StringIO(result.stdout)))[1:]
    assert [line[1] for line in lines] == ["", f"{dark}: model nanny: output is not a number (NaN or infinity)"]
    assert all(np.isfinite(float(cell)) for cell in lines[0][2:])  # before: the dark row held `nan` scores
    assert lines[1][2:] == [""] * 12


def test_out_of_range_outputs_are_error_rows(tmp_path: Path) -> None:
    model = mean_times_ten(tmp_path / "loud.onnx")
    photos = _photos(tmp_path / "photos")
    result = CliRunner().invoke(app, ["score", str(photos), "--model", str(model), "-f", "jsonl"])
    assert result.exit_code == 3, result.output  # nothing could be scored
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(row["loud"] is None for row in rows)
    assert all(re.fullmatch(r".*\.png: model loud: output out of range \(mean [0-9.]+, expected 1\.\.10; "
                            r"std [0-9.]+, expected 0\.\.4\.5\)", row["error"]) for row in rows), rows


def test_output_values_rule() -> None:
    good = np.full((1, 10), 0.1, np.float32)
    assert check_output_values(good, np.array([5.5]), np.array([2.87])) == [None]
    dist = np.vstack([good, good * 2, good])
    dist[2, 0] = np.inf
    means, stds = np.array([5.5, 5.5, 5.5]), np.array([2.87, 2.87, 2.87])
    assert check_output_values(dist, means, stds) == [
        None, "output 'dist' is not a distribution (sum 2, min 0.2, max 0.2)",
        "output is not a number (NaN or infinity)"]
    assert check_output_values(np.vstack([good, good]), np.array([0.5, 5.5]), np.array([2.0, 4.6])) == [
        "output out of range (mean 0.5, expected 1..10; std 2, expected 0..4.5)",
        "output out of range (mean 5.5, expected 1..10; std 4.6, expected 0..4.5)"]


@pytest.mark.parametrize("name", ["two\nlines", "../../etc", "a,b", 'quo"te', "", "a b", ".hidden", "x" * 65, 7])
def test_metadata_names_that_would_corrupt_columns_are_refused_at_load(tmp_path: Path, name: object) -> None:
    model = tiny_model_proto(name="placeholder")
    meta = json.loads(model.metadata_props[0].value)
    meta["name"] = name
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ContractError) as error:
        load_model_file(path)
    message = str(error.value)
    assert message.startswith(f"{path}: model name ") and "\n" not in message
    assert message.endswith("must be 1 to 64 characters of A-Z a-z 0-9 '_' '-' '.', starting with a letter or digit")


def test_names_in_the_documented_set_load(tmp_path: Path) -> None:
    for name in ("technical", "aesthetic-AVA", "v1.2_hotel", "x" * 64):
        path = tmp_path / "ok.onnx"
        onnx.save(tiny_model_proto(name=name), str(path))
        assert load_model_file(path).name == name
