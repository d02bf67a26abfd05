"""The layer rule of docs/design/architecture.md holds for the real tree; the check catches each kind of break."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import layering
from helpers.paths import REPO


def test_the_tree_keeps_the_layer_rule() -> None:
    violations = layering.check_tree(REPO)
    assert [str(v) for v in violations] == []


def test_every_source_module_has_a_layer() -> None:
    for folder, package in layering.SOURCE_ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            name, _ = layering.module_name(REPO / folder, package, path)
            assert layering.layer_of(name) is not None, name


def test_the_runtime_layers_match_the_doc() -> None:
    doc = (REPO / "docs" / "design" / "architecture.md").read_text(encoding="utf-8")
    assert " -> ".join(layering.LAYERS) in doc


def plant(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """Write a fake source tree (folder nima_rt/ and train/) and return the violations as lines."""
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    roots = {"nima_rt": "nima_rt", "train": "nima_rt.train"}
    return [str(v) for v in layering.check_tree(tmp_path, roots)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..train.model.checkpoint import load\n",
         "nima_rt/runtime/scorer.py:1: nima_rt.runtime.scorer imports nima_rt.train.model.checkpoint.load: "
         "layer runtime may not import layer train"),
        ("def lazy():\n    from nima_rt.cli import app\n",
         "nima_rt/runtime/scorer.py:2: nima_rt.runtime.scorer imports nima_rt.cli.app: "
         "layer runtime may not import layer cli"),
        ("import importlib\nX = importlib.import_module('nima_rt.export.api')\n",
         "nima_rt/runtime/scorer.py:2: nima_rt.runtime.scorer imports nima_rt.export.api: "
         "layer runtime may not import layer export"),
        ("import torch\n",
         "nima_rt/runtime/scorer.py:1: nima_rt.runtime.scorer imports torch: layer runtime imports only numpy, "
         "Pillow, onnxruntime and typer at module level (load the rest inside functions)"),
    ],
    ids=["relative", "lazy", "string", "heavy-top-level"],
)
def test_a_planted_violation_is_reported(tmp_path: Path, source: str, expected: str) -> None:
    assert plant(tmp_path, {"nima_rt/__init__.py": "", "nima_rt/runtime/scorer.py": source}) == [expected]


def test_allowed_imports_pass(tmp_path: Path) -> None:
    files = {
        "nima_rt/__init__.py": "",
        "nima_rt/runtime/scorer.py": '"""Mentions nima_rt.train.model.checkpoint in a docstring only."""\n'
                                     "import numpy\nfrom ..contract.spec import X\n\ndef f():\n    import torch\n",
        "nima_rt/cli/__init__.py": "COMMANDS = ('nima_rt.cli.score', 'nima_rt.train.x')\n"
                                   "from ..runtime.scorer import S\n",
        "train/__init__.py": "from nima_rt.runtime.scorer import Scorer\n",
    }
    assert plant(tmp_path, files) == []


def test_apps_do_not_import_each_other_and_train_not_export(tmp_path: Path) -> None:
    files = {
        "nima_rt/__init__.py": "",
        "nima_rt/apps/report/__init__.py": "from ..label.store import Store\n",
        "train/fit/trainer.py": "from nima_rt.export.api import run_export\n",
    }
    assert plant(tmp_path, files) == [
        "nima_rt/apps/report/__init__.py:1: nima_rt.apps.report imports nima_rt.apps.label.store.Store: "
        "apps do not import each other",
        "train/fit/trainer.py:1: nima_rt.train.fit.trainer imports nima_rt.export.api.run_export: layer train may not "
        "import layer export",
    ]


def test_the_layer_is_the_folder_and_a_loose_module_is_refused(tmp_path: Path) -> None:
    assert layering.layer_of("nima_rt.io.decode") == "io"
    assert layering.layer_of("nima_rt.runtime.backends.select") == "runtime"
    assert layering.layer_of("nima_rt.apps.report.build") == "apps"
    assert layering.layer_of("nima_rt.train.fit.trainer") == "train"
    assert layering.layer_of("nima_rt.scorer") is None  # a module at the top of nima_rt/ has no layer
    files = {"nima_rt/__init__.py": "", "nima_rt/helpers.py": "X = 1\n"}
    assert plant(tmp_path, files) == [
        "nima_rt/helpers.py:1: nima_rt.helpers: module outside the layer folders (put it in one of "
        "nima_rt/contract/, nima_rt/io/, nima_rt/models/, nima_rt/runtime/, nima_rt/train/, nima_rt/export/, "
        "nima_rt/apps/, nima_rt/cli/)",
    ]


def test_a_planted_cycle_is_reported(tmp_path: Path) -> None:
    """Two modules of one layer that import each other (one of them lazily) make a cycle; so does a loop of three."""
    files = {
        "nima_rt/__init__.py": "",
        "nima_rt/io/a.py": "from nima_rt.io.b import B\n",
        "nima_rt/io/b.py": "def f():\n    from nima_rt.io import a\n",
        "train/x.py": "from nima_rt.train.y import Y\n",
        "train/y.py": "from nima_rt.train.z import Z\n",
        "train/z.py": "import nima_rt.train.x\n",
    }
    assert plant(tmp_path, files) == [
        "nima_rt/io/a.py:1: nima_rt.io.a imports nima_rt.io.b: import cycle nima_rt.io.a -> nima_rt.io.b -> "
        "nima_rt.io.a",
        "train/x.py:1: nima_rt.train.x imports nima_rt.train.y: import cycle nima_rt.train.x -> nima_rt.train.y -> "
        "nima_rt.train.z -> nima_rt.train.x",
    ]


def test_the_tree_has_no_cycles() -> None:
    modules = layering._read_modules(REPO, layering.SOURCE_ROOTS)
    assert layering.find_cycles(layering.import_graph(modules)) == []
