"""Keras NIMA import: parity with real Keras on real photos, both HDF5 layouts, both model shapes, refusals.

The reference is Keras itself (tensorflow-cpu, the dev extra): idealo's architecture with random
non-trivial weights (tests/helpers/keras_nima.py) predicting on examples/photos with idealo's preprocessing
(``load_img(target_size=(224, 224))`` + ``preprocess_input``). The converted file is scored by the
runtime (``Scorer`` and ``nima-rt score``) with the resize recorded in its metadata.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import helpers.torch_first  # noqa: F401,E402  (torch before tensorflow: tests/helpers/torch_first.py)
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow", reason="Keras parity tests need tensorflow-cpu (pip install 'nima-rt[dev]')")
pytest.importorskip("h5py", reason="Keras import needs h5py (the train extra)")
keras = pytest.importorskip("keras", reason="Keras parity tests need keras (comes with tensorflow-cpu)")

from helpers.keras_nima import build_nima, keras_inputs, sequential_of, write_keras2_h5, write_layers_h5  # noqa: E402

from nima_rt.cli import app  # noqa: E402
from nima_rt.contract.spec import ResizeSpec  # noqa: E402
from nima_rt.export.api import ExportRequest, run_export  # noqa: E402
from nima_rt.export.importers.base import ImportFailed  # noqa: E402
from nima_rt.io.decode import Preprocess, decode_file  # noqa: E402
from nima_rt.io.files import file_sha256  # noqa: E402
from nima_rt.runtime.scorer import Scorer  # noqa: E402

# Keras 3 on numpy 2 warns on every predict; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

from helpers.paths import EXAMPLE_PHOTOS  # noqa: E402

PHOTOS = sorted(EXAMPLE_PHOTOS.glob("*.jpg"))
BINS = np.arange(1, 11)
BAR = 1e-3  # the parity bar on the mean and on every probability


class KerasReference:
    """One Keras model, its predictions on the photos and the files it was saved to."""

    def __init__(self, folder: Path) -> None:
        inputs = keras_inputs(PHOTOS)
        self.model = build_nima(inputs)
        self.dist = self.model.predict(inputs, verbose=0).astype(np.float64)
        self.mean = self.dist @ BINS
        self.folder = folder

    def saved(self, name: str, **layout) -> Path:
        path = self.folder / name
        if not path.exists():
            if layout.get("keras3"):
                model = sequential_of(self.model) if layout.get("nested") else self.model
                model.save_weights(path) if path.name.endswith(".weights.h5") else model.save(path)
            else:
                write_keras2_h5(path, self.model, nested=layout.get("nested", False),
                                full_model=layout.get("full_model", False))
        return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> KerasReference:
    return KerasReference(tmp_path_factory.mktemp("keras"))


def convert(source: Path, tmp_path: Path, **fields) -> Path:
    """Export without export's own verification (against the PyTorch rebuild): the tests compare with Keras;
    the CLI test keeps it on."""
    output = tmp_path / (source.stem + ".onnx")
    run_export(ExportRequest(source=source, output=output, verify=False, **fields))
    return output


def runtime_scores(model: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    with Scorer([model]) as scorer:
        rows = list(scorer.score_paths(PHOTOS))
    assert all(row.ok for row in rows), [row.error for row in rows]
    return (np.array([row.scores[column].mean for row in rows]),
            np.array([row.scores[column].dist for row in rows], dtype=np.float64))


def test_reference_model_is_not_trivial(reference: KerasReference) -> None:
    assert np.ptp(reference.mean) > 2.0  # scores spread over several points
    assert reference.dist.max(axis=1).min() < 0.95  # no image gets a one-hot distribution


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("keras3_functional.h5", {"keras3": True}),
        ("keras3_sequential.h5", {"keras3": True, "nested": True}),
        ("keras3_functional.weights.h5", {"keras3": True}),  # Keras 3's save_weights: its native format
        ("keras3_sequential.weights.h5", {"keras3": True, "nested": True}),
        ("keras3_functional.keras", {"keras3": True}),  # Keras 3's model.save: a zip with model.weights.h5
        ("keras3_sequential.keras", {"keras3": True, "nested": True}),
        ("weights_mobilenet_aesthetic_k2.hdf5", {}),
        ("keras2_sequential.hdf5", {"nested": True}),
        ("keras2_full_model.h5", {"full_model": True}),
    ],
)
def test_scores_match_keras_on_real_photos(reference: KerasReference, tmp_path: Path, name: str, layout) -> None:
    source = reference.saved(name, **layout)
    model = convert(source, tmp_path, kind="aesthetic", name="idealo")
    mean, dist = runtime_scores(model, "idealo")
    assert np.abs(mean - reference.mean).max() <= BAR
    assert np.abs(dist - reference.dist).max() <= BAR


def test_other_width_multipliers_are_read_from_the_kernels(tmp_path: Path) -> None:
    model = build_nima(keras_inputs(PHOTOS), seed=3, alpha=0.25)
    expected = model.predict(keras_inputs(PHOTOS), verbose=0).astype(np.float64)
    source = tmp_path / "mobilenet_025.h5"
    model.save(source)
    output = convert(source, tmp_path, name="narrow")
    mean, dist = runtime_scores(output, "narrow")
    assert np.abs(mean - expected @ BINS).max() <= BAR
    assert np.abs(dist - expected).max() <= BAR
    from nima_rt.io.model_file import load_model_file

    assert load_model_file(output).metadata.backbone == "keras_mobilenet_v1_0.25"


def test_metadata_records_the_keras_preprocessing(reference: KerasReference, tmp_path: Path) -> None:
    source = reference.saved("weights_mobilenet_aesthetic_k2.hdf5")
    result = CliRunner().invoke(app, ["info", str(convert(source, tmp_path)), "--json"])
    meta = json.loads(result.stdout)["metadata"]
    assert (meta["name"], meta["kind"], meta["input_size"]) == ("aesthetic", "aesthetic", 224)  # from the file name
    assert meta["resize"] == {"policy": "squash", "interpolation": "nearest", "jpeg_draft": False}
    assert meta["normalization"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    assert meta["backbone"] == "keras_mobilenet_v1_1.00"
    assert meta["source_checkpoint_sha256"] == file_sha256(source)
    assert "Apache-2.0" in meta["licenses"][0]
    assert meta["notes"].startswith("imported from Keras 2.2.4 HDF5 weights_mobilenet_aesthetic_k2.hdf5 (functional")


def test_nima_rt_export_and_score_commands(reference: KerasReference, tmp_path: Path) -> None:
    source = reference.saved("keras2_sequential.hdf5", nested=True)
    output = tmp_path / "technical_import.onnx"
    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(source), "--output", str(output), "--kind", "technical",
                                   "--name", "tech", "--verify-count", "4"])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.strip() == str(output)
    scored = runner.invoke(app, ["score", *map(str, PHOTOS), "--model", str(output)])
    assert scored.exit_code == 0, scored.output
    rows = list(csv.DictReader(io.StringIO(scored.stdout)))
    mean = np.array([float(row["tech_mean"]) for row in rows])
    dist = np.array([[float(row[f"tech_p{k}"]) for k in range(1, 11)] for row in rows])
    assert [row["path"] for row in rows] == [str(p) for p in PHOTOS]
    assert np.abs(mean - reference.mean).max() <= BAR
    assert np.abs(dist - reference.dist).max() <= BAR + 1e-6  # CSV rounds to 6 decimals


def test_jpeg_draft_changes_only_the_photos_it_applies_to(reference: KerasReference, tmp_path: Path) -> None:
    """The draft is off in imported models' metadata; forced on, it moves the drafted photo only."""
    from nima_rt.export.verify import onnx_scores
    from nima_rt.io.model_file import load_model_file

    model = convert(reference.saved("weights_mobilenet_aesthetic_k2.hdf5"), tmp_path)
    metadata = load_model_file(model).metadata
    fixed, draft = Preprocess.for_model(metadata), Preprocess.for_model(metadata).with_draft(True)
    assert fixed.resize == ResizeSpec("squash", "nearest", jpeg_draft=False)
    run, close = onnx_scores(model)
    try:
        moved = []
        for index, path in enumerate(PHOTOS):
            full, drafted = decode_file(path, [fixed])[0], decode_file(path, [draft])[0]
            mean = float(run(drafted[None])[1][0])
            if np.array_equal(full, drafted):
                assert abs(mean - reference.mean[index]) <= BAR
            else:
                moved.append(path.name)
    finally:
        close()
    assert moved == ["seeding.jpg"]  # 1024x576: the only photo with both sides >= 448


