"""Import a Keras NIMA weights file (idealo's, titu1994's) as a PyTorch contract module.

Read with h5py alone; TensorFlow is not needed. Supported: the HDF5 files Keras 2 writes with
``save_weights`` / ``ModelCheckpoint(save_weights_only=True)`` (idealo's ``weights_mobilenet_*.hdf5``)
or ``model.save`` (weights under ``model_weights``), and Keras 3's legacy HDF5 ``model.save("x.h5")``,
for two model shapes:

- functional (idealo's ``Model(base.inputs, Dense(Dropout(base.output)))``): one HDF5 group per
  layer, ``conv1``, ``conv1_bn``, ``conv_dw_N``, ``conv_dw_N_bn``, ``conv_pw_N``, ``conv_pw_N_bn``...
- Sequential with the MobileNet as a nested model: one group (``mobilenet_1.00_224``) holding every
  base layer's weights, named ``conv1/kernel:0`` (Keras 2) or ``conv1/kernel`` (Keras 3).

The network is MobileNet v1 (any width multiplier, read from the kernels' shapes) + a 10-way Dense;
anything else is refused with one line naming what the file holds. The predict-time preprocessing
is idealo's: Keras ``load_img(target_size=(224, 224))`` (a squash with PIL's NEAREST) and
``mobilenet.preprocess_input`` (``x / 127.5 - 1``, inside the graph).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS, ModelMetadata, Normalization, ResizeSpec
from nima_rt.export.importers.base import ImportedModel, ImportFailed, ImportRequest
from nima_rt.export.importers.keras_mobilenet import BLOCKS, PADDINGS, KerasLayerWeights, conv_names

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
INPUT_SIZE = 224
# mobilenet.preprocess_input: x / 127.5 - 1 == (x / 255 - 0.5) / 0.5
KERAS_TF_NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# Keras load_img(target_size=...): PIL resize to the target, NEAREST, aspect ratio ignored. The JPEG
# draft is off: it changes the pixels NEAREST samples from (docs/guide/importing.md has the measurement).
KERAS_LOAD_IMG_RESIZE = ResizeSpec(policy="squash", interpolation="nearest", jpeg_draft=False)
SUPPORTED = ("Keras MobileNet v1 NIMA (conv1, conv_dw_1..13, conv_pw_1..13 with their _bn layers, "
             "then a 10-way Dense: idealo's and titu1994's layout)")
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


@dataclass
class KerasFile:
    """What a Keras HDF5 weights file holds: arrays per layer and where they came from."""

    path: Path
    layers: dict[str, dict[str, np.ndarray]]  # layer name -> {"kernel": array, "gamma": ...}
    layer_names: list[str]  # the top-level layer names, in the file's order
    keras_version: str
    nested: str | None = None  # name of the nested base model (Sequential variant), if any
    all_layer_names: list[str] = field(default_factory=list)  # every layer seen, nested ones included


def is_hdf5(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def _text(value: object) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names(attrs, key: str) -> list[str]:
    """A list attribute Keras writes (possibly chunked as key0, key1... when large)."""
    if key in attrs:
        return [_text(v) for v in attrs[key]]
    chunks, index = [], 0
    while f"{key}{index}" in attrs:
        chunks += [_text(v) for v in attrs[f"{key}{index}"]]
        index += 1
    return chunks


def read_keras_h5(path: Path) -> KerasFile:
    """Every weight array of a Keras 2 / Keras 3 legacy HDF5 file, keyed by layer and weight name."""
    import h5py

    if not is_hdf5(path):
        raise ImportFailed(f"{path}: not an HDF5 file; nima-rt imports {SUPPORTED} saved as Keras HDF5")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read HDF5 ({one_line(exc, 160)})") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        layer_names = _names(root.attrs, "layer_names")
        if not layer_names:
            what = ("a Keras 3 native weights file (.weights.h5)" if "layers" in root or "vars" in root
                    else "an HDF5 file without Keras 'layer_names'")
            raise ImportFailed(
                f"{path}: {what}; nima-rt imports {SUPPORTED} from Keras HDF5 files written by "
                "save_weights (Keras 2) or model.save('model.h5')"
            )
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


def _refuse(keras: KerasFile, reason: str) -> ImportFailed:
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
        raise _refuse(keras, f"expected one Dense layer after the base, found {len(heads)}")
    arrays = keras.layers[heads[0]]
    if arrays["kernel"].shape[1] != NUM_BINS or "bias" not in arrays:
        raise _refuse(keras, f"the Dense layer {heads[0]!r} has kernel {arrays['kernel'].shape}, "
                             f"NIMA's has {NUM_BINS} outputs and a bias")
    return KerasLayerWeights(arrays)


def mobilenet_layers(keras: KerasFile) -> tuple[dict[str, KerasLayerWeights], KerasLayerWeights, list[int]]:
    """The base's layers, the Dense head and the widths (conv1, conv_pw_1..13); refuses other layouts."""
    wanted = conv_names()
    missing = [name for name in wanted + [f"{n}_bn" for n in wanted] if name not in keras.layers]
    if missing:
        raise _refuse(keras, f"no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} layer")
    layers = {name: KerasLayerWeights(arrays) for name, arrays in keras.layers.items()}
    try:
        widths = [int(layers["conv1"].get("kernel").shape[3])]
        widths += [int(layers[f"conv_pw_{block}"].get("kernel").shape[3]) for block in range(1, BLOCKS + 1)]
    except (KeyError, IndexError):
        raise _refuse(keras, "conv1/conv_pw_N layers without 4-D kernels") from None
    return layers, _dense_head(keras), widths


