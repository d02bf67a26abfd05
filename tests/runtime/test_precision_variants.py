"""`--precision int8`: the bundled model's INT8 copy, found by name; other models are never swapped."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny_models import write_tiny_model

from nima_rt import Scorer, ScorerConfig
from nima_rt.io.model_file import ModelNotFound, load_model_file
from nima_rt.io.variants import int8_variant, is_int8_file


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled folder with technical (size 32), its INT8 copy (size 16, to tell them apart) and other."""
    folder = tmp_path / "models"
    folder.mkdir()
    write_tiny_model(folder / "technical.onnx", name="technical", size=32)
    write_tiny_model(folder / "technical.int8.onnx", name="technical", size=16)
    write_tiny_model(folder / "other.onnx", name="other", size=24)
    monkeypatch.setattr("nima_rt.io.model_file.BUNDLED_DIR", folder)
    return folder


def test_bundled_names_map_to_their_int8_copy(bundled: Path) -> None:
    assert int8_variant("technical") == "technical.int8"
    assert int8_variant("technical.int8") == "technical.int8"
    assert int8_variant(str(bundled / "technical.int8.onnx")) == str(bundled / "technical.int8.onnx")
    assert is_int8_file("a/B.INT8.onnx") and not is_int8_file("a/b.onnx")


def test_models_without_an_int8_copy_are_refused_with_what_to_do(bundled: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as error:
        int8_variant("other")
    assert str(error.value) == ("--precision int8: the bundled model other has no INT8 variant "
                                "(bundled INT8 variants: technical.int8); use --precision fp32, or name the models "
                                "that have one (e.g. --model technical --precision int8)")
    mine = write_tiny_model(tmp_path / "mine.onnx")
    with pytest.raises(ModelNotFound) as error:
        int8_variant(mine)
    assert str(error.value) == (
        f"{mine}: --precision int8 picks a bundled model's INT8 variant; for this model export one "
        f"(`nima-rt export {mine} --precision int8 --calibration-images PHOTOS/`) and pass that file with --model")


def test_scorer_runs_the_int8_copy_under_the_models_own_column(bundled: Path) -> None:
    with Scorer(None, ScorerConfig(precision="int8")) as scorer:
        assert scorer.models[0].file.path == bundled / "technical.int8.onnx"
        assert scorer.columns == ["technical"]
        assert scorer.preprocess[0].size == 16
    with Scorer(["mine=technical"], ScorerConfig(precision="int8")) as scorer:
        assert scorer.columns == ["mine"] and scorer.models[0].file.path.name == "technical.int8.onnx"
    with Scorer(None) as scorer:
        assert scorer.models[0].file.path == bundled / "technical.onnx"


def test_an_int8_copy_of_another_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    from nima_rt.contract.spec import METADATA_KEY, ModelMetadata

    folder = tmp_path / "models"
    folder.mkdir()
    for stem, checkpoint in (("technical", "a" * 64), ("technical.int8", "b" * 64)):
        path = write_tiny_model(folder / f"{stem}.onnx", name="technical")
        model = onnx.load(str(path))
        meta = ModelMetadata.from_json(model.metadata_props[0].value, str(path))
        meta.source_checkpoint_sha256 = checkpoint
        model.metadata_props[0].value = meta.to_json()
        assert model.metadata_props[0].key == METADATA_KEY
        onnx.save(model, str(path))
    monkeypatch.setattr("nima_rt.io.model_file.BUNDLED_DIR", folder)
    with pytest.raises(ModelNotFound) as error:
        int8_variant("technical")
    assert str(error.value) == (
        f"{folder / 'technical.int8.onnx'}: INT8 copy of another model (checkpoint sha256 bbbbbbbbbbbb, "
        "technical.onnx has aaaaaaaaaaaa); rebuild it with tools/ship_int8.py, or use --precision fp32")


def test_the_shipped_int8_copy_belongs_to_the_shipped_model() -> None:
    from nima_rt.io.model_file import bundled_models

    bundled = bundled_models()
    if "technical.int8" not in bundled:
        pytest.skip("no bundled INT8 copy")
    assert int8_variant("technical") == "technical.int8"  # same checkpoint, else ModelNotFound
    notes = load_model_file("technical.int8").metadata.notes
    assert "INT8 static QDQ" in notes and "Spearman 0.99" in notes
