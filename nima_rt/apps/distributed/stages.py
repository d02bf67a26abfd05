"""The two Ray Data stages: decode tasks (CPU) and the scoring actor (holds the Backend).

Both work on numpy batches (dicts of columns). Between them a row carries ``index``, ``shard``,
``path``, ``error`` ("" when none) and one ``image_<k>`` uint8 [S, S, 3] column per distinct model
input geometry (an error row carries zeros there, never scored). The actor emits ``index``,
``shard``, ``path``, ``error`` and per model ``<column>_mean``, ``<column>_std`` (float32) and
``<column>_dist`` (float32 [10]); error rows hold NaN.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nima_rt.apps.distributed.sources import SourceReader
from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import NUM_BINS, ContractError
from nima_rt.io.decode import DecodeBudget, DecodeError, DecodeOptions, Preprocess, decode_file
from nima_rt.io.files import file_sha256
from nima_rt.io.model_file import load_model_file, resolve_model_path, sidecar_path
from nima_rt.io.results import ScoreBatch, ScoreColumns
from nima_rt.runtime.backends import BackendUnavailable
from nima_rt.runtime.scorer import DecodedInput, Scorer, ScorerConfig

NO_ERROR = ""  # Arrow columns of all-None objects lose their type; "" means "no error" between stages


def image_column(index: int) -> str:
    return f"image_{index}"


def to_columns(batch: ScoreBatch) -> dict[str, np.ndarray]:
    """A scored batch as the numpy columns Ray Data carries (``error`` "" when none)."""
    out = {"path": np.array(batch.paths, dtype=object),
           "error": np.array([NO_ERROR if e is None else e for e in batch.errors], dtype=object)}
    for column, scores in batch.scores.items():
        out[f"{column}_mean"], out[f"{column}_std"], out[f"{column}_dist"] = scores.mean, scores.std, scores.dist
    return out


def from_columns(columns: dict[str, np.ndarray], models: Sequence[str]) -> ScoreBatch:
    """:func:`to_columns` undone: the arrays are used as they are, not copied row by row."""
    return ScoreBatch(
        [str(p) for p in columns["path"]], [None if e == NO_ERROR else str(e) for e in columns["error"]],
        {m: ScoreColumns(np.asarray(columns[f"{m}_mean"], np.float32), np.asarray(columns[f"{m}_std"], np.float32),
                         _matrix(columns[f"{m}_dist"])) for m in models})


def _matrix(column: np.ndarray) -> np.ndarray:
    """A [n, 10] float32 array from a Ray column (a 2-D array, or an object array of rows)."""
    rows = np.stack(list(column)) if column.dtype == object else column
    return np.asarray(rows, np.float32).reshape(-1, NUM_BINS)


class _NamedBytes(io.BytesIO):
    """Bytes that look like an open file named after the input, so decode errors name the path."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def decode_bytes(data: bytes, label: str, specs: Sequence[Preprocess], options: DecodeOptions) -> list[np.ndarray]:
    """The runtime's :func:`nima_rt.io.decode.decode_file` on a file's bytes (same draft, EXIF, colour rule,
    pixel limit and memory budget: ``options.decode_memory`` for this decode)."""
    return decode_file(_NamedBytes(data, label), list(specs), options, DecodeBudget(options.decode_memory))


@functools.lru_cache(maxsize=1)
def _worker_reader() -> SourceReader:
    """One reader per worker process, so object-store clients (S3, GCS) are made once, not per batch."""
    return SourceReader()