def _mobilenet_arrays(reference: KerasReference) -> dict[str, dict[str, np.ndarray]]:
    from helpers.keras_nima import layer_arrays

    return {name: {weight.split("/")[-1].split(":")[0]: array for weight, array in arrays}
            for name, arrays in layer_arrays(reference.model) if arrays}


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ({"stem_conv1": {"kernel": np.zeros((3, 3, 3, 32))}, "stem_bn1": {"gamma": np.ones(32)},
          "normal_conv_1_0": {"kernel": np.zeros((1, 1, 32, 11))}, "reduction_conv_1_stem_1": {"kernel": np.zeros(1)},
          "predictions": {"kernel": np.zeros((1056, 10)), "bias": np.zeros(10)}},
         "a Keras NASNet model: no conv1, conv_dw_1, conv_pw_1 ... layer"),
        ({"conv2d_1": {"kernel": np.zeros((3, 3, 3, 32))}, "block35_1_conv": {"kernel": np.zeros((1, 1, 320, 320))},
          "block35_2_conv": {"kernel": np.zeros((1, 1, 320, 320))}, "conv_7b": {"kernel": np.zeros((1, 1, 2080, 1536))},
          "dense_1": {"kernel": np.zeros((1536, 10)), "bias": np.zeros(10)}},
         "a Keras InceptionResNetV2 model: no conv1, conv_dw_1, conv_pw_1 ... layer"),
        ({"dense_1": {"kernel": np.zeros((8, 10)), "bias": np.zeros(10)}},
         "1 weighted layers (dense_1): no conv1, conv_dw_1, conv_pw_1 ... layer"),
    ],
)
def test_other_architectures_are_refused_naming_them(tmp_path: Path, layers, message: str) -> None:
    source = write_layers_h5(tmp_path / "other.h5", layers)
    with pytest.raises(ImportFailed) as caught:
        convert(source, tmp_path)
    assert str(caught.value) == (
        f"{source}: {message}; nima-rt imports Keras MobileNet v1 NIMA (conv1, conv_dw_1..13, conv_pw_1..13 with "
        "their _bn layers, then a 10-way Dense: idealo's and titu1994's layout)"
    )


