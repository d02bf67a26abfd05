"""The import contract of nima-rt's layers (docs/architecture.md), checked on the source with ``ast``.

Layers, lowest first: contract -> io -> runtime -> train -> export -> apps -> cli. A module may import
modules of its own layer or of lower ones, never of a higher one. Every import counts: module level,
inside functions (lazy), relative, ``importlib.import_module("...")`` and any string constant that is
exactly a nima_rt module name (registries such as the backend table or the CLI's command list).
Two more rules: the apps (report, label, distributed) do not import each other, and modules of the
contract, io and runtime layers import at module level only the standard library, numpy, Pillow,
onnxruntime and typer (torch, scipy, GPU libraries load inside functions).

``check_tree`` returns one :class:`Violation` per offending import; tests assert the list is empty for
the real tree and that a planted violation of each kind is reported.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("contract", "io", "runtime", "train", "export", "apps", "cli")

# Module (or package prefix) -> layer. The longest matching prefix wins.
MODULE_LAYERS: dict[str, str] = {
    "nima_rt.contract": "contract",
    "nima_rt.onnx_meta": "contract",
    "nima_rt.choices": "contract",
    "nima_rt.decode": "io",
    "nima_rt.decode_memory": "io",
    "nima_rt.colour": "io",
    "nima_rt.inputs": "io",
    "nima_rt.results": "io",
    "nima_rt.output": "io",
    "nima_rt.model_file": "io",
    "nima_rt.files": "io",
    "nima_rt.models": "io",
    "nima_rt.variants": "io",
    "nima_rt.progress": "io",
    "nima_rt": "runtime",  # the package itself (its __init__ is the public API) and the runtime modules
    "nima_rt.scorer": "runtime",
    "nima_rt.backends": "runtime",
    "nima_rt.gpu_decode": "runtime",
    "nima_rt.ranking": "runtime",
    "nima_rt.metrics": "runtime",
    "nima_rt.cpu_plan": "runtime",
    "nima_rt.train": "train",
    "nima_rt.export": "export",
    "nima_rt.report": "apps",
    "nima_rt.label": "apps",
    "nima_rt.distributed": "apps",
    "nima_rt.cli": "cli",
    "nima_rt.__main__": "cli",
}
APPS = ("nima_rt.report", "nima_rt.label", "nima_rt.distributed")
LOW_LAYERS = ("contract", "io", "runtime")
LIGHT_THIRD_PARTY = frozenset({"numpy", "PIL", "onnxruntime", "typer"})

# Source folder -> the package it installs as (pyproject's package-dir).
SOURCE_ROOTS = {"nima_rt": "nima_rt", "train": "nima_rt.train", "export": "nima_rt.export"}


@dataclass(frozen=True)
class Violation:
    """One import that breaks the contract; ``str()`` is the line a failing test prints."""

    file: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.imported}: {self.rule}"


def layer_of(module: str) -> str | None:
    """The layer of a nima_rt module, or None for modules outside the package."""
    best = None
    for prefix in MODULE_LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return MODULE_LAYERS[best] if best else None


def _app_of(module: str) -> str | None:
    return next((app for app in APPS if module == app or module.startswith(app + ".")), None)


def module_name(root: Path, package: str, path: Path) -> tuple[str, bool]:
    """The dotted name ``path`` installs as, and whether it is a package ``__init__``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join([package, *parts]), is_package


@dataclass(frozen=True)
class _Import:
    line: int
    target: str
    top_level: bool  # executed at import time (not inside a function)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def _imports(tree: ast.AST, importer: str, is_package: bool) -> Iterator[_Import]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}

    def visit(node: ast.AST, top_level: bool) -> Iterator[_Import]:
        for child in ast.iter_child_nodes(node):
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield _Import(child.lineno, alias.name, top_level)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(importer, is_package, child.level, child.module)
                for alias in child.names:
                    # "from pkg import name": name may be a submodule; the checker counts both spellings.
                    yield _Import(child.lineno, f"{base}.{alias.name}" if base else alias.name, top_level)
            elif (isinstance(child, ast.Constant) and isinstance(child.value, str) and id(child) not in docstrings
                  and child.value.startswith("nima_rt.") and child.value.replace(".", "").replace("_", "").isalnum()):
                yield _Import(child.lineno, child.value, False)  # importlib / registry strings
            yield from visit(child, inner)

    yield from visit(tree, True)


def check_file(path: Path, root: Path, package: str, display: str) -> list[Violation]:
    importer, is_package = module_name(root, package, path)
    importer_layer = layer_of(importer)
    if importer_layer is None:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Violation] = []
    for item in _imports(tree, importer, is_package):
        top = item.target.split(".")[0]
        if top == "nima_rt":
            target_layer = layer_of(item.target)
            if target_layer is None:
                continue
            if LAYERS.index(target_layer) > LAYERS.index(importer_layer):
                found.append(Violation(display, item.line, importer, item.target,
                                       f"layer {importer_layer} may not import layer {target_layer}"))
                continue
            importer_app, target_app = _app_of(importer), _app_of(item.target)
            if importer_app and target_app and importer_app != target_app:
                found.append(Violation(display, item.line, importer, item.target, "apps do not import each other"))
        elif (item.top_level and importer_layer in LOW_LAYERS and top not in LIGHT_THIRD_PARTY
              and top not in sys.stdlib_module_names and top != "__future__"):
            found.append(Violation(display, item.line, importer, item.target,
                                   f"layer {importer_layer} imports only numpy, Pillow, onnxruntime and typer at "
                                   "module level (load the rest inside functions)"))
    return found


def check_tree(repo: Path, roots: dict[str, str] = SOURCE_ROOTS) -> list[Violation]:
    """Every violation in the source folders ``roots`` (folder -> installed package) below ``repo``."""
    violations: list[Violation] = []
    for folder, package in roots.items():
        root = repo / folder
        for path in sorted(root.rglob("*.py")):
            violations.extend(check_file(path, root, package, str(path.relative_to(repo))))
    return violations
