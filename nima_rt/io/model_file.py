"""Find a model (bundled name or file) and read its contract metadata."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nima_rt.contract.messages import one_line
from nima_rt.contract.onnx_meta import read_onnx_header
from nima_rt.contract.spec import (
    ENGINE_SIDECAR_KEY,
    METADATA_KEY,
    MODEL_NAME,
    MODEL_NAME_RULE,
    ContractError,
    EngineInfo,
    ModelMetadata,
)
from nima_rt.io.files import RefusedFile, open_regular, stream_sha256

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "models"
# The default job (no --model): the seed's, both bundled models; a run ranks by the default rank rule
# (nima_rt/runtime/ranking.py: DEFAULT_RANK_RULE) when it has both.
DEFAULT_MODELS = ("aesthetic", "technical")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
MAX_ONNX_BYTES = (2 << 30) - 1  # protobuf's limit: no ONNX file (without external data) is larger
MAX_SIDECAR_BYTES = 16 << 20  # an engine's <engine>.json: a few KB of metadata


class ModelNotFound(ContractError):
    """The model name or path does not lead to a model file."""


@dataclass(frozen=True)
class ModelFile:
    """A model file on disk with its parsed contract metadata."""

    path: Path
    metadata: ModelMetadata
    sha256: str
    format: str  # "onnx" or "engine"
    engine: EngineInfo | None = None  # engines only: what it was built for (from the sidecar)
    precision: str = "fp32"  # what the file computes in: its graph's (onnx_meta) or the engine's build


    @property
    def name(self) -> str:
        return self.metadata.name


def bundled_models() -> dict[str, Path]:
    """Names and paths of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {path.stem: path for path in sorted(BUNDLED_DIR.glob("*.onnx"))}


def default_models() -> list[str]:
    """The bundled models a run without ``--model`` scores with (:data:`DEFAULT_MODELS` this install ships)."""
    bundled = bundled_models()
    present = [name for name in DEFAULT_MODELS if name in bundled]
    if not present:
        raise ModelNotFound("no default model is bundled with this nima-rt install; pass --model FILE.onnx "
                            "(see docs/reference/models.md)")
    return present


def expand_models(specs: Sequence[str | os.PathLike[str] | None]) -> list[str | os.PathLike[str]]:
    """``specs`` with ``None`` (and an empty list) standing for the default models, in their place."""
    expanded: list[str | os.PathLike[str]] = []
    for spec in specs or [None]:
        expanded.extend(default_models() if spec is None else [spec])
    return expanded


def resolve_model_path(spec: str | os.PathLike[str]) -> Path:
    """A bundled model name, or a path to an ``.onnx`` / ``.engine`` file, to a path on disk."""
    bundled = bundled_models()
    if spec is None:
        raise ModelNotFound(f"no model named: None stands for the default models ({', '.join(DEFAULT_MODELS)}), "
                            "which nima_rt.io.model_file.expand_models lists")
    text = os.fspath(spec)
    if text in bundled:
        return bundled[text]
    path = Path(text)
    if path.is_dir():
        raise ModelNotFound(f"{text}: is a directory, expected a model file (.onnx or .engine)")
    if not path.exists():
        names = ", ".join(bundled) or "none"
        raise ModelNotFound(f"{text}: no such model file or bundled model name (bundled: {names})")
    return path


def split_model_spec(spec: str | os.PathLike[str] | None) -> tuple[str | None, str | os.PathLike[str] | None]:
    """``"NAME=FILE"`` -> ``("NAME", "FILE")``: the column the model's scores go under, and the model.

    Anything else (a bundled name, a path, None) has no name of its own: its metadata name is used. A
    path that exists is never split, even when it holds ``=``.
    """
    if not isinstance(spec, str) or "=" not in spec or spec in bundled_models() or Path(spec).exists():
        return None, spec
    name, _, model = spec.partition("=")
    if not MODEL_NAME.fullmatch(name) or not model:
        raise ModelNotFound(f"{spec}: expected NAME=FILE with NAME {MODEL_NAME_RULE} (e.g. ava=runs/ava.onnx)")
    return name, model


