"""The container's commands, proven without a container engine: the Dockerfile's install line in a clean
virtual environment (no system packages, no repository on the path) from a copy of what its COPY lines
copy, then its ENTRYPOINT + CMD (port 0 instead of 8000), its HEALTHCHECK command, and one image scored.

No container engine runs here (no Docker daemon, and the base image's registry is out of reach), so
this is how the image's recipe is checked (docs/guide/serve.md#container). Slow: pip downloads the
runtime's wheels; skipped only when the package registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers.paths import REPO
from helpers.serve_client import start_service

DOCKERFILE = REPO / "Dockerfile"
UNREACHABLE = ("Failed to establish a new connection", "Temporary failure in name resolution",
               "Could not find a version that satisfies", "No matching distribution found", "Network is unreachable")


def _instruction(name: str, holding: str = "") -> str:
    """The last Dockerfile instruction ``name`` (holding ``holding``) with its continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found = [line.strip() for line in re.findall(rf"^{name}\s+(.+)$", text, re.M) if holding in line]
    assert found, f"Dockerfile has no {name} {holding}"
    return found[-1]


def _exec_form(text: str) -> list[str]:
    return json.loads(text[text.index("["):])


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.\d+-slim\b", text, re.M)  # slim base
    assert _instruction("USER") == "nima" and "useradd" in text  # non-root
    assert _exec_form(_instruction("ENTRYPOINT")) == ["nima-rt", "serve"]
    assert _exec_form(_instruction("CMD")) == ["--host", "0.0.0.0", "--port", "8000"]
    assert "/readyz" in _instruction("HEALTHCHECK")
    copied = {line.split()[1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line}
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8")
    for path in copied - {"pyproject.toml"}:
        assert f"!{path}" in ignore, f".dockerignore keeps {path} out of the build context"


def _build_context(target: Path) -> Path:
    """What the Dockerfile's COPY lines put in /src (tracked files only, as a clean clone has them)."""
    tracked = subprocess.run(["git", "ls-files", "pyproject.toml", "README.md", "nima_rt", "train", "export"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


@pytest.mark.slow
def test_the_container_commands_install_start_and_answer(tmp_path: Path) -> None:
    src = _build_context(tmp_path / "src")
    venv = tmp_path / "opt-nima-rt"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    run = _instruction("RUN", "pip install")
    install = shlex.split(run[run.index("pip install"):])[2:]  # e.g. --no-cache-dir ".[serve]"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *install], cwd=src, env=env,
                          capture_output=True, text=True, timeout=1500)
    if done.returncode != 0 and any(sign in done.stderr for sign in UNREACHABLE):
        pytest.skip(f"the package registry is unreachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    lean = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True, env=env)
    assert lean.returncode != 0  # the image is the lean runtime: no torch

    command = _exec_form(_instruction("ENTRYPOINT")) + _exec_form(_instruction("CMD"))
    command[command.index("--port") + 1] = "0"  # any free port here; 8000 in the container
    command[0] = str(venv / "bin" / command[0])
    service = start_service([], command=command, env={**env, "PYTHONUNBUFFERED": "1"}, timeout=300)
    try:
        assert any(line.startswith("warning: listening on 0.0.0.0") for line in service.lines)
        health = _exec_form(_instruction("HEALTHCHECK"))
        health = [str(venv / "bin" / "python")] + [part.replace(":8000/", f":{service.port}/") for part in health[1:]]
        assert subprocess.run(health, env=env, timeout=30).returncode == 0
        photo = REPO / "examples" / "photos" / "coffee.jpg"
        request = urllib.request.Request(f"http://127.0.0.1:{service.port}/v1/score", data=photo.read_bytes(),
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = json.loads(answer.read())
    finally:
        assert service.stop() == 0
    from nima_rt import Scorer

    with Scorer() as scorer:  # the repository's own install, same bundled defaults
        expected, columns = next(scorer.score_paths(photo)), scorer.columns
    assert body["models"] == columns
    for column in columns:
        assert abs(body["images"][0][column]["mean"] - expected.scores[column].mean) <= 1e-5
