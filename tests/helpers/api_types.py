"""Which values in nima-rt's source are TensorRT objects, inferred from assignments and NVIDIA's signatures.

A small flow-insensitive inference for tests/helpers/api_conformance.py: ``trt`` (a parameter of that
name, ``import tensorrt``, ``import_tensorrt()``/``require_tensorrt()``/``importlib.import_module("tensorrt")``)
is the module; ``trt.Builder(...)`` is a ``Builder``; a method's result has the class its real pybind11
signature returns; ``self.x = ...`` types ``self.x`` in the whole class; a module function's parameters take
the types of the arguments it is called with, and its calls the type it returns.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from helpers.pybind_signatures import overloads, return_class

TRT = "module:tensorrt"
TRT_FACTORIES = {"import_tensorrt", "require_tensorrt"}


def attribute_chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    """``a.b.c`` -> (Name a, ["b", "c"])."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return node, names[::-1]


def self_key(node: ast.AST, cls: str | None) -> str | None:
    if cls and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"{cls}.self.{node.attr}"
    return None


class TypeInference:
    """``types``: scope-qualified names (``func:name``, ``Class.self.attr``, ``return:func``) -> TRT or a class."""

    trt: Any

    def start(self, tree: ast.AST) -> None:
        self.types: dict[str, Any] = {}
        self.functions: dict[str, tuple[str, ast.FunctionDef]] = {}  # name -> (qualified scope, node)
        self._collect_functions(tree, None)
        for _ in range(3):  # assignments may use values typed further down: iterate to a fixed point
            self._infer(tree, None, None)

    def _collect_functions(self, node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef):
                scope = f"{func}.{child.name}" if func else child.name
                self.functions.setdefault(child.name, (scope, child))
                self._collect_functions(child, scope)
            elif isinstance(child, ast.ClassDef):
                self._collect_functions(child, func)

    def _scope(self, node: ast.AST, cls: str | None, func: str | None) -> tuple[str | None, str | None]:
        if isinstance(node, ast.ClassDef):
            return node.name, func
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return cls, f"{func}.{node.name}" if func else node.name
        return cls, func

    def _key(self, name: str, func: str | None) -> str:
        return f"{func}:{name}"

    def lookup(self, node: ast.AST, cls: str | None, func: str | None) -> Any:
        """The type of ``node``: TRT (the module), a TensorRT class (instances), or None (unknown)."""
        if isinstance(node, ast.Name):
            scope = func
            while True:
                key = self._key(node.id, scope)
                if key in self.types:
                    return self.types[key]
                if not scope:
                    return TRT if node.id == "trt" else None
                scope = scope.rpartition(".")[0] or None
        key = self_key(node, cls)
        if key:
            return self.types.get(key)
        if isinstance(node, ast.Call):
            callee = node.func
            if isinstance(callee, ast.Name) and callee.id in TRT_FACTORIES:
                return TRT
            if isinstance(callee, ast.Name) and callee.id in self.functions:
                return self.types.get(f"return:{self.functions[callee.id][0]}")
            if isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name) and (
                    callee.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value == "tensorrt"):
                return TRT
            base = self.lookup(callee, cls, func) if isinstance(callee, ast.Attribute) else None
            if inspect.isclass(base):
                return base  # a TensorRT constructor
            if isinstance(callee, ast.Attribute):
                owner = self.lookup(callee.value, cls, func)
                if inspect.isclass(owner):
                    signatures = overloads(getattr(owner, callee.attr, None), callee.attr) or []
                    types = {return_class(self.trt, o.returns) for o in signatures} - {None}
                    return types.pop() if len(types) == 1 else None
            return None
        if isinstance(node, ast.Attribute):
            owner = self.lookup(node.value, cls, func)
            if owner is TRT:
                value = getattr(self.trt, node.attr, None)
                return value if inspect.isclass(value) else None
        return None

    def _bind(self, target: ast.AST, value: Any, cls: str | None, func: str | None) -> None:
        if value is None:
            return
        if isinstance(target, ast.Name):
            self.types[self._key(target.id, func)] = value
        elif self_key(target, cls):
            self.types[self_key(target, cls)] = value

    def _infer(self, node: ast.AST, cls: str | None, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner_cls, inner_func = self._scope(child, cls, func)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == "tensorrt":
                        self.types[self._key(alias.asname or "tensorrt", func)] = TRT
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in child.args.args + child.args.kwonlyargs:
                    if arg.arg == "trt":
                        self.types[self._key("trt", inner_func)] = TRT
            elif isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and child.func.id in self.functions:
                scope, definition = self.functions[child.func.id]
                params = [a.arg for a in definition.args.args]
                bound = list(zip(params, child.args, strict=False))
                bound += [(k.arg, k.value) for k in child.keywords if k.arg]
                for name, value in bound:
                    value_type = self.lookup(value, cls, func)
                    if value_type is not None:
                        self.types[self._key(name, scope)] = value_type
            elif isinstance(child, ast.Return) and func and child.value is not None:
                value_type = self.lookup(child.value, cls, func)
                if value_type is not None:
                    self.types[f"return:{func}"] = value_type
            elif isinstance(child, ast.Assign):
                for target in child.targets:
                    if isinstance(target, ast.Tuple) and isinstance(child.value, ast.Tuple):
                        for t, v in zip(target.elts, child.value.elts, strict=False):
                            self._bind(t, self.lookup(v, cls, func), cls, func)
                    else:
                        self._bind(target, self.lookup(child.value, cls, func), cls, func)
            self._infer(child, inner_cls, inner_func)
