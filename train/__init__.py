"""Training, evaluation and dataset building for nima-rt models (the ``train`` extra: torch, timm, scipy)."""

from __future__ import annotations

import os
from typing import Any


def load_contract_module(path: str | os.PathLike[str]) -> Any:
    """A training checkpoint as the ContractModule export traces (uint8 NHWC in; dist, mean, std out).

    The torch-cuda backend's ``checkpoint_loader``: the runtime never imports this package itself,
    the CLI (or an API user) hands this function over. Imports torch when called.
    """
    from nima_rt.train.model.checkpoint import load_checkpoint

    return load_checkpoint(path).contract_module()
