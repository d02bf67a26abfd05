"""The import contract of nima-rt's layers (docs/design/architecture.md), checked on the source with ``ast``.

Layers, lowest first: contract -> io -> runtime -> train -> export -> apps -> cli. **A module's layer is
its folder** (:data:`FOLDER_LAYERS`: ``nima_rt/contract/`` is the contract layer, ``nima_rt/io/`` io, and so
on); a module of ``nima_rt/`` outside every layer folder is itself a violation, so a new module cannot
escape the rule by its place.

A module may import modules of its own layer or of lower ones, never of a higher one. Every import counts:
module level, inside functions (lazy), relative, ``importlib.import_module("...")`` and any string constant
that is exactly a nima_rt module name (registries such as the backend table or the CLI's command list).
More rules: the apps (``nima_rt/apps/<app>/``) do not import each other; modules of the contract, io and
runtime layers import at module level only the standard library, numpy, Pillow, onnxruntime and typer
(torch, scipy, GPU libraries load inside functions); and no two modules import each other, directly or
around a longer loop (every import counts here too, lazy ones included).

``check_tree`` returns one :class:`Violation` per offending import or cycle; tests assert the list is empty
for the real tree and that a planted violation of each kind is reported.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("contract", "io", "runtime", "train", "export", "apps", "cli")

# Installed package (folder) -> layer. A module belongs to the longest matching prefix.
FOLDER_LAYERS: dict[str, str] = {
    "nima_rt.contract": "contract",
    "nima_rt.io": "io",
    "nima_rt.models": "io",  # the bundled model files (data)
    "nima_rt.runtime": "runtime",
    "nima_rt.train": "train",
    "nima_rt.export": "export",
    "nima_rt.apps": "apps",
    "nima_rt.cli": "cli",
}
# The two modules allowed at the top of nima_rt/: the public API (as high as the runtime it exports) and
# ``python -m nima_rt`` (the CLI).
TOP_MODULES = {"nima_rt": "runtime", "nima_rt.__main__": "cli"}
APPS_PACKAGE = "nima_rt.apps"
LOW_LAYERS = ("contract", "io", "runtime")
LIGHT_THIRD_PARTY = frozenset({"numpy", "PIL", "onnxruntime", "typer"})

# Source folder -> the package it installs as (pyproject's package-dir).
SOURCE_ROOTS = {"nima_rt": "nima_rt", "train": "nima_rt.train", "export": "nima_rt.export"}


@dataclass(frozen=True)
class Violation:
    """One import (or import cycle) that breaks the contract; ``str()`` is the line a failing test prints."""

    file: str
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        what = f"{self.importer} imports {self.imported}" if self.imported else self.importer
        return f"{self.file}:{self.line}: {what}: {self.rule}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The layer of a nima_rt module by its folder, or None outside every layer folder."""
    if module in TOP_MODULES:
        return TOP_MODULES[module]
    matches = [prefix for prefix in FOLDER_LAYERS if _within(module, prefix)]
    return FOLDER_LAYERS[max(matches, key=len)] if matches else None


def _app_of(module: str) -> str | None:
    """``nima_rt.apps.report`` for any module of the report app, None outside the apps."""
    parts = module.split(".")
    return ".".join(parts[:3]) if _within(module, APPS_PACKAGE) and len(parts) > 2 else None


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


@dataclass(frozen=True)
class _Module:
    name: str
    display: str
    imports: tuple[_Import, ...]


def _read_modules(repo: Path, roots: dict[str, str]) -> dict[str, _Module]:
    modules: dict[str, _Module] = {}
    for folder, package in roots.items():
        root = repo / folder
        for path in sorted(root.rglob("*.py")):
            name, is_package = module_name(root, package, path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[name] = _Module(name, str(path.relative_to(repo)), tuple(_imports(tree, name, is_package)))
    return modules


def _layer_violations(module: _Module) -> list[Violation]:
    importer, display = module.name, module.display
    importer_layer = layer_of(importer)
    if importer_layer is None:
        folders = ", ".join(prefix.replace(".", "/") + "/" for prefix in FOLDER_LAYERS)
        return [Violation(display, 1, importer, "", f"module outside the layer folders (put it in one of {folders})")]
    found: list[Violation] = []
    for item in module.imports:
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


def import_graph(modules: dict[str, _Module]) -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line}, over modules of the tree only. ``from pkg import name``
    resolves to the submodule ``pkg.name`` when there is one, else to ``pkg``."""
    graph: dict[str, dict[str, int]] = {}
    for module in modules.values():
        edges: dict[str, int] = {}
        for item in module.imports:
            parts = item.target.split(".")
            target = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in modules),
                          None)
            if target is not None and target != module.name:
                edges.setdefault(target, item.line)
        graph[module.name] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One loop ``[a, b, ..., a]`` per strongly connected group of two or more modules (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, {})):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_loop_through(sorted(group)[0], set(group), graph) for group in groups)


def _loop_through(start: str, group: set[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """The shortest loop from ``start`` back to itself inside ``group`` (breadth first)."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                path = [node]
                while (before := previous[path[-1]]) is not None:
                    path.append(before)
                return [*reversed(path), start]
            if target in group and target not in previous:
                previous[target] = node
                queue.append(target)
    raise AssertionError(f"no loop through {start}")  # a strongly connected group always has one


def check_tree(repo: Path, roots: dict[str, str] = SOURCE_ROOTS) -> list[Violation]:
    """Every violation in the source folders ``roots`` (folder -> installed package) below ``repo``."""
    modules = _read_modules(repo, roots)
    violations = [v for module in modules.values() for v in _layer_violations(module)]
    graph = import_graph(modules)
    for loop in find_cycles(graph):
        first = modules[loop[0]]
        violations.append(Violation(first.display, graph[loop[0]][loop[1]], loop[0], loop[1],
                                    "import cycle " + " -> ".join(loop)))
    return violations
