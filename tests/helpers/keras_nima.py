"""Real Keras NIMA models for the import tests: idealo's architecture with random, non-trivial weights.

``build_nima`` builds what idealo's ``Nima.build()`` builds (``MobileNet(weights=None,
include_top=False, pooling='avg')`` + Dropout + Dense(10, softmax)) and fills it with random weights
whose activations depend on the photo: He-initialised convolutions, BatchNorm moving statistics
measured on the photos and then perturbed (mean shifted, variance scaled), random gamma/beta, and a
Dense layer with a non-zero bias scaled to the pooled features' spread, so the reference scores span
several points. ``write_keras2_h5`` writes the arrays the way Keras 2's ``save_weights`` did
(byte-string names with ``:0``, ``depthwise_kernel``, one group per layer or one for a nested base).
Needs tensorflow (``keras``); tests skip without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT = 224


def keras_inputs(paths: list[Path]) -> np.ndarray:
    """idealo's predict-time preprocessing: ``load_img(target_size=(224, 224))`` + ``preprocess_input``."""
    import keras

    images = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(INPUT, INPUT))) for p in paths])
    return keras.applications.mobilenet.preprocess_input(images)


def idealo_model(weights: Path):
    """idealo's NIMA as its ``Nima.build()`` makes it (``MobileNet(weights=None, include_top=False,
    pooling='avg')`` + Dropout(0.75) + Dense(10, softmax)) with ``weights`` loaded, as its predict code does."""
    import keras

    base = keras.applications.MobileNet(input_shape=(INPUT, INPUT, 3), weights=None, include_top=False, pooling="avg")
    head = keras.layers.Dense(10, activation="softmax")(keras.layers.Dropout(0.75)(base.output))
    model = keras.Model(base.inputs, head)
    model.load_weights(weights)
    return model


def build_nima(calibration: np.ndarray, seed: int = 0, alpha: float = 1.0):
    """idealo's functional NIMA model with random weights tuned to ``calibration`` (preprocessed images);
    ``alpha`` is MobileNet's width multiplier (idealo's: 1.0)."""
    import keras

    rng = np.random.default_rng(seed)
    base = keras.applications.MobileNet(input_shape=(INPUT, INPUT, 3), alpha=alpha, weights=None, include_top=False,
                                        pooling="avg")
    x = keras.layers.Dropout(0.75)(base.output)
    x = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(base.inputs, x)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in base.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            c = weights[0].shape[0]
            layer.set_weights([_f32(rng.uniform(0.6, 1.4, c)), _f32(rng.normal(0.3, 0.3, c)), weights[2], weights[3]])
            layer.momentum = 0.0  # the training-mode call below stores the batch statistics as moving ones
        elif weights:
            kernel = weights[0]
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            fan_in = np.prod(kernel.shape[:2]) * (1 if depthwise else kernel.shape[2])
            layer.set_weights([_f32(rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape))])
    base(calibration, training=True)
    for layer in norms:
        gamma, beta, mean, var = layer.get_weights()
        c = gamma.shape[0]
        layer.set_weights([gamma, beta, _f32(mean + rng.normal(0, 0.1, c) * np.sqrt(var)),
                           _f32(var * rng.uniform(0.7, 1.4, c) + 1e-3)])
        layer.momentum = 0.99
    features = base.predict(calibration, verbose=0)
    spread = features.std(0)[:, None] + 1e-2
    kernel = rng.normal(0, 1.0 / np.sqrt(features.shape[1]), (features.shape[1], 10)) / spread
    bias = -features.mean(0) @ kernel + rng.normal(0, 0.5, 10)
    model.layers[-1].set_weights([_f32(kernel), _f32(bias)])
    return model


def sequential_of(model):
    """The same layers as a Sequential with the MobileNet nested (the variant other packages saved)."""
    import keras

    base = keras.Model(model.inputs, model.layers[-3].output, name="mobilenet_1.00_224")
    sequential = keras.Sequential([keras.Input((INPUT, INPUT, 3)), base, model.layers[-2], model.layers[-1]])
    return sequential


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def layer_arrays(model) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """(layer name, [(Keras 2 weight name, array)]) for every layer of a functional model, in order."""
    import keras

    out = []
    for layer in model.layers:
        names = []
        for variable in layer.weights:
            param = variable.path.rsplit("/", 1)[-1]
            if isinstance(layer, keras.layers.DepthwiseConv2D) and param == "kernel":
                param = "depthwise_kernel"  # Keras 2's name for it
            names.append((f"{layer.name}/{param}:0", np.asarray(variable.numpy())))
        out.append((layer.name, names))
    return out