def decode_batch(
    batch: dict[str, np.ndarray], specs: Sequence[Preprocess], options: DecodeOptions = DecodeOptions()
) -> dict[str, np.ndarray]:
    """Ray Data task: read and decode each row's ``source``; failures become the row's ``error``."""
    from nima_rt.apps.distributed.sources import SourceError

    reader = _worker_reader()
    paths = [str(p) for p in batch["path"]]
    count = len(paths)
    errors = [NO_ERROR if e is None else str(e) for e in batch["error"]]
    images = [np.zeros((count, s.size, s.size, 3), dtype=np.uint8) for s in specs]
    for row, (path, source) in enumerate(zip(paths, batch["source"], strict=True)):
        if errors[row]:
            continue
        try:
            location = path if source is None else str(source)
            arrays = decode_bytes(reader.read(location, path), path, specs, options)
        except (SourceError, DecodeError) as exc:
            errors[row] = str(exc)
            continue
        except Exception as exc:  # a decoder bug must not end the job: the row says what happened
            errors[row] = f"{path}: unexpected {type(exc).__name__} ({one_line(exc)})"
            continue
        for spec_index, array in enumerate(arrays):
            images[spec_index][row] = array
    out = {
        "index": np.asarray(batch["index"], dtype=np.int64),
        "shard": np.asarray(batch["shard"], dtype=np.int64),
        "path": np.array(paths, dtype=object),
        "error": np.array(errors, dtype=object),
    }
    for spec_index, stacked in enumerate(images):
        out[image_column(spec_index)] = stacked
    return out


@dataclass(frozen=True)
class ModelPayload:
    """A model file's bytes (and a TensorRT engine's sidecar), shipped to actors on any node."""

    file_name: str
    data: bytes
    sha256: str
    sidecar: bytes | None = None
    origin: str = ""  # the path on the driver, named in actors' error messages

    @classmethod
    def load(cls, spec: str | None) -> ModelPayload:
        path = resolve_model_path(spec)
        sidecar = sidecar_path(path)
        return cls(path.name, path.read_bytes(), file_sha256(path),
                   sidecar.read_bytes() if sidecar.is_file() else None, str(path))

    def write(self, folder: str) -> str:
        path = os.path.join(folder, self.file_name)
        with open(path, "wb") as handle:
            handle.write(self.data)
        if self.sidecar is not None:
            with open(path + ".json", "wb") as handle:
                handle.write(self.sidecar)
        return path


class ScoreActor:
    """Ray Data callable class: one :class:`~nima_rt.runtime.scorer.Scorer` (the CLI's backends) per actor."""

    def __init__(self, models: Sequence[ModelPayload], config: ScorerConfig) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="nima-rt-models-")
        paths = []
        for number, payload in enumerate(models):
            folder = os.path.join(self._folder.name, str(number))  # same file names must not collide
            os.makedirs(folder)
            paths.append(payload.write(folder))
        for path, payload in zip(paths, models, strict=True):
            if load_model_file(path).sha256 != payload.sha256:
                raise RuntimeError(f"{payload.file_name}: model bytes changed in transit (sha256 mismatch)")
        try:
            self.scorer = Scorer(paths, config)
        except (ContractError, BackendUnavailable, ValueError) as exc:  # name the user's file, not the copy
            message = str(exc)
            for path, payload in zip(paths, models, strict=True):
                message = message.replace(path, payload.origin or payload.file_name)
            raise type(exc)(message) from None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        errors = [str(e) for e in batch["error"]]
        images = [batch[image_column(k)] for k in range(len(self.scorer.preprocess))]
        pending = [
            DecodedInput(path, None, error)
            if error
            else DecodedInput(path, [images[k][row] for k in range(len(images))], None)
            for row, (path, error) in enumerate(zip(paths, errors, strict=True))
        ]
        # The single-machine runner's own batching and inference: same scores, same error rows, as columns.
        scored = ScoreBatch.concat(list(self.scorer.score_decoded(pending)), self.scorer.columns)
        return {"index": np.asarray(batch["index"], dtype=np.int64),
                "shard": np.asarray(batch["shard"], dtype=np.int64), **to_columns(scored)}

    def __del__(self) -> None:
        scorer = getattr(self, "scorer", None)
        if scorer is not None:
            scorer.close()