def _padding_note(keras: KerasFile, padding: str) -> str | None:
    """Keras 2.1.5/2.1.6 padded every depthwise convolution symmetrically; its files show ``conv_pad_1``."""
    if padding == "symmetric":
        return "imported with Keras 2.1.5/2.1.6's symmetric padding (--keras-padding symmetric)"
    if "conv_pad_1" in keras.all_layer_names:
        return ("the file's layer names (conv_pad_1) show it was saved by Keras 2.1.5/2.1.6, whose MobileNet "
                "padded stride-2 convolutions symmetrically; imported with today's Keras padding (bottom/right), "
                "as tf.keras and idealo's current predict code load it (--keras-padding symmetric: as Keras 2.1.6)")
    return None


def import_keras(request: ImportRequest) -> ImportedModel:
    """The Keras file as a ContractModule (uint8 NHWC in, dist/mean/std out) and its metadata."""
    from nima_rt.export.importers.keras_mobilenet import KerasMobileNetNima
    from nima_rt.train.model.contract_module import ContractModule

    path = request.path
    keras = read_keras_h5(path)
    layers, dense, widths = mobilenet_layers(keras)
    if request.keras_padding not in PADDINGS:
        raise ImportFailed(f"--keras-padding must be one of {', '.join(PADDINGS)}, got {request.keras_padding!r}")
    network = KerasMobileNetNima(widths, padding=request.keras_padding)
    try:
        network.load_keras(layers, dense)
    except (KeyError, ValueError) as exc:
        raise _refuse(keras, f"weights do not fit MobileNet v1 ({exc})") from None
    alpha = widths[-1] / 1024
    notes = [note for note in [_padding_note(keras, request.keras_padding)] if note]
    layout = f"Sequential with nested base {keras.nested!r}" if keras.nested else "functional"
    metadata = ModelMetadata(
        name=request.name,
        kind=request.kind,
        input_size=INPUT_SIZE,
        resize=KERAS_LOAD_IMG_RESIZE,
        normalization=KERAS_TF_NORMALIZATION,
        backbone=f"keras_mobilenet_v1_{alpha:.2f}",
        trained_on="imported Keras NIMA weights (see notes)",
        source_checkpoint_sha256=request.sha256,
        created=request.created,
        licenses=[f"weights imported from {path.name}: the licence of their publisher applies "
                  "(idealo/image-quality-assessment: Apache-2.0; titu1994/neural-image-assessment: MIT)"],
        notes="; ".join([f"imported from Keras {keras.keras_version} HDF5 {path.name} ({layout} layout); "
                         "preprocessing as Keras load_img(target_size=(224, 224)) + mobilenet.preprocess_input",
                         *notes]),
    )
    module = ContractModule(network.eval(), KERAS_TF_NORMALIZATION).eval()
    return ImportedModel(module, metadata, notes)
