"""Runtime backends: one module per runtime, imported only when probed or chosen."""

from nima_rt.runtime.backends.base import Backend, BackendOptions, BackendOutput, BackendUnavailable
from nima_rt.runtime.backends.select import (
    BACKENDS,
    BackendChoice,
    BackendEntry,
    BackendStatus,
    choose_backend,
    probe_backends,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendChoice",
    "BackendEntry",
    "BackendOptions",
    "BackendOutput",
    "BackendStatus",
    "BackendUnavailable",
    "choose_backend",
    "probe_backends",
]