def test_head_and_missing_layers_are_refused(reference: KerasReference, tmp_path: Path) -> None:
    arrays = _mobilenet_arrays(reference)
    dense = next(name for name in arrays if name.startswith("dense"))
    five = dict(arrays, **{dense: {"kernel": np.zeros((1024, 5), np.float32), "bias": np.zeros(5, np.float32)}})
    with pytest.raises(ImportFailed, match=rf"the Dense layer '{dense}' has kernel \(1024, 5\), NIMA's has 10 "
                                           "outputs and a bias; nima-rt imports Keras MobileNet v1 NIMA"):
        convert(write_layers_h5(tmp_path / "five.h5", five), tmp_path)
    short = {name: value for name, value in arrays.items() if name != "conv_pw_13_bn"}
    with pytest.raises(ImportFailed, match=r"other.h5: 54 weighted layers \(conv1, conv1_bn, conv_dw_1, conv_dw_1_bn, "
                                           r"\.\.\.\): no conv_pw_13_bn layer; nima-rt imports"):
        convert(write_layers_h5(tmp_path / "other.h5", short), tmp_path)


def test_files_that_are_not_keras_weights_are_refused_saying_how_to_resave(tmp_path: Path) -> None:
    import zipfile

    import h5py

    supported = r"nima-rt imports Keras MobileNet v1 NIMA"
    resave = (r"re-save it from Keras with model.save_weights\('nima.weights.h5'\) \(Keras 3\) or "
              r"model.save_weights\('nima.h5'\) \(Keras 2\)$")
    text = tmp_path / "notes.h5"
    text.write_text("not weights")
    with pytest.raises(ImportFailed, match=rf"^.*notes.h5: not an HDF5 file or a .keras archive; {supported}"):
        convert(text, tmp_path)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as handle:
        handle["x"] = np.zeros(3)
    with pytest.raises(ImportFailed, match=rf"plain.h5: an HDF5 file without Keras 'layer_names' or 'layers' \(not a "
                                           rf"Keras weights file\); {supported} .*; {resave}"):
        convert(plain, tmp_path)
    archive = tmp_path / "other.keras"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("config.json", "{}")
    with pytest.raises(ImportFailed, match=rf"other.keras: a zip without model.weights.h5, not a Keras 3 .keras file; "
                                           rf"{resave}"):
        convert(archive, tmp_path)


def test_a_keras_3_file_of_another_architecture_says_what_it_holds(tmp_path: Path) -> None:
    other = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, include_top=False, pooling="avg")
    other.save_weights(tmp_path / "v2.weights.h5")
    with pytest.raises(ImportFailed, match=r"v2.weights.h5: a Keras MobileNetV2 model: no conv1, conv_dw_1, conv_pw_1 "
                                           r"\.\.\. layer; nima-rt imports"):
        convert(tmp_path / "v2.weights.h5", tmp_path)


def test_keras_2_1_6_padding_is_reproduced_on_request(reference: KerasReference, tmp_path: Path) -> None:
    """A Keras 2.1.5/2.1.6-architecture model (symmetric ZeroPadding2D((1, 1))): imported with
    keras_padding="symmetric" it scores as that Keras did; by default as today's Keras, with a note."""
    from helpers.keras_nima import keras_2_1_6_twin

    twin = keras_2_1_6_twin(reference.model)
    expected = twin.predict(keras_inputs(PHOTOS), verbose=0).astype(np.float64)
    assert np.abs(expected @ BINS - reference.mean).max() > 0.01  # the padding matters for these weights
    source = tmp_path / "keras_2_1_6.h5"
    twin.save(source)
    output = tmp_path / "symmetric.onnx"
    run_export(ExportRequest(source=source, output=output, verify=False, name="old", keras_padding="symmetric"))
    mean, dist = runtime_scores(output, "old")
    assert np.abs(mean - expected @ BINS).max() <= BAR
    assert np.abs(dist - expected).max() <= BAR
    notes: list[str] = []
    run_export(ExportRequest(source=source, output=tmp_path / "today.onnx", verify=False, name="old"), notes.append)
    assert any(line.startswith("note: the file's layer names (conv_pad_1) show it was saved by Keras 2.1.5/2.1.6")
               for line in notes)
    mean, _ = runtime_scores(tmp_path / "today.onnx", "old")
    assert np.abs(mean - reference.mean).max() <= BAR  # today's padding: the modern Keras model's scores
