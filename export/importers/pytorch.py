"""Import a PyTorch NIMA state dict (nima.pytorch's or pyiqa's layout) as a contract model.

The state dict is rebuilt with its publisher's module structure by
:func:`nima_rt.train.model.foreign.torch_model` (:mod:`nima_rt.train.model.nima_torch`: the layouts, the
backbones tried, the refusals); the preprocessing is the publisher's (PIL bilinear squash, ImageNet
normalisation; pyiqa's full-resolution scoring becomes a fixed-size squash, said in a note).
"""

from __future__ import annotations

from typing import Any

from nima_rt.export.importers.base import ImportedModel, ImportRequest, imported_model


def import_torch(request: ImportRequest, data: Any) -> ImportedModel:
    """The state dict's network (``data``: what ``torch.load`` read from ``request.path``) as a ContractModule;
    refuses layouts it cannot rebuild exactly."""
    from nima_rt.train.model.foreign import torch_model

    model = torch_model(request.path, data)
    return imported_model(request, model, "PyTorch", model.description)
