"""The signatures pybind11 writes into a binding's docstrings (``name(self: T, a: X, b: Y = d) -> R``, one line
per overload), parsed so a call's arguments can be checked against NVIDIA's TensorRT bindings without a GPU."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Overload:
    params: tuple[tuple[str, bool], ...]  # (name, has default), self excluded
    returns: str


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([<{":
            depth += 1
        elif char in ")]>}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in parts + [current] if p.strip()]


def overloads(function: Any, name: str) -> list[Overload] | None:
    """The signatures pybind11 wrote into ``function.__doc__``; None when it has none (not pybind11)."""
    found = []
    for line in (getattr(function, "__doc__", None) or "").splitlines():
        line = re.sub(r"^\d+\.\s+", "", line.strip())
        if not line.startswith(f"{name}(") or line.startswith(f"{name}(*args, **kwargs)"):
            continue
        body, _, returns = line[len(name) + 1:].rpartition(") -> ")
        params = [p for p in _split_top(body) if not p.startswith("self")]
        found.append(Overload(tuple((p.split(":")[0].split("=")[0].strip(), "=" in p) for p in params),
                              returns.strip()))
    return found or None


def accepts(overload: Overload, positional: int, keywords: list[str]) -> bool:
    names = [name for name, _ in overload.params]
    if positional > len(names) or any(k not in names[positional:] for k in keywords):
        return False
    return all(default or index < positional or name in keywords
               for index, (name, default) in enumerate(overload.params))


def return_class(trt: ModuleType, text: str) -> Any:
    """The TensorRT class a signature's return annotation names, or None (bool, list[...], ...)."""
    if "[" in text:
        return None
    name = re.split(r"[.:]+", text)[-1]
    for candidate in (name, name[1:] if name.startswith("I") else None):
        value = getattr(trt, candidate, None) if candidate else None
        if inspect.isclass(value):
            return value
    return None