def column_names(models: Sequence[tuple[str | None, ModelFile]]) -> list[str]:
    """The column each model's scores go under, for ``(NAME or None, model file)`` pairs in run order.

    A ``NAME=FILE`` name is used as given; otherwise the model's metadata name, unless another model of
    the run has the same name (two copies of one model, a model and its INT8 copy): those are told apart
    by their file stems (``technical`` and ``technical.int8``; ``copy.onnx`` -> ``copy``). Two models that
    would still share a column (the same file twice, equal stems, a stem that is no column name) are a
    ModelNotFound asking for ``NAME=FILE``: a column is never numbered (``technical_2``) for nobody to read.
    """
    explicit = {name for name, _ in models if name}
    named = Counter(model.name for name, model in models if not name)
    columns = []
    for name, model in models:
        clash = not name and (named[model.name] > 1 or model.name in explicit)
        columns.append(name or (model.path.stem if clash else model.name))
    for column, count in Counter(columns).items():
        sharing = [str(model.path) for (_, model), c in zip(models, columns, strict=True) if c == column]
        if count > 1 or not MODEL_NAME.fullmatch(column):
            raise ModelNotFound(
                f"{', '.join(sharing)}: {len(sharing)} model(s) would score under the column {column!r}; "
                f"name each with NAME=FILE (e.g. --model mine={sharing[0]}), NAME {MODEL_NAME_RULE}"
            )
    return columns


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def read_engine_sidecar(path: Path) -> tuple[ModelMetadata, EngineInfo]:
    """The contract metadata of a TensorRT engine and its build info, from ``<engine>.json``."""
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        raise ContractError(f"{path}: TensorRT engine has no sidecar {sidecar.name} (written by nima-rt export)")
    try:
        with _open_model_part(sidecar, "an engine sidecar (JSON)", MAX_SIDECAR_BYTES) as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"{sidecar}: unreadable engine sidecar ({one_line(exc)})") from None
    if not isinstance(data, dict) or not isinstance(data.get(METADATA_KEY), dict):
        raise ContractError(f"{sidecar}: engine sidecar has no '{METADATA_KEY}' object")
    if not isinstance(data.get(ENGINE_SIDECAR_KEY), dict):
        raise ContractError(f"{sidecar}: engine sidecar has no '{ENGINE_SIDECAR_KEY}' object")
    metadata = ModelMetadata.from_dict(data[METADATA_KEY], str(sidecar))
    return metadata, EngineInfo.from_dict(data[ENGINE_SIDECAR_KEY], str(sidecar))


def _open_model_part(path: Path, expected: str, max_bytes: int | None) -> BinaryIO:
    """A model file (or sidecar) opened only when it is a regular file of a sane size: a FIFO, device or
    socket is refused before a byte is read (``--model /dev/zero`` must not read until memory runs out)."""
    try:
        return open_regular(path, str(path), expected, max_bytes)
    except RefusedFile as exc:
        raise ModelNotFound(str(exc)) from None


def load_model_file(spec: str | os.PathLike[str]) -> ModelFile:
    """Resolve ``spec`` and read its metadata; raise ContractError with the file named on failure.

    The file is opened once, only if it is a regular file (an ONNX file at most 2 GiB, protobuf's limit);
    its metadata and precision are read without loading the graph's tensors, then its sha256 from the same
    open file."""
    path = resolve_model_path(spec)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        with _open_model_part(path, "a TensorRT engine", None) as handle:
            metadata, engine = read_engine_sidecar(path)
            return ModelFile(path, metadata, stream_sha256(handle), "engine", engine, engine.precision)
    with _open_model_part(path, "an ONNX model file", MAX_ONNX_BYTES) as handle:
        header = read_onnx_header(handle, str(path))
        props = header.props
        if METADATA_KEY not in props:
            raise ContractError(
                f"{path}: ONNX model has no '{METADATA_KEY}' metadata; it was not exported by nima-rt "
                "(use `nima-rt export`)"
            )
        metadata = ModelMetadata.from_json(props[METADATA_KEY], str(path))
        handle.seek(0)
        return ModelFile(path, metadata, stream_sha256(handle), "onnx", None, header.precision)
