"""Choosing a backend: fastest available first, visible fallback, loud failure when asked for a GPU."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from nima_rt.contract.choices import DEVICES, check_choice
from nima_rt.contract.messages import one_line
from nima_rt.io.model_file import ModelFile
from nima_rt.runtime.backends import cuda_driver
from nima_rt.runtime.backends.base import Backend, BackendOptions, BackendUnavailable


@dataclass(frozen=True)
class BackendEntry:
    """A backend known to nima-rt: its module exposes ``availability(model) -> reason | None`` and
    ``create(model, options) -> Backend`` (under other names when one module holds several backends)."""

    name: str
    device: str  # "cuda" or "cpu"
    module: str
    availability_function: str = "availability"
    create_function: str = "create"

    def load(self) -> Any:
        return importlib.import_module(self.module)

    def availability(self, model: ModelFile) -> str | None:
        return getattr(self.load(), self.availability_function)(model)

    def create(self, model: ModelFile, options: BackendOptions) -> Backend:
        return getattr(self.load(), self.create_function)(model, options)


# In the order `--device auto` tries them: fastest first, the CPU last.
BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry("tensorrt", "cuda", "nima_rt.runtime.backends.tensorrt_engine"),
    BackendEntry("onnxruntime-tensorrt", "cuda", "nima_rt.runtime.backends.onnxruntime_gpu",
                 "tensorrt_availability", "create_tensorrt"),
    BackendEntry("onnxruntime-cuda", "cuda", "nima_rt.runtime.backends.onnxruntime_gpu",
                 "cuda_availability", "create_cuda"),
    BackendEntry("torch-cuda", "cuda", "nima_rt.runtime.backends.torch_cuda"),
    BackendEntry("onnxruntime-cpu", "cpu", "nima_rt.runtime.backends.onnxruntime_backend"),
)


@dataclass(frozen=True)
class BackendStatus:
    """One backend's standing for one model: available, or not and why."""

    name: str
    device: str
    reason: str | None  # None when available

    @property
    def available(self) -> bool:
        return self.reason is None


@dataclass
class BackendChoice:
    """The backend that runs, the ones passed over, and the line that says so."""

    backend: Backend
    statuses: list[BackendStatus]

    @property
    def summary(self) -> str:
        """``backend: NAME; skipped A (why); B, C (the reason they share)``: one line naming the backends
        preferred over the one that runs, in preference order (those after it were never wanted)."""
        reasons: dict[str, list[str]] = {}
        for status in self.statuses:
            if status.name == self.backend.name:
                break
            if status.reason:
                reasons.setdefault(status.reason, []).append(status.name)
        line = f"backend: {self.backend.name}"
        if reasons:
            line += "; skipped " + "; ".join(f"{', '.join(names)} ({reason})" for reason, names in reasons.items())
        return line


def _availability(entry: BackendEntry, model: ModelFile) -> str | None:
    try:
        entry.load()
    except ImportError as exc:
        return f"cannot import {exc.name or entry.module} ({one_line(exc)})"
    try:
        return entry.availability(model)
    except Exception as exc:  # a probe must never take the run down
        return f"probe failed ({one_line(exc)})"


def check_backend_settings(device: str, backend: str | None) -> None:
    """SettingError unless ``device`` is a device and ``backend`` (when given) a registered backend."""
    check_choice("--device", device, DEVICES)
    if backend is not None:
        check_choice("--backend", backend, [entry.name for entry in BACKENDS])


def probe_backends(model: ModelFile, device: str = "auto", backend: str | None = None) -> list[BackendStatus]:
    """Every backend allowed by ``device``/``backend``, in preference order, with its availability.

    ``device`` and ``backend`` are checked where they are set (``ScorerConfig``, ``RayScoreConfig``, the info
    command: :func:`check_backend_settings`); a backend the device excludes is a ValueError here."""
    entries = [e for e in BACKENDS if device == "auto" or e.device == device]
    if backend is not None:
        entries = [e for e in entries if e.name == backend]
        if not entries:
            raise ValueError(f"backend {backend} does not run on --device {device}")
    return [BackendStatus(e.name, e.device, _availability(e, model)) for e in entries]


def choose_backend(
    model: ModelFile, device: str = "auto", backend: str | None = None, options: BackendOptions = BackendOptions()
) -> BackendChoice:
    """Open the first usable backend; raise BackendUnavailable naming every reason when none is.

    ``device="cuda"`` on a machine without a usable NVIDIA GPU fails at once with one short line.
    """
    if device == "cuda":
        try:
            cuda_driver.probe_gpu()
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                f"--device cuda: no usable NVIDIA GPU ({exc}); use --device auto or --device cpu"
            ) from None
    statuses = probe_backends(model, device, backend)
    failures: list[BackendStatus] = []
    for index, status in enumerate(statuses):
        if not status.available:
            failures.append(status)
            continue
        entry = next(e for e in BACKENDS if e.name == status.name)
        try:
            opened = entry.create(model, options)
        except BackendUnavailable as exc:
            failures.append(BackendStatus(status.name, status.device, str(exc)))
            continue
        return BackendChoice(opened, failures + statuses[index:])
    wanted = backend or (f"{device} backend" if device != "auto" else "backend")
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in failures) or "none registered"
    raise BackendUnavailable(f"no usable {wanted} for {model.path.name}: {reasons}")
