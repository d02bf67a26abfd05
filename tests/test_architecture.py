"""The layer rule of docs/architecture.md holds for the real tree, and the check catches each kind of break."""

from __future__ import annotations

import textwrap
from pathlib import Path

import layering
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_tree_keeps_the_layer_rule() -> None:
    violations = layering.check_tree(REPO)
    assert [str(v) for v in violations] == []


def test_every_source_module_has_a_layer() -> None:
    for folder, package in layering.SOURCE_ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            name, _ = layering.module_name(REPO / folder, package, path)
            assert layering.layer_of(name) is not None, name


def test_the_runtime_layers_match_the_doc() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
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
        ("from .train.checkpoint import load\n",
         "nima_rt/scorer.py:1: nima_rt.scorer imports nima_rt.train.checkpoint.load: layer runtime may not import "
         "layer train"),
        ("def lazy():\n    from nima_rt.cli import app\n",
         "nima_rt/scorer.py:2: nima_rt.scorer imports nima_rt.cli.app: layer runtime may not import layer cli"),
        ("import importlib\nX = importlib.import_module('nima_rt.export.api')\n",
         "nima_rt/scorer.py:2: nima_rt.scorer imports nima_rt.export.api: layer runtime may not import layer export"),
        ("import torch\n",
         "nima_rt/scorer.py:1: nima_rt.scorer imports torch: layer runtime imports only numpy, Pillow, onnxruntime "
         "and typer at module level (load the rest inside functions)"),
    ],
    ids=["relative", "lazy", "string", "heavy-top-level"],
)
def test_a_planted_violation_is_reported(tmp_path: Path, source: str, expected: str) -> None:
    assert plant(tmp_path, {"nima_rt/__init__.py": "", "nima_rt/scorer.py": source}) == [expected]


def test_allowed_imports_pass(tmp_path: Path) -> None:
    files = {
        "nima_rt/__init__.py": "",
        "nima_rt/scorer.py": '"""Mentions nima_rt.train.checkpoint in a docstring only."""\n'
                             "import numpy\nfrom .contract import X\n\ndef f():\n    import torch\n",
        "nima_rt/cli/__init__.py": "COMMANDS = ('nima_rt.cli.score', 'nima_rt.train.x')\nfrom ..scorer import S\n",
        "train/__init__.py": "from nima_rt.scorer import Scorer\n",
    }
    assert plant(tmp_path, files) == []


def test_apps_do_not_import_each_other_and_train_not_export(tmp_path: Path) -> None:
    files = {
        "nima_rt/__init__.py": "",
        "nima_rt/report/__init__.py": "from ..label.store import Store\n",
        "train/trainer.py": "from nima_rt.export.api import run_export\n",
    }
    assert plant(tmp_path, files) == [
        "nima_rt/report/__init__.py:1: nima_rt.report imports nima_rt.label.store.Store: apps do not import each other",
        "train/trainer.py:1: nima_rt.train.trainer imports nima_rt.export.api.run_export: layer train may not "
        "import layer export",
    ]
