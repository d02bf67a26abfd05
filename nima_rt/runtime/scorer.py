"""The Python API: score files, Pillow images or arrays with one or several contract models.

    from nima_rt import Scorer
    with Scorer() as scorer:                      # the default models: aesthetic and technical
        for result in scorer.score_paths(["photos/"]):
            print(result.path, result.error or result.scores["aesthetic"].mean)

Files are decoded by a pool of threads into bounded batches that overlap inference; results come
back in input order, one at a time, so memory stays flat however many files there are.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from nima_rt.contract.choices import GPU_DECODE_MODES, PRECISIONS, SettingError, check_choice
from nima_rt.contract.messages import one_line
from nima_rt.contract.spec import check_output_values
from nima_rt.io.decode import (
    DecodeBudget,
    DecodeError,
    DecodeOptions,
    Preprocess,
    decode_bytes,
    decode_file,
    from_array,
    from_pil,
)
from nima_rt.io.inputs import InputItem, iter_inputs
from nima_rt.io.memory_inputs import (
    StreamReadError,
    check_image_item,
    encoded_inputs,
    image_inputs,
    is_file_like,
    labels,
    read_encoded,
    stream_name,
)
from nima_rt.io.model_file import ModelFile, column_names, expand_models, load_model_file, split_model_spec
from nima_rt.io.results import ScoreBatch, ScoreColumns, ScoreResult
from nima_rt.io.variants import int8_variant
from nima_rt.runtime.backends import (
    BACKENDS,
    Backend,
    BackendChoice,
    BackendOptions,
    check_backend_settings,
    choose_backend,
)
from nima_rt.runtime.backends.base import concurrent_runs
from nima_rt.runtime.cpu_plan import CpuPlan, plan_cpu
from nima_rt.runtime.gpu_decode import choose_gpu_decode
from nima_rt.runtime.precision import precision_note

ModelSpec = str | os.PathLike[str] | None
EncodedInput = bytes | bytearray | memoryview | BinaryIO  # or any object with a binary read()

# Measured on 2 cores (docs/reference/benchmarks.md, benchmarks/cpu_schedule.py): with one 1-thread stream per core,
# batch 4 used the least CPU per image and the least memory (the arena holds a batch's activations per
# stream: peak RSS ~200 MB at 4, ~350 MB at 8); GPUs want large batches.
DEFAULT_BATCH_SIZE = {"cpu": 4, "cuda": 128}


@dataclass(frozen=True)
class ScorerConfig:
    """How a Scorer runs. ``workers``/``threads`` default to the machine's cores."""

    batch_size: int | None = None  # None: DEFAULT_BATCH_SIZE (4 on CPU backends, 128 when every model runs on a GPU)
    workers: int | None = None  # decode threads
    threads: int | None = None  # inference threads in all (CPU backends); see nima_rt.runtime.cpu_plan.plan_cpu
    streams: int | None = None  # onnxruntime-cpu batches run at the same time (None: one per inference thread)
    prefetch_batches: int = 2  # decoded batches allowed in flight ahead of inference
    device: str = "auto"
    backend: str | None = None
    precision: str | None = None  # "fp32" | "fp16" (None: the model's policy, contract.default_gpu_precision)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    gpu_decode: str = "auto"  # JPEGs on the GPU (nvJPEG): "auto" when a model runs on CUDA, "on", "off"
    checkpoint_loader: Callable[[Path], Any] | None = None  # torch-cuda only: see BackendOptions

    def __post_init__(self) -> None:
        check_choice("gpu_decode", self.gpu_decode, GPU_DECODE_MODES, "--gpu-decode")
        check_backend_settings(self.device, self.backend)
        if self.precision is not None:
            check_choice("precision", self.precision, PRECISIONS, "--precision")
        if self.batch_size is not None and self.batch_size < 1:
            raise SettingError("--batch-size", f"batch size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise SettingError("--workers", f"workers must be >= 1, got {self.workers}")
        if self.prefetch_batches < 1:
            raise SettingError("prefetch_batches", f"prefetch_batches must be >= 1, got {self.prefetch_batches}")
        try:
            plan_cpu(None, self.workers, self.threads, self.streams)
        except ValueError as exc:  # a split the cores cannot make (--threads 1 --streams 2)
            raise SettingError("--streams", str(exc)) from None


@dataclass
class LoadedModel:
    """A model file, the column name its scores go under, and the backend running it."""

    column: str
    file: ModelFile
    choice: BackendChoice

    @property
    def backend(self) -> Backend:
        return self.choice.backend

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.for_model(self.file.metadata)


def _backend_device(name: str) -> str:
    return next((entry.device for entry in BACKENDS if entry.name == name), "cpu")


@dataclass
class DecodedInput:
    """One input after decoding: one array per ``Scorer.preprocess`` geometry, or the error."""

    path: str
    arrays: list[np.ndarray] | None
    error: str | None


class Scorer:
    """Scores images with one or more models sharing one decode.

    ``models``: bundled names or model files; ``None`` (default) stands for the default models, the bundled
    ``aesthetic`` and ``technical`` (the seed's job: rank with ``nima_rt.runtime.ranking.DEFAULT_RANK_RULE``);
    ``"NAME=FILE"`` puts a model's scores under NAME instead of its metadata name.
    Raises ContractError/ModelNotFound for a bad model and BackendUnavailable when nothing can run it.
    """

    def __init__(self, models: Sequence[ModelSpec] | ModelSpec = (None,), config: ScorerConfig | None = None):
        self.config = config or ScorerConfig()
        self._closed = False
        specs = expand_models(list(models) if isinstance(models, (list, tuple)) else [models])
        named = [split_model_spec(spec) for spec in specs]
        if self.config.precision == "int8":  # the bundled models' INT8 copies (nima_rt/io/variants.py)
            named = [(name, int8_variant(spec)) for name, spec in named]
        files = [load_model_file(spec) for _, spec in named]
        columns = column_names([(name, f) for (name, _), f in zip(named, files, strict=True)])
        self._budget = DecodeBudget(self.config.decode.decode_memory)  # decode buffers in flight, all threads
        self.cpu_plan: CpuPlan = plan_cpu(None, self.config.workers, self.config.threads, self.config.streams)
        options = BackendOptions(threads=self.cpu_plan.threads_per_stream, streams=self.cpu_plan.streams,
                                 max_batch=self.config.batch_size or 256,
                                 precision=None if self.config.precision == "int8" else self.config.precision,
                                 checkpoint_loader=self.config.checkpoint_loader)
        self.models: list[LoadedModel] = []
        try:  # a failure half way must not leave the backends opened so far holding GPU memory
            for column, model_file in zip(columns, files, strict=True):
                choice = choose_backend(model_file, self.config.device, self.config.backend, options)
                self.models.append(LoadedModel(column, model_file, choice))
            devices = {_backend_device(m.backend.name) for m in self.models}
            self.batch_size = self.config.batch_size or min(DEFAULT_BATCH_SIZE[d] for d in devices)
            # batches run at once: as many as the least concurrent backend takes (1 for GPU backends)
            self.streams = min(concurrent_runs(m.backend) for m in self.models)
            self.preprocess: list[Preprocess] = list(dict.fromkeys(m.preprocess for m in self.models))
            self._spec_index = [self.preprocess.index(m.preprocess) for m in self.models]
            self._gpu_decode = choose_gpu_decode(self.config.gpu_decode, self.preprocess, self.config.decode,
                                                 on_gpu="cuda" in devices)
        except Exception:
            self.close()
            raise

    # -- public API -----------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """The names the models' scores appear under, in order."""
        return [m.column for m in self.models]

    @property
    def backend_summary(self) -> list[str]:
        """One line per model naming the backend that runs it and what was skipped, then a ``cpu:`` line
        (the core split and batch) when a model runs on the CPU, then one ``decode:`` line when GPU
        decoding was in question: on, or auto with a model on a CUDA backend."""
        requested = None if self.config.precision == "int8" else self.config.precision
        notes = [precision_note(m.file, _backend_device(m.backend.name), requested) for m in self.models]
        lines = [f"{m.column}: {m.choice.summary}" + (f"; note: {note}" if note else "")
                 for m, note in zip(self.models, notes, strict=True)]
        if any(_backend_device(m.backend.name) == "cpu" for m in self.models):
            lines.append(f"{self.cpu_plan.summary}, batch {self.batch_size}")
        return lines + ([self._gpu_decode.summary] if self._gpu_decode.summary else [])

    def score_paths(self, paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> Iterator[ScoreResult]:
        """Score files and folders (walked recursively); yields one result per file, in order.
        A single path (``"photos/"``) is one path."""
        self._require_open()
        return self.score_items(iter_inputs(paths))

    def score_bytes(
        self, data: Iterable[EncodedInput] | EncodedInput, names: Iterable[str] | str | None = None
    ) -> Iterator[ScoreResult]:
        """Score encoded image files held in memory (uploads, object-store reads), decoded in this thread by
        the same decoder as files (JPEG draft, EXIF, colour rule, errors): equal bytes score as their file.

        ``data``: one input or an iterable of them; an input is ``bytes``/``bytearray``/``memoryview`` or a
        binary file object (``open(p, "rb")``, ``io.BytesIO``, an upload object), read from its current
        position. A row is named by ``names``, else by the file object's ``filename``/``name``, else
        ``<bytes N>``. TypeError for anything else (a path: use :meth:`score_paths`)."""
        self._require_open()
        items = encoded_inputs(data)
        given = labels(names, "score_bytes")
        return self._rows(self.decode_bytes(item, next(given), index) for index, item in enumerate(items))

    def decode_bytes(self, data: EncodedInput, name: str | None = None, index: int = 0) -> DecodedInput:
        """Decode one encoded image (bytes or a binary file object) as :meth:`score_bytes` does, for
        :meth:`score_decoded`; a decode failure is the result's ``error``, never an exception (``index``: the
        input's position, for its default name ``<bytes N>`` and for messages). Thread-safe:
        the decode-memory budget is shared by every thread decoding for this Scorer."""
        label = name or (stream_name(data) if is_file_like(data) else None) or f"<bytes {index}>"
        try:
            encoded = read_encoded(data, index, label)
            return DecodedInput(label, decode_bytes(encoded, self.preprocess, self.config.decode, self._budget,
                                                    label), None)
        except (DecodeError, StreamReadError) as exc:
            return DecodedInput(label, None, str(exc))

    def score_items(self, items: Iterable[InputItem]) -> Iterator[ScoreResult]:
        """Score already-expanded inputs (as from :func:`nima_rt.io.inputs.iter_inputs`), one row at a time."""
        for batch in self.score_item_batches(items):
            yield from batch.rows()

    def score_item_batches(self, items: Iterable[InputItem]) -> Iterator[ScoreBatch]:
        """:meth:`score_items` as columns: one :class:`ScoreBatch` per inference batch, in input order (what
        the writers and the Ray engine take without repacking)."""
        self._require_open()
        workers = self.cpu_plan.decode_workers
        window = self.batch_size * self.config.prefetch_batches
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nima-decode") as pool:
            gpu = self._gpu_decode.decoder
            if gpu is not None:  # nvJPEG batches; other formats and failures use the CPU decoder
                yield from self._batches(DecodedInput(*row) for row in gpu.iter_decoded(items, pool, self.batch_size))
            else:
                yield from self._batches(self._decoded(pool, items, window))

    def score_images(
        self, images: Iterable[Image.Image | np.ndarray] | Image.Image | np.ndarray,
        names: Iterable[str] | str | None = None,
    ) -> Iterator[ScoreResult]:
        """Score in-memory Pillow images or uint8 arrays ([H, W], [H, W, 3] RGB, [H, W, 4] RGBA).
        These are pixels already: no JPEG draft (use :meth:`score_bytes` for encoded files).

        ``images``: one image (a Pillow image, a 2-D or 3-D array) or an iterable of them; a 4-D array
        [N, H, W, C] is N images. An array of the wrong type or shape is an error row; a path, bytes or a
        file object is a TypeError naming the method that takes it."""
        self._require_open()
        items = image_inputs(images)
        given = labels(names, "score_images")

        def decoded() -> Iterator[DecodedInput]:
            for index, image in enumerate(items):
                label = next(given) or f"<image {index}>"
                check_image_item(image, index)
                try:
                    if isinstance(image, Image.Image):
                        arrays = from_pil(image, self.preprocess, self.config.decode)
                    else:
                        arrays = from_array(image, self.preprocess)
                    yield DecodedInput(label, arrays, None)
                except DecodeError as exc:
                    yield DecodedInput(label, None, str(exc))

        return self._rows(decoded())

    def score_decoded(self, items: Iterable[DecodedInput]) -> Iterator[ScoreBatch]:
        """Score inputs decoded elsewhere (e.g. by Ray decode tasks); same batching and error rows as files,
        as columns (:class:`ScoreBatch`)."""
        self._require_open()
        return self._batches(items)

    def close(self) -> None:
        """Release every backend; scoring afterwards raises RuntimeError."""
        for model in self.models:
            model.backend.close()
        self.models = []
        self._closed = True

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Scorer is closed: create a new one (or score inside its `with` block)")

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pipeline -------------------------------------------------------------------------------

    def _decode_one(self, location: str, label: str) -> list[np.ndarray]:
        return decode_file(location, self.preprocess, self.config.decode, self._budget, label)

    def _decoded(self, pool: ThreadPoolExecutor, items: Iterable[InputItem], window: int) -> Iterator[DecodedInput]:
        """Decode in the pool with at most ``window`` files in flight; yield in input order."""
        in_flight: deque[tuple[str, Future[list[np.ndarray]] | None, str | None]] = deque()

        def take() -> DecodedInput:
            path, future, error = in_flight.popleft()
            if future is None:
                return DecodedInput(path, None, error)
            try:
                return DecodedInput(path, future.result(), None)
            except DecodeError as exc:
                return DecodedInput(path, None, str(exc))
            except Exception as exc:  # a decoder bug must not end the run: the row says what happened
                reason = one_line(exc)
                return DecodedInput(path, None, f"{path}: unexpected {type(exc).__name__} ({reason})")

        for item in items:
            if item.error is not None:
                in_flight.append((item.path, None, item.error))
            else:
                in_flight.append((item.path, pool.submit(self._decode_one, item.location, item.path), None))
            if len(in_flight) >= window:
                yield take()
        while in_flight:
            yield take()

    def _chunks(self, pending: Iterable[DecodedInput]) -> Iterator[list[DecodedInput]]:
        """Decoded inputs in groups of ``batch_size`` decoded images, failed inputs riding along; a group
        also ends once it holds ``batch_size`` failed inputs, so error rows leave as their files fail (a run of
        200,000 unreadable files writes its rows as it goes, instead of holding them all for a batch of
        images that never comes) and never more than a batch of them is held."""
        chunk: list[DecodedInput] = []
        ready = 0
        for item in pending:
            chunk.append(item)
            ready += item.arrays is not None
            if ready >= self.batch_size or len(chunk) - ready >= self.batch_size:
                yield chunk
                chunk, ready = [], 0
        if chunk:
            yield chunk

    def _rows(self, pending: Iterable[DecodedInput]) -> Iterator[ScoreResult]:
        for batch in self._batches(pending):
            yield from batch.rows()

    def _batches(self, pending: Iterable[DecodedInput]) -> Iterator[ScoreBatch]:
        """Group decoded inputs into batches, run every model, yield one :class:`ScoreBatch` each, in order.

        With ``streams`` > 1 (onnxruntime-cpu with several streams) up to ``streams`` batches run at once
        in an inference pool while this thread gathers the next one; batches still come out in input order
        and at most ``streams`` batches wait for inference beyond the decode window."""
        if self.streams == 1:
            for chunk in self._chunks(pending):
                yield self._infer(chunk)
            return
        with ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="nima-infer") as pool:
            in_flight: deque[Future[ScoreBatch]] = deque()
            for chunk in self._chunks(pending):
                in_flight.append(pool.submit(self._infer, chunk))
                if len(in_flight) >= self.streams:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def _infer(self, chunk: list[DecodedInput]) -> ScoreBatch:
        """Run every model on the decoded inputs of ``chunk``; failed inputs (and, when inference itself
        fails, the whole chunk) become error rows, and so does a row a model scored NaN or out of range
        (``check_output_values``; the error names the model)."""
        errors = [item.error if item.arrays is None else None for item in chunk]
        good = [row for row, item in enumerate(chunk) if item.arrays is not None]
        scores = {model.column: ScoreColumns.empty(len(chunk)) for model in self.models}
        if good:
            try:
                for model, spec_index in zip(self.models, self._spec_index, strict=True):
                    batch = np.stack([chunk[row].arrays[spec_index] for row in good])  # type: ignore[index]
                    out = model.backend.run(batch)
                    target = scores[model.column]
                    target.mean[good], target.std[good], target.dist[good] = out.mean, out.std, out.dist
                    for row, fault in zip(good, check_output_values(out.dist, out.mean, out.std), strict=True):
                        if fault is not None and errors[row] is None:
                            errors[row] = f"{chunk[row].path}: model {model.column}: {fault}"
            except Exception as exc:  # keep going: this batch's rows carry the reason
                reason = f"inference failed ({type(exc).__name__}: {one_line(exc)})"
                for row in good:
                    errors[row] = f"{chunk[row].path}: {reason}"
                scores = {model.column: ScoreColumns.empty(len(chunk)) for model in self.models}
        faulty = [row for row in good if errors[row] is not None]
        for columns in scores.values() if faulty else ():  # failed rows hold NaN, as every failed row does
            columns.mean[faulty], columns.std[faulty], columns.dist[faulty] = np.nan, np.nan, np.nan
        return ScoreBatch([item.path for item in chunk], errors, scores)
