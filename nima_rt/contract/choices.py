"""The values a run's settings can take, declared once, and the one check that enforces them.

One validation point per setting: the library's config dataclass that holds it (``ScorerConfig``,
``RayScoreConfig``, ``RunOptions``...) checks it in ``__post_init__`` with :func:`check_choice` (or raises
:class:`SettingError` itself); the CLI does not check again, it turns the SettingError into a usage error
naming the option (exit 2). Through the Python API it is a ``ValueError`` naming the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

DEVICES = ("auto", "cpu", "cuda")
# Precision a backend runs a model in. None (the default) is the model's own policy: fp32, unless its
# metadata records an fp16 check that passed (contract.default_gpu_precision).
PRECISIONS = ("fp32", "fp16", "int8")  # int8: a bundled model's INT8 copy on CPU (nima_rt/io/variants.py)
GPU_PRECISIONS = ("fp16", "fp32")  # what the GPU backends cast to, fastest first (INT8 engines are built by export)
GPU_DECODE_MODES = ("auto", "on", "off")
ENGINES = ("local", "ray")


class SettingError(ValueError):
    """A setting that cannot be used (alone or with another); ``option`` is the CLI option it comes from, so
    the CLI can turn it into a usage error naming that option (exit 2)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def check_choice(setting: str, value: object, allowed: Sequence[object], option: str | None = None) -> None:
    """Raise ``SettingError("<setting> must be one of a, b, got 'x'")`` unless ``value`` is allowed; ``option``
    is the CLI option (default: ``setting``)."""
    if value not in allowed:
        raise SettingError(option or setting, f"{setting} must be one of {', '.join(map(str, allowed))}, got {value!r}")
