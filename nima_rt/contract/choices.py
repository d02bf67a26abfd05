"""The values a run's settings can take, declared once, and the one check that enforces them.

The library's config dataclasses (``ScorerConfig``, ``RayScoreConfig``) validate with
:func:`check_choice`; the CLI offers the same tuples as its option choices, so a wrong value is a
usage error there and a ``ValueError`` naming the setting through the Python API.
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


def check_choice(setting: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ``ValueError("<setting> must be one of a, b, got 'x'")`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ValueError(f"{setting} must be one of {', '.join(map(str, allowed))}, got {value!r}")
