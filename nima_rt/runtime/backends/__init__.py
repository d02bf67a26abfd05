"""Runtime backends: one module per runtime, imported only when probed or chosen."""

from nima_rt.runtime.backends.base import Backend, BackendOptions, BackendOutput, BackendUnavailable
from nima_rt.runtime.backends.select import (
    BACKENDS,
    BackendChoice,
    BackendEntry,
    BackendStatus,
    check_backend_settings,
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
    "check_backend_settings",
    "choose_backend",
    "probe_backends",
]
