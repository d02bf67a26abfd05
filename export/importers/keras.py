"""Import a Keras NIMA weights file (idealo's, titu1994's) as a contract model.

The file is read into a nima-rt network by :func:`nima_rt.train.model.foreign.keras_model` (h5py alone;
TensorFlow is not needed): Keras 2 and Keras 3 HDF5 (``save_weights``, ``model.save("x.h5")``), Keras 3's
``.weights.h5`` and ``.keras`` files, functional or Sequential, MobileNet v1 of any width + a 10-way Dense
(:mod:`nima_rt.train.model.keras_files` says what is refused and how to re-save). The predict-time
preprocessing is idealo's: Keras ``load_img(target_size=(224, 224))`` (a squash with PIL's NEAREST, no JPEG
draft) and ``mobilenet.preprocess_input`` (``x / 127.5 - 1``, inside the graph).
"""

from __future__ import annotations

from nima_rt.export.importers.base import ImportedModel, ImportRequest, imported_model


def import_keras(request: ImportRequest) -> ImportedModel:
    """The Keras file as a ContractModule (uint8 NHWC in, dist/mean/std out) and its metadata."""
    from nima_rt.train.model.foreign import keras_model

    model = keras_model(request.path, request.keras_padding)
    return imported_model(request, model, "Keras", "; ".join([model.description, *model.notes]))
