"""Optional Pillow plugins: image formats Pillow does not read by itself, added when their package is
installed (``pip install 'nima-rt[heif]'`` for HEIC/HEIF, the format of iPhone photos).

:func:`register_installed` registers every installed one with Pillow, once, the first time the walk or the
decoder asks which formats there are (lazily: ``import nima_rt`` imports none of them). When one is not
installed, :func:`missing_plugin_hint` names the extra to install for a file of its extensions, so a
skipped ``IMG_0001.HEIC`` says what would read it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class OptionalPlugin:
    """A Pillow plugin from another package: its module, the call that registers it, what it reads."""

    module: str
    register: str
    extensions: tuple[str, ...]
    extra: str
    formats: str  # in words, for the hint


PLUGINS = (
    OptionalPlugin("pillow_heif", "register_heif_opener", (".heic", ".heif", ".hif"), "heif", "HEIC/HEIF photos"),
)


@functools.cache
def register_installed() -> tuple[str, ...]:
    """Register every installed optional plugin with Pillow (once per process); the modules registered."""
    registered = []
    for plugin in PLUGINS:
        if importlib.util.find_spec(plugin.module) is None:
            continue
        try:
            getattr(importlib.import_module(plugin.module), plugin.register)()
        except (ImportError, AttributeError, OSError):  # a broken install reads nothing more, as if absent
            continue
        registered.append(plugin.module)
    return tuple(registered)


def missing_plugin_hint(extensions: Iterable[str]) -> str | None:
    """What to install to read files with these extensions (lower case, with the dot), or None when no
    optional plugin reads them or it is installed already."""
    wanted = set(extensions)
    installed = register_installed()
    for plugin in PLUGINS:
        if plugin.module not in installed and wanted & set(plugin.extensions):
            return f"{plugin.formats} need the optional '{plugin.extra}' extra: pip install 'nima-rt[{plugin.extra}]'"
    return None


__all__ = ["PLUGINS", "OptionalPlugin", "missing_plugin_hint", "register_installed"]
