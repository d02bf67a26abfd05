"""Read a Keras NIMA weights file (idealo's, titu1994's) into a PyTorch NIMA network.

Read with h5py alone; TensorFlow is not needed. Supported files, for two model shapes (below):

- Keras 2 HDF5 written by ``save_weights`` / ``ModelCheckpoint(save_weights_only=True)`` (idealo's
  ``weights_mobilenet_*.hdf5``) or ``model.save`` (weights under ``model_weights``), and Keras 3's legacy
  HDF5 ``model.save("x.h5")``: one group per layer with ``layer_names`` / ``weight_names`` attributes;
- Keras 3's own formats: ``model.save_weights("x.weights.h5")`` (groups ``layers/<type>_N/vars/0..``, the
  layer's name in the ``vars`` group's ``name`` attribute) and ``model.save("x.keras")`` (a zip holding
  that ``model.weights.h5``).

Model shapes: functional (idealo's ``Model(base.inputs, Dense(Dropout(base.output)))``: ``conv1``,
``conv1_bn``, ``conv_dw_N``, ``conv_dw_N_bn``, ``conv_pw_N``, ``conv_pw_N_bn``...) or Sequential with the
MobileNet as a nested model. The network is MobileNet v1 (any width multiplier, read from the kernels'
shapes) + a 10-way Dense; anything else is refused with one line naming what the file holds and how to
re-save it. The predict-time preprocessing is idealo's: Keras ``load_img(target_size=(224, 224))`` (a
squash with PIL's NEAREST) and ``mobilenet.preprocess_input`` (``x / 127.5 - 1``, in the graph).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS, ResizeSpec
from nima_rt.train.model.keras_mobilenet import (
    BLOCKS,
    KerasLayerWeights,
    KerasMobileNet,
    KerasMobileNetSpec,
    conv_names,
    load_dense,
)
from nima_rt.train.model.refusal import ImportFailed

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
INPUT_SIZE = 224
# Keras load_img(target_size=...): PIL resize to the target, NEAREST, aspect ratio ignored. The JPEG
# draft is off: it changes the pixels NEAREST samples from (docs/guide/importing.md has the measurement).
KERAS_LOAD_IMG_RESIZE = ResizeSpec(policy="squash", interpolation="nearest", jpeg_draft=False)
SUPPORTED = ("Keras MobileNet v1 NIMA (conv1, conv_dw_1..13, conv_pw_1..13 with their _bn layers, "
             "then a 10-way Dense: idealo's and titu1994's layout)")
RESAVE = ("re-save it from Keras with model.save_weights('nima.weights.h5') (Keras 3) or "
          "model.save_weights('nima.h5') (Keras 2)")
# Layer names that identify other Keras applications, to say what a refused file is.
KNOWN_ARCHITECTURES = (
    (re.compile(r"^(normal_|reduction_|stem_bn1|adjust_)"), "NASNet"),
    (re.compile(r"^(block35_|block17_|block8_|conv_7b)"), "InceptionResNetV2"),
    (re.compile(r"^mixed\d"), "InceptionV3"),
    (re.compile(r"^(expanded_conv|block_\d+_expand|Conv1$)"), "MobileNetV2"),
    (re.compile(r"^block\d_conv\d"), "VGG16/VGG19"),
    (re.compile(r"^(res\d[a-f]_branch|conv\d_block\d+_)"), "ResNet"),
    (re.compile(r"^(stem_conv|block\d[a-z]_)"), "EfficientNet"),
    (re.compile(r"^conv\d_block\d+_\d_conv|^pool\d_conv"), "DenseNet"),
)
# Keras 3 native weights: the order of each layer type's variables (``vars/0``, ``vars/1``...).
KERAS3_VARIABLES = {
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "conv2d": ("kernel", "bias"),
    "depthwise_conv2d": ("depthwise_kernel", "bias"),
    "dense": ("kernel", "bias"),
}


@dataclass
class KerasFile:
    """What a Keras weights file holds: arrays per layer and where they came from."""

    path: Path
    layers: dict[str, dict[str, np.ndarray]]  # layer name -> {"kernel": array, "gamma": ...}
    layer_names: list[str]  # the top-level layer names, in the file's order
    keras_version: str
    nested: str | None = None  # name of the nested base model (Sequential variant), if any
    all_layer_names: list[str] = field(default_factory=list)  # every layer seen, nested ones included
    format: str = "HDF5"  # or ".weights.h5" / ".keras" (Keras 3's own formats)


@dataclass
class KerasNima:
    """A Keras NIMA file read into PyTorch: the backbone, the Dense head and what it was."""

    backbone: KerasMobileNet
    dense: KerasLayerWeights
    source: KerasFile

    def load_head(self, linear) -> None:  # type: ignore[no-untyped-def]
        load_dense(linear, self.dense)


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names(attrs, key: str) -> list[str]:  # type: ignore[no-untyped-def]
    """A list attribute Keras writes (possibly chunked as key0, key1... when large)."""
    if key in attrs:
        return [_text(v) for v in attrs[key]]
    chunks, index = [], 0
    while f"{key}{index}" in attrs:
        chunks += [_text(v) for v in attrs[f"{key}{index}"]]
        index += 1
    return chunks


def read_keras_file(path: Path) -> KerasFile:
    """Every weight array of a Keras weights file (any format above), keyed by layer and weight name."""
    import h5py

    if path.suffix.lower() == ".keras" or zipfile.is_zipfile(path):
        return _read_keras_archive(path)
    with open(path, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise ImportFailed(f"{path}: not an HDF5 file or a .keras archive; nima-rt imports {SUPPORTED}")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read HDF5 ({one_line(exc, 160)})") from None
    with handle:
        return _read_h5(handle, path)


def _read_keras_archive(path: Path) -> KerasFile:
    """A ``.keras`` file: a zip whose ``model.weights.h5`` is Keras 3's native weights file."""
    import h5py

    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
    except KeyError:
        raise ImportFailed(f"{path}: a zip without model.weights.h5, not a Keras 3 .keras file; {RESAVE}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportFailed(f"{path}: unreadable .keras archive ({one_line(exc, 160)}); {RESAVE}") from None
    with h5py.File(io.BytesIO(data), "r") as handle:
        keras = _read_h5(handle, path)
    keras.format = ".keras"
    return keras


def _read_h5(handle, path: Path) -> KerasFile:  # type: ignore[no-untyped-def]
    root = handle["model_weights"] if "model_weights" in handle else handle
    layer_names = _names(root.attrs, "layer_names")
    if not layer_names:
        if "layers" in root:
            return _read_keras3(root, path)
        raise ImportFailed(f"{path}: an HDF5 file without Keras 'layer_names' or 'layers' (not a Keras weights file); "
                           f"nima-rt imports {SUPPORTED}; {RESAVE}")
    layers: dict[str, dict[str, np.ndarray]] = {}
    nested = None
    for group_name in layer_names:
        if group_name not in root:
            continue
        group = root[group_name]
        weight_names = _names(group.attrs, "weight_names")
        owners = {_owner(name, group_name) for name in weight_names}
        if len(owners) > 1:
            nested = group_name
        for weight_name in weight_names:
            owner = _owner(weight_name, group_name) if len(owners) > 1 else group_name
            layers.setdefault(owner, {})[_param(weight_name)] = np.asarray(group[weight_name])
    version = _text(root.attrs.get("keras_version", handle.attrs.get("keras_version", "unknown")))
    every = [name for name in layer_names if name != nested] + [n for n in layers if n not in layer_names]
    return KerasFile(path, layers, layer_names, version, nested, every)


def _read_keras3(root, path: Path) -> KerasFile:  # type: ignore[no-untyped-def]
    """Keras 3's native weights: ``layers/<type>_N/vars/<i>``, nested models as ``layers/<model>/layers/...``."""
    layers: dict[str, dict[str, np.ndarray]] = {}
    order: list[str] = []
    nested: list[str] = []

    def walk(group, depth: int) -> None:  # type: ignore[no-untyped-def]
        for key in group["layers"]:
            item = group["layers"][key]
            name = _text(item["vars"].attrs.get("name", key)) if "vars" in item else key
            if "layers" in item:
                nested.append(name)
                walk(item, depth + 1)
                continue
            order.append(name)
            variables = item["vars"] if "vars" in item else {}
            kind = re.sub(r"_\d+$", "", key)
            names = KERAS3_VARIABLES.get(kind, ())
            for index in sorted(variables, key=int):
                label = names[int(index)] if int(index) < len(names) else f"var{index}"
                layers.setdefault(name, {})[label] = np.asarray(variables[index])

    walk(root, 0)
    return KerasFile(path, layers, order, "3", nested[0] if nested else None, order, ".weights.h5")


def _param(weight_name: str) -> str:
    """``conv1/kernel:0`` (Keras 2) or ``conv1/kernel`` (Keras 3) -> ``kernel``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _owner(weight_name: str, group_name: str) -> str:
    """The layer a weight belongs to: the path component before the weight's own name."""
    parts = weight_name.split("/")
    return parts[-2] if len(parts) >= 2 else group_name


def _architecture(names: list[str]) -> str | None:
    for pattern, label in KNOWN_ARCHITECTURES:
        if sum(1 for name in names if pattern.search(name)) >= 2:
            return label
    return None


def refuse(keras: KerasFile, reason: str) -> ImportFailed:
    """The one-line refusal: what the file holds, why it does not fit, what is imported."""
    label = _architecture(keras.all_layer_names)
    weighted = [name for name in keras.layers if keras.layers[name]]
    found = (f"a Keras {label} model" if label else
             f"{len(weighted)} weighted layers ({', '.join(weighted[:4])}{', ...' if len(weighted) > 4 else ''})")
    return ImportFailed(f"{keras.path}: {found}: {reason}; nima-rt imports {SUPPORTED}")


def _dense_head(keras: KerasFile) -> KerasLayerWeights:
    base = set(conv_names()) | {f"{name}_bn" for name in conv_names()}
    heads = [name for name, arrays in keras.layers.items()
             if name not in base and "kernel" in arrays and np.ndim(arrays["kernel"]) == 2]
    if len(heads) != 1:
        raise refuse(keras, f"expected one Dense layer after the base, found {len(heads)}")
    arrays = keras.layers[heads[0]]
    if arrays["kernel"].shape[1] != NUM_BINS or "bias" not in arrays:
        raise refuse(keras, f"the Dense layer {heads[0]!r} has kernel {arrays['kernel'].shape}, "
                            f"NIMA's has {NUM_BINS} outputs and a bias")
    return KerasLayerWeights(arrays)


def mobilenet_layers(keras: KerasFile) -> tuple[dict[str, KerasLayerWeights], KerasLayerWeights, list[int]]:
    """The base's layers, the Dense head and the widths (conv1, conv_pw_1..13); refuses other layouts."""
    wanted = conv_names()
    missing = [name for name in wanted + [f"{n}_bn" for n in wanted] if name not in keras.layers]
    if missing:
        raise refuse(keras, f"no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} layer")
    layers = {name: KerasLayerWeights(arrays) for name, arrays in keras.layers.items()}
    try:
        widths = [int(layers["conv1"].get("kernel").shape[3])]
        widths += [int(layers[f"conv_pw_{block}"].get("kernel").shape[3]) for block in range(1, BLOCKS + 1)]
    except (KeyError, IndexError):
        raise refuse(keras, "conv1/conv_pw_N layers without 4-D kernels") from None
    return layers, _dense_head(keras), widths


def read_keras_nima(path: Path, padding: str = "keras") -> KerasNima:
    """The Keras NIMA file at ``path`` as a PyTorch backbone with its weights, and its Dense head."""
    keras = read_keras_file(path)
    layers, dense, widths = mobilenet_layers(keras)
    alpha = widths[-1] / 1024
    spec = KerasMobileNetSpec(alpha, padding)
    if spec.widths != widths:
        raise refuse(keras, f"widths {widths} are not Keras MobileNet's at alpha {alpha:.2f} ({spec.widths})")
    backbone = KerasMobileNet(spec)
    try:
        backbone.load_keras(layers)
    except (KeyError, ValueError) as exc:
        raise refuse(keras, f"weights do not fit MobileNet v1 ({exc})") from None
    return KerasNima(backbone, dense, keras)
