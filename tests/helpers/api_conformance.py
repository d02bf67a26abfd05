"""Every TensorRT and CUDA call site of nima-rt, read from the source with ``ast`` and checked against
NVIDIA's real Python bindings (no GPU needed: the bindings import against a stub library).

Which modules: every module of the source folders that imports ``tensorrt`` or ``cuda.bindings``,
names a ``trt``/``cudart`` value, calls the project's import helpers for them, loads a library with
ctypes, or names a CUDA function in a string. Nothing is listed by hand, so a new call cannot escape.

What is a call site, and what is checked:

- ``trt.A.B...`` (``trt`` being the tensorrt module: a parameter named ``trt`` or a name bound by
  ``import tensorrt``, ``import_tensorrt()``, ``require_tensorrt()``): each attribute exists; when
  called, one of the pybind11 overloads (parsed from the docstring) accepts the positional and
  keyword arguments; a class used as a base is subclassable and overridden methods keep its parameters.
- methods and properties of TensorRT objects, typed by a small inference over assignments
  (``x = trt.Builder(...)``, ``self.engine = self.runtime.deserialize_cuda_engine(...)``, ...) using the
  return types in the real signatures: each exists and accepts the arguments. A call of a TensorRT
  method name on a value whose type cannot be inferred is itself a problem (it would escape the check).
- CUDA runtime functions (string constants ``cudaXxx`` handed to ``cuda_call``, attributes ``.cudaXxx``):
  each exists in ``cuda.bindings.runtime``, and where the call's arguments are visible, its
  signature (``inspect.signature``) binds them; enum members exist.
- CUDA driver functions called through ctypes (``lib.cuXxx``) exist in ``cuda.bindings.driver`` (same C
  names), and module constants ``CU_*``/``CUDA_*`` equal the driver enum's values.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from helpers.api_types import TRT, TRT_FACTORIES, TypeInference, attribute_chain
from helpers.pybind_signatures import accepts, overloads

SOURCE_FOLDERS = ("nima_rt", "train", "export")
CUDA_FUNCTION = re.compile(r"^cuda[A-Z]\w*$")
DRIVER_FUNCTION = re.compile(r"^cu[A-Z]\w*$")
DRIVER_CONSTANT = re.compile(r"^(CU_[A-Z0-9_]+|CUDA_SUCCESS)$")
TENSORRT_MODULES = ("tensorrt", "tensorrt_bindings")


def discover(repo: Path) -> list[Path]:
    """The source modules that touch TensorRT, the CUDA runtime bindings or the CUDA driver."""
    found = []
    for folder in SOURCE_FOLDERS:
        for path in sorted((repo / folder).rglob("*.py")):
            if _touches_gpu_api(ast.parse(path.read_text(encoding="utf-8"))):
                found.append(path)
    return found


def _touches_gpu_api(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorrt" or a.name.startswith("cuda.")
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("tensorrt", "cuda")):
            return True
        if isinstance(node, ast.Name) and node.id in ("trt", "cudart") or isinstance(node, ast.arg) and node.arg in (
                "trt", "cudart"):
            return True
        if isinstance(node, ast.Attribute) and (node.attr in ("CDLL", "cudart") or CUDA_FUNCTION.match(node.attr)):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                CUDA_FUNCTION.match(node.value) or node.value.startswith(("tensorrt", "cuda.bindings"))):
            return True
        if isinstance(node, ast.Name) and node.id in TRT_FACTORIES | {"import_cudart"}:
            return True
    return False


@dataclass
class Report:
    sites: list[str] = field(default_factory=list)  # "kind file:line what", one per checked use
    problems: list[str] = field(default_factory=list)

    def site(self, kind: str, where: str, what: str, problem: str | None) -> None:
        line = f"{kind} {where} {what}"
        if self.sites and line in self.sites[-3:]:  # a base class is met as a class and as an attribute
            return
        self.sites.append(line)
        if problem:
            self.problems.append(f"{where} {what}: {problem}")


# -- the walk -------------------------------------------------------------------------------------


class _ProblemsOnly(Report):
    """Records only the problems, into ``target``."""

    def __init__(self, target: Report) -> None:
        super().__init__()
        self.target = target

    def site(self, kind: str, where: str, what: str, problem: str | None) -> None:
        if problem:
            self.target.site(kind, where, what, problem)


class Checker(TypeInference):
    """Types values, then checks each use, for one module at a time (see the module docstring)."""

    def __init__(self, trt: ModuleType, cudart: ModuleType, driver: ModuleType) -> None:
        self.trt, self.cudart, self.driver = trt, cudart, driver
        self.report = Report()
        self.trt_methods = self._trt_method_names()

    def exclude_project_methods(self, sources: list[Path]) -> None:
        """A method name the project defines itself (``Drift.line``, ``BuiltEngine.write``) is taken to be the
        project's: such calls on untyped values are not TensorRT calls that escape the check."""
        for path in sources:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.trt_methods.discard(node.name)

    def _trt_method_names(self) -> set[str]:
        import pathlib

        import numpy

        common: set[str] = set()
        for kind in (object, str, bytes, list, dict, set, tuple, int, float, numpy.ndarray, pathlib.Path, ModuleType,
                     io.BufferedReader, io.BytesIO, io.TextIOWrapper):
            common |= set(dir(kind))
        names = set()
        for value in vars(self.trt).values():
            if inspect.isclass(value):
                names |= {n for n in dir(value) if not n.startswith("_") and callable(getattr(value, n, None))}
        return names - common

    def check_file(self, path: Path, repo: Path) -> None:
        self.file = str(path.relative_to(repo))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        self.start(tree)
        self._check(tree, None, None)

    # - checking -
    def _check(self, node: ast.AST, cls: str | None, func: str | None, in_chain: bool = False) -> None:
        """Check ``node`` and what it contains; ``in_chain``: an attribute inside a chain already checked."""
        where = f"{self.file}:{getattr(node, 'lineno', '?')}"
        cls_inner, func_inner = self._scope(node, cls, func)
        if isinstance(node, ast.ClassDef):
            self._check_subclass(node, cls, func, where)
        elif isinstance(node, ast.Call):
            self._check_call(node, cls, func, where)
        elif isinstance(node, ast.Attribute) and not in_chain:
            self._resolve_chain(node, cls, func, where)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and CUDA_FUNCTION.match(node.value):
            self._check_cuda_name(node.value, where)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self._check_driver_constant(node.targets[0].id, node.value, where)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in TENSORRT_MODULES:
            self.report.site("tensorrt", where, f"from {node.module} import ...",
                             "import the module (import tensorrt as trt) so the check can follow its calls")
        for child in ast.iter_child_nodes(node):
            chained = (isinstance(node, ast.Call) and child is node.func) or (
                isinstance(node, ast.Attribute) and child is node.value)
            self._check(child, cls_inner, func_inner, chained and isinstance(child, ast.Attribute))

    def _resolve_chain(self, node: ast.Attribute, cls: str | None, func: str | None, where: str,
                       record: bool = True) -> Any:
        """Check a (maximal) attribute chain; returns the object it names when it is on the tensorrt module.
        ``record=False`` (a callee, recorded with its call): only a problem is recorded."""
        report = self.report if record else _ProblemsOnly(self.report)
        root, names = attribute_chain(node)
        root_type = self.lookup(root, cls, func)
        if root_type is TRT:
            value: Any = self.trt
            for index, name in enumerate(names):
                if not hasattr(value, name):
                    report.site("tensorrt", where, "trt." + ".".join(names), f"no attribute {name!r}"
                                     + (f" on trt.{'.'.join(names[:index])}" if index else ""))
                    return None
                value = getattr(value, name)
            report.site("tensorrt", where, "trt." + ".".join(names), None)
            return value
        cuda = next((i for i, name in enumerate(names) if CUDA_FUNCTION.match(name)), None)
        if cuda is not None:
            value = self.cudart
            for name in names[cuda:]:
                if not hasattr(value, name):
                    report.site("cudart", where, ".".join(names[cuda:]), f"no attribute {name!r}")
                    return None
                value = getattr(value, name)
            report.site("cudart", where, ".".join(names[cuda:]), None)
            return None
        if DRIVER_FUNCTION.match(names[-1]) and len(names) == 1:
            problem = None if callable(getattr(self.driver, names[-1], None)) else "not in cuda.bindings.driver"
            report.site("driver", where, names[-1], problem)
            return None
        owner = self.lookup(node.value, cls, func)
        if inspect.isclass(owner):
            problem = None if hasattr(owner, node.attr) else f"{owner.__name__} has no attribute {node.attr!r}"
            report.site("tensorrt", where, f"{owner.__name__}.{node.attr}", problem)
        return None

    def _check_call(self, call: ast.Call, cls: str | None, func: str | None, where: str) -> None:
        self._check_cuda_call(call, where)
        callee = call.func
        if not isinstance(callee, ast.Attribute):
            return
        positional, keywords = len(call.args), [k.arg for k in call.keywords if k.arg]
        starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
        root, names = attribute_chain(callee)
        target = self._resolve_chain(callee, cls, func, where, record=False)
        if CUDA_FUNCTION.match(callee.attr):
            if not starred:
                self._bind_cuda(callee.attr, positional, where)
            return
        if DRIVER_FUNCTION.match(callee.attr) and len(names) == 1:  # lib.cuXxx(...) through ctypes
            problem = None if callable(getattr(self.driver, callee.attr, None)) else "not in cuda.bindings.driver"
            self.report.site("driver", where, callee.attr, problem)
            return
        if self.lookup(root, cls, func) is TRT:
            what = "trt." + ".".join(names)
            if inspect.isclass(target):
                self._check_signature(target.__init__, "__init__", what, positional, keywords, starred, where)
            elif callable(target):
                owner: Any = self.trt
                for name in names[:-1]:
                    owner = getattr(owner, name, None)
                unbound = inspect.isclass(owner) and positional > 0  # Class.method(instance, ...)
                self._check_signature(target, callee.attr, what, positional - unbound, keywords, starred, where)
            return
        owner = self.lookup(callee.value, cls, func)
        if inspect.isclass(owner):
            method = getattr(owner, callee.attr, None)
            what = f"{owner.__name__}.{callee.attr}"
            if method is None:
                self.report.site("tensorrt", where, what, f"{owner.__name__} has no attribute {callee.attr!r}")
            else:
                self._check_signature(method, callee.attr, what, positional, keywords, starred, where)
        elif callee.attr in self.trt_methods:
            self.report.site("tensorrt", where, f"?.{callee.attr}(...)",
                             "a TensorRT method called on a value whose TensorRT type cannot be inferred "
                             "(assign it from a trt call so the check can follow it)")

    def _check_signature(self, function: Any, name: str, what: str, positional: int, keywords: list[str],
                         starred: bool, where: str) -> None:
        signatures = overloads(function, name)
        label = f"{what}({', '.join(['_'] * positional + [k + '=' for k in keywords])})"
        if signatures is None:
            self.report.site("tensorrt", where, label, None)  # a plain Python function of the tensorrt package
        elif starred or any(accepts(o, positional, keywords) for o in signatures):
            self.report.site("tensorrt", where, label, None)
        else:
            wanted = "; ".join("(" + ", ".join(n + ("=…" if d else "") for n, d in o.params) + ")" for o in signatures)
            self.report.site("tensorrt", where, label, f"no overload takes these arguments; the bindings have {wanted}")

    def _check_subclass(self, node: ast.ClassDef, cls: str | None, func: str | None, where: str) -> None:
        for base in node.bases:
            if not isinstance(base, ast.Attribute) or self.lookup(attribute_chain(base)[0], cls, func) is not TRT:
                continue
            value = self._resolve_chain(base, cls, func, where)
            if value is None:
                continue
            for method in (m for m in node.body if isinstance(m, ast.FunctionDef) and m.name != "__init__"):
                signatures = overloads(getattr(value, method.name, None), method.name)
                if not signatures:
                    continue
                mine = tuple(a.arg for a in method.args.args[1:])
                ok = any(tuple(n for n, _ in o.params) == mine or len(o.params) == len(mine) for o in signatures)
                self.report.site("tensorrt", where, f"class {node.name}(trt.{value.__name__}).{method.name}{mine}",
                                 None if ok else f"the base's {method.name} takes {signatures[0].params}")

    def _check_cuda_name(self, name: str, where: str) -> None:
        problem = None if callable(getattr(self.cudart, name, None)) else "not a function of cuda.bindings.runtime"
        self.report.site("cudart", where, f'"{name}"', problem)

    def _check_cuda_call(self, call: ast.Call, where: str) -> None:
        """``cuda_call(rt, "cudaX", *args)`` / ``self._cuda("cudaX", *args)``: the CUDA function named by the
        first or second argument gets the arguments after it."""
        if isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr", "setattr"):
            return
        for index, first in enumerate(call.args[:2]):
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            names = [o.value for o in options if isinstance(o, ast.Constant) and isinstance(o.value, str)]
            if len(names) == len(options) and all(CUDA_FUNCTION.match(n) for n in names):
                rest = call.args[index + 1:]
                if not any(isinstance(a, ast.Starred) for a in rest):
                    for name in names:
                        self._bind_cuda(name, len(rest), where)
                return

    def _bind_cuda(self, name: str, count: int, where: str) -> None:
        function = getattr(self.cudart, name, None)
        if not callable(function):
            return  # reported by the name check
        try:
            inspect.signature(function).bind(*range(count))
            problem = None
        except TypeError as exc:
            problem = f"{name}{inspect.signature(function)} does not take {count} arguments ({exc})"
        self.report.site("cudart", where, f"{name}({', '.join(['_'] * count)})", problem)

    def _check_driver_constant(self, name: str, value: ast.AST, where: str) -> None:
        if not DRIVER_CONSTANT.match(name) or not isinstance(value, ast.Constant):
            return
        for enum in vars(self.driver).values():
            member = getattr(enum, name, None) if inspect.isclass(enum) else None
            if member is not None and hasattr(member, "value"):
                problem = None if int(member.value) == value.value else f"the driver's value is {int(member.value)}"
                self.report.site("driver", where, f"{name} = {value.value}", problem)
                return
        self.report.site("driver", where, f"{name} = {value.value}", "no such member in cuda.bindings.driver")
