"""NVIDIA's real Python bindings on a CPU machine, fetched from the package registry at test time.

- TensorRT: the ``tensorrt-cuXX-bindings`` wheel (1.3 MB: ``tensorrt_bindings/tensorrt.so``, NVIDIA's
  pybind11 module) and the ``tensorrt`` package from the ``tensorrt-cuXX`` sdist (18 KB: the
  ``import tensorrt`` users get). The ``-libs`` wheel is a placeholder that downloads from NVIDIA's
  own index (unreachable here), so :func:`build_stub` compiles a stub ``libnvinfer`` / ``libnvinfer_plugin``
  / ``libnvonnxparser`` defining the 9 C symbols the module needs (the factories return NULL, which
  real TensorRT's Python API reports as ``TypeError: pybind11::init(): factory function returned
  nullptr`` — what it raises when CUDA cannot initialise).
- ``cuda.bindings`` (cuda-python): the installed one when it is within the gpu extra's bounds (torch
  depends on it), else fetched.
- ``tensorrt-stubs``: type stubs that make ``import tensorrt`` an empty namespace package.

Nothing NVIDIA ships is kept in the repository. Downloads go to one folder per test session (and pip's
own cache); :class:`RegistryUnreachable` is raised only when the registry cannot be reached.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

STUB_SYMBOLS = """
#include <stddef.h>
void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
"""
STUB_LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")
UNREACHABLE = ("Could not fetch URL", "Failed to establish a new connection", "Network is unreachable",
               "Temporary failure in name resolution", "Max retries exceeded", "NewConnectionError",
               "ProxyError", "Read timed out", "Connection refused", "No route to host")


class RegistryUnreachable(RuntimeError):
    """pip could not reach the package registry; ``str()`` is pip's first line saying so."""


def pip(*args: str, timeout: float = 300) -> str:
    """Run pip with this interpreter; raise RegistryUnreachable for network failures, RuntimeError otherwise."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        text = done.stdout + done.stderr
        marker = next((line for line in text.splitlines() if any(m in line for m in UNREACHABLE)), None)
        if marker is not None:
            raise RegistryUnreachable(f"package registry unreachable: {marker.strip()[:200]}")
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{text[-3000:]}")
    return done.stdout


def download(requirement: str, dest: Path, binary: bool = True) -> Path:
    """The file pip downloads for ``requirement`` (no dependencies), into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--only-binary=:all:"] if binary else ["--no-binary=:all:", "--no-build-isolation"]
    out = pip("download", "--no-deps", *kind, "--dest", str(dest), requirement)
    match = re.findall(r"(?:Saved|File was already downloaded) (\S+)", out)
    if not match:
        raise RuntimeError(f"pip download {requirement}: no file named in its output:\n{out[-2000:]}")
    return (dest / Path(match[-1]).name) if not Path(match[-1]).is_absolute() else Path(match[-1])


def wheel_version(path: Path) -> str:
    """``tensorrt_cu13_bindings-11.4.0.106-cp311-...whl`` -> ``11.4.0.106``."""
    return path.name.split("-")[1]


def tensorrt_site(bindings_requirement: str, cache: Path) -> tuple[Path, str]:
    """A folder holding NVIDIA's ``tensorrt`` and ``tensorrt_bindings`` packages for the newest version
    matching ``bindings_requirement`` (e.g. ``tensorrt-cu13-bindings>=10.13.2,<11``), and that version."""
    wheel = download(bindings_requirement, cache / "downloads")
    version = wheel_version(wheel)
    site = cache / f"tensorrt-{version}"
    if (site / "tensorrt" / "__init__.py").is_file():
        return site, version
    meta = bindings_requirement.split("-bindings")[0]  # tensorrt-cu13-bindings -> tensorrt-cu13
    sdist = download(f"{meta}=={version}", cache / "downloads", binary=False)
    staging = cache / f"staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging, [n for n in archive.namelist() if n.startswith("tensorrt_bindings/")])
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/tensorrt/" in m.name and m.isfile()]
        for member in members:
            member.name = member.name[member.name.index("/tensorrt/") + 1:]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4 / 3.10.12
        archive.extractall(staging, members, **safe)
    staging.rename(site)
    return site, version


def build_stub(dest: Path, major: int) -> Path:
    """A folder with ``libnvinfer.so.<major>``, ``libnvinfer_plugin.so.<major>``, ``libnvonnxparser.so.<major>``
    (put it on ``LD_LIBRARY_PATH``). Raises FileNotFoundError when there is no C compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FileNotFoundError("no C compiler (gcc or cc) to build the TensorRT stub library")
    folder = dest / f"stub-{major}"
    if all((folder / f"lib{name}.so.{major}").is_file() for name in STUB_LIBRARIES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "stub.c"
    source.write_text(STUB_SYMBOLS, encoding="utf-8")
    for name in STUB_LIBRARIES:
        library = f"lib{name}.so.{major}"
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(folder / library), f"-Wl,-soname,{library}",
                        str(source)], check=True, capture_output=True, timeout=120)
    return folder


def install_target(requirements: list[str], dest: Path) -> Path:
    """``pip install --target dest --no-deps`` (for small pure packages such as tensorrt-stubs)."""
    if not dest.is_dir():
        pip("install", "--no-deps", "--quiet", "--target", str(dest), *requirements)
    return dest


def cuda_bindings_site(major: int, cache: Path) -> Path | None:
    """None when the installed ``cuda.bindings`` is of CUDA ``major`` (torch depends on it), else a folder with
    NVIDIA's ``cuda-bindings`` of that major installed from the registry (put it first on ``PYTHONPATH``)."""
    try:
        from importlib.metadata import version

        if int(version("cuda-bindings").split(".")[0]) == major:
            return None
    except Exception:  # not installed (PackageNotFoundError) or an unreadable version
        pass
    return install_target([f"cuda-bindings>={major},<{major + 1}", "cuda-pathfinder"], cache / f"cuda-bindings-{major}")
