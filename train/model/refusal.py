"""The one refusal of a foreign model file (Keras, PyTorch NIMA state dicts, exported ONNX weights)."""

from __future__ import annotations

from nima_rt.contract.spec import ContractError


class ImportFailed(ContractError):
    """The file cannot be imported; ``str()`` is one line naming the file, what it holds and what is supported."""