def write_keras2_h5(path: Path, model, nested: bool = False, full_model: bool = False) -> Path:
    """``model``'s weights in Keras 2's HDF5 layout (``save_weights``; ``model.save`` when ``full_model``).

    ``nested``: a Sequential whose first layer is the MobileNet (``mobilenet_1.00_224``), then
    ``dropout_1`` and ``dense_1``, as Keras 2 wrote such a model.
    """
    import h5py

    layers = layer_arrays(model)
    if nested:
        base = [(name, array) for _, arrays in layers[:-2] for name, array in arrays]
        dense = [(name.replace(layers[-1][0], "dense_1"), array) for name, array in layers[-1][1]]
        layers = [("mobilenet_1.00_224", base), ("dropout_1", []), ("dense_1", dense)]
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if full_model else handle
        if full_model:
            handle.attrs["model_config"] = b"{}"
        root.attrs["layer_names"] = [name.encode("utf8") for name, _ in layers]
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, arrays in layers:
            group = root.create_group(name)
            group.attrs["weight_names"] = [weight.encode("utf8") for weight, _ in arrays]
            for weight, array in arrays:
                group.create_dataset(weight, data=array)
    return path


def write_layers_h5(path: Path, layers: dict[str, dict[str, np.ndarray]], version: bytes = b"2.1.6") -> Path:
    """A Keras 2 weights file holding exactly ``layers`` ({layer: {param: array}}), for refusal tests."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode("utf8") for name in layers]
        handle.attrs["keras_version"] = version
        for name, arrays in layers.items():
            group = handle.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{param}:0".encode() for param in arrays]
            for param, array in arrays.items():
                group.create_dataset(f"{name}/{param}:0", data=array)
    return path


def keras_2_1_6_twin(model):
    """``model``'s layers and weights in the MobileNet Keras 2.1.5/2.1.6 built: ``ZeroPadding2D((1, 1))`` +
    ``valid`` before ``conv1`` and every depthwise convolution (layer names as those versions wrote them)."""
    import keras
    from keras import layers

    def copy(layer):
        layer.set_weights(model.get_layer(layer.name).get_weights())

    inputs = keras.Input((INPUT, INPUT, 3))
    x = layers.ZeroPadding2D((1, 1), name="conv1_pad")(inputs)
    units = []
    conv = layers.Conv2D(model.get_layer("conv1").filters, 3, strides=2, use_bias=False, name="conv1")
    x = conv(x)
    units.append(conv)
    norm = layers.BatchNormalization(name="conv1_bn")
    x = layers.ReLU(6.0, name="conv1_relu")(norm(x))
    units.append(norm)
    for block in range(1, 14):
        stride = model.get_layer(f"conv_dw_{block}").strides
        x = layers.ZeroPadding2D((1, 1), name=f"conv_pad_{block}")(x)
        for layer in (layers.DepthwiseConv2D(3, strides=stride, use_bias=False, name=f"conv_dw_{block}"),
                      layers.BatchNormalization(name=f"conv_dw_{block}_bn"), layers.ReLU(6.0),
                      layers.Conv2D(model.get_layer(f"conv_pw_{block}").filters, 1, use_bias=False,
                                    name=f"conv_pw_{block}"),
                      layers.BatchNormalization(name=f"conv_pw_{block}_bn"), layers.ReLU(6.0)):
            x = layer(x)
            if layer.weights:
                units.append(layer)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(10, activation="softmax", name=model.layers[-1].name)
    twin = keras.Model(inputs, dense(layers.Dropout(0.75)(x)))
    for layer in [*units, dense]:
        copy(layer)
    return twin


def random_mobilenet_layers(seed: int = 0, alpha: float = 0.25) -> dict[str, dict[str, np.ndarray]]:
    """Keras MobileNet v1 NIMA arrays ({layer: {param: array}}, Keras's shapes and names) with random
    weights, made without tensorflow (for write_layers_h5): He-initialised kernels, BatchNorm statistics
    that keep activations alive, a Dense with a bias."""
    rng = np.random.default_rng(seed)
    widths = [int(w * alpha) for w in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)]
    layers: dict[str, dict[str, np.ndarray]] = {}

    def unit(name: str, kernel_shape: tuple[int, ...], channels: int, fan_in: int, param: str = "kernel") -> None:
        layers[name] = {param: _f32(rng.normal(0, np.sqrt(2.0 / fan_in), kernel_shape))}
        layers[f"{name}_bn"] = {"gamma": _f32(rng.uniform(0.5, 1.5, channels)),
                                "beta": _f32(rng.normal(0.5, 0.2, channels)),
                                "moving_mean": _f32(rng.normal(0, 0.1, channels)),
                                "moving_variance": _f32(rng.uniform(0.5, 2.0, channels))}

    unit("conv1", (3, 3, 3, widths[0]), widths[0], 27)
    for block in range(1, 14):
        channels, out = widths[block - 1], widths[block]
        unit(f"conv_dw_{block}", (3, 3, channels, 1), channels, 9, "depthwise_kernel")
        unit(f"conv_pw_{block}", (1, 1, channels, out), out, channels)
    layers["dense_1"] = {"kernel": _f32(rng.normal(0, 0.05, (widths[-1], 10))), "bias": _f32(rng.normal(0, 0.5, 10))}
    return layers
