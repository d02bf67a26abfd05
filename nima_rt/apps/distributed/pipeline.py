"""Run a distributed scoring job: inputs -> shards -> Ray Data decode + actor pool -> Parquet shards.

The driver lists the inputs, skips the shards whose part file already exists, streams the scored
rows back (a few hundred bytes each) and writes each shard atomically as soon as all its rows have
arrived, with the manifest columns it carries. Killing the driver at any moment loses only the shards
not yet written. A ranked run (``config.ranking``) then ranks the complete folder into
``OUT/_ranked.parquet`` with the same rank step as ``nima-rt rank`` (:mod:`nima_rt.runtime.rank_output`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from nima_rt.apps.distributed.inputs import InputError, InputList, collect_inputs
from nima_rt.apps.distributed.plan import RayScoreConfig, ResourcePlan, plan_resources
from nima_rt.apps.distributed.shards import RANKED_FILE, ModelRecord, RunRecord, ShardStore
from nima_rt.apps.distributed.stages import ModelPayload, ScoreActor, decode_batch, from_columns
from nima_rt.io.decode import Preprocess
from nima_rt.io.manifests import ManifestError, check_model_names
from nima_rt.io.model_file import column_names, expand_models, load_model_file
from nima_rt.io.results import ScoreBatch
from nima_rt.runtime.backends import probe_backends
from nima_rt.runtime.rank_output import RankSummary, rank_output
from nima_rt.runtime.scorer import ScorerConfig
from nima_rt.train import load_contract_module

Log = Callable[[str], None]
BACKEND_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"  # Ray's C++ core worker log level


class IncompleteRun(RuntimeError):
    """The dataset ended before every pending shard was complete; a re-run resumes."""


@dataclass(frozen=True)
class ShardDone:
    """A shard that has just been written."""

    shard: int
    rows: int
    failed: int
    location: str


@dataclass(frozen=True)
class RunSummary:
    """What a run did. ``rows``/``failed`` count only the shards written by this run."""

    output: str
    inputs: int
    shards: int
    skipped_shards: int  # complete before this run started
    written_shards: int
    rows: int
    failed: int
    elapsed_s: float
    plan: ResourcePlan | None  # None when nothing was left to score (Ray was not started)
    stats: str = ""  # Ray Data's per-operator execution statistics of this run
    ranked: RankSummary | None = None  # the rank step (config.ranking), written to ranked.output


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"--engine ray needs the 'ray' extra ({exc.name or 'ray'} is not installed): pip install 'nima-rt[ray]'"
        ) from None


def _pending_tables(inputs: InputList, shard_size: int, shards: Sequence[int]) -> list:
    """One Arrow table (one Ray block) per pending shard, with each row's global index and shard."""
    import pyarrow as pa

    tables = []
    for shard in shards:
        start = shard * shard_size
        part = inputs.table.select(["path", "source", "error"]).slice(start, shard_size)
        index = pa.array(np.arange(start, start + part.num_rows, dtype=np.int64))
        shard_column = pa.array(np.full(part.num_rows, shard, dtype=np.int64))
        tables.append(part.append_column("index", index).append_column("shard", shard_column))
    return tables


def _connect(address: str | None, ray_logs: bool) -> bool:
    """Join (or start) Ray unless this process already did; True when this call started it. Without
    ``ray_logs`` Ray's own lines (its warnings, the workers' output, Ray Data's progress notes, the core
    worker's log) stay out of the user's stderr; they still go to Ray's session log files."""
    import ray

    if ray.is_initialized():
        return False
    level = logging.WARNING if ray_logs else logging.ERROR
    quiet = {} if ray_logs else {"log_to_driver": False}
    with _quiet_start(ray_logs):
        if address is None:  # Ray's default: RAY_ADDRESS (set by `ray job submit`), a `ray start` cluster, else local
            ray.init(include_dashboard=False, logging_level=level, **quiet)
        else:  # "auto", "HOST:6379" or "ray://HOST:10001" (Ray Client): the cluster's own settings apply
            ray.init(address=address, logging_level=level, **quiet)
    return True


@contextmanager
def _quiet_start(ray_logs: bool) -> Iterator[None]:
    """Unless ``ray_logs``: the C++ core worker that ``ray.init`` starts in this process logs only fatal errors
    (``RAY_BACKEND_LOG_LEVEL``, read once, when it starts; a user's own setting wins), and what Ray prints on
    stderr while it starts (its banner, warnings, that log-level line) goes to /dev/null. Failures still
    surface: as the exception ``ray.init`` raises."""
    if ray_logs:
        yield
        return
    chosen = os.environ.get(BACKEND_LOG_LEVEL)
    if chosen is None:
        os.environ[BACKEND_LOG_LEVEL] = "fatal"
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if chosen is None:
            os.environ.pop(BACKEND_LOG_LEVEL, None)


@contextmanager
def _quiet_loggers(ray_logs: bool) -> Iterator[None]:
    """Ray's and Ray Data's Python loggers at ERROR for the run (unless ``ray_logs``), restored after."""
    if ray_logs:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data", "ray.util")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def score_with_ray(
    given: Sequence[str],
    config: RayScoreConfig,
    on_shard: Callable[[ShardDone], None] | None = None,
    log: Log | None = None,
) -> RunSummary:
    """Score folders, files and manifests on a Ray cluster into ``config.output`` (a folder of shards).

    Re-running with the same inputs, shard size and models resumes: complete shards are skipped.
    ``on_shard`` is called after each shard is written (an exception there stops the run, as a
    crash would; the shards written so far stay). Raises ContractError/ModelNotFound for a bad
    model, InputError for a bad manifest, OutputError for an unusable output folder, PlanError when
    the cluster cannot hold the actor pool, BackendUnavailable when actors cannot open the model.
    """
    say = log or (lambda message: None)
    started = time.perf_counter()
    files = [load_model_file(spec) for spec in expand_models(config.models)]
    if config.backend is not None:  # a misspelt --backend, or one that --device excludes, fails before Ray starts
        for model_file in files:
            probe_backends(model_file, config.device, config.backend)
    columns = column_names([(None, f) for f in files])
    records = tuple(ModelRecord(column, f.name, f.sha256) for column, f in zip(columns, files, strict=True))
    specs = list(dict.fromkeys(Preprocess.for_model(f.metadata) for f in files))
    inputs = collect_inputs(given)
    try:
        check_model_names(inputs.carried, columns)
    except ManifestError as exc:
        raise InputError(str(exc)) from None
    if config.ranking is not None:  # a rule or grouping the run cannot serve fails before anything is scored
        config.ranking.check(columns, inputs.carried, "the manifests given" if inputs.carried else "the inputs")
    record = RunRecord(len(inputs), inputs.fingerprint, config.shard_size, records, carried=inputs.carried)
    store = ShardStore(config.output)
    done = store.open_run(record)
    pending = [shard for shard in range(record.shards) if shard not in done]
    if done:
        say(f"resuming {config.output}: {len(done)} of {record.shards} shards already complete")
    if not pending:
        summary = RunSummary(config.output, len(inputs), record.shards, len(done), 0, 0, 0,
                             time.perf_counter() - started, None)
        return _with_ranking(summary, store, config, say)

    _require_ray()
    import ray
    import ray.data

    with _quiet_loggers(config.ray_logs):
        owns_ray = _connect(config.address, config.ray_logs)
        context = ray.data.DataContext.get_current()
        saved = (context.enable_progress_bars, context.print_on_execution_start)
        context.enable_progress_bars, context.print_on_execution_start = False, False
        try:
            resources = ray.cluster_resources()
            plan = plan_resources(float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), config)
            say(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {plan.describe()}")
            dataset = _scoring_dataset(inputs, pending, specs, config, plan)
            collector = _ShardCollector(store, records, columns, pending, inputs, config.shard_size, say, on_shard)
            batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
            try:
                for batch in batches:
                    collector.add(batch["shard"], batch["index"], from_columns(batch, columns))
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
            collector.check_complete()
            summary = RunSummary(config.output, len(inputs), record.shards, len(done), collector.written,
                                 collector.rows, collector.failed, time.perf_counter() - started, plan,
                                 dataset.stats())
        finally:
            context.enable_progress_bars, context.print_on_execution_start = saved
            if owns_ray:
                ray.shutdown()
    return _with_ranking(summary, store, config, say)


def _with_ranking(summary: RunSummary, store: ShardStore, config: RayScoreConfig, say: Log) -> RunSummary:
    """Rank the complete folder into ``OUT/_ranked.parquet`` when the run asks for it (after Ray is shut down:
    ranking runs on the driver and reads the shards like ``nima-rt rank OUT/`` does)."""
    if config.ranking is None:
        return summary
    target = store.location(RANKED_FILE)
    say(f"ranking {config.output} into {target}")
    ranked = rank_output([config.output], dataclasses.replace(config.ranking, output=target, format="parquet",
                                                              overwrite=True))  # the run's own, re-ranked
    return dataclasses.replace(summary, ranked=ranked)


def _scoring_dataset(inputs: InputList, pending: list[int], specs: list[Preprocess], config: RayScoreConfig,
                     plan: ResourcePlan) -> Any:
    """The Ray Data pipeline: pending shards' paths -> decode tasks on CPUs -> a pool of scoring actors."""
    import ray.data

    payloads = [ModelPayload.load(spec) for spec in expand_models(config.models)]
    scorer_config = ScorerConfig(batch_size=plan.batch_size, workers=1, threads=plan.threads,
                                 device=plan.device, backend=config.backend,
                                 gpu_decode="off",  # actors get decoded arrays; decode tasks run on CPUs
                                 checkpoint_loader=load_contract_module)
    dataset = ray.data.from_arrow(_pending_tables(inputs, config.shard_size, pending))
    dataset = dataset.map_batches(
        decode_batch, fn_kwargs={"specs": specs, "options": config.decode}, batch_size=config.decode_batch,
        batch_format="numpy",
        num_cpus=plan.decode_cpus,
    )
    return dataset.map_batches(
        ScoreActor, fn_constructor_kwargs={"models": payloads, "config": scorer_config},
        batch_size=plan.batch_size, batch_format="numpy", num_cpus=plan.actor_cpus,
        num_gpus=plan.actor_gpus or None, memory=plan.actor_memory,
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
    )  # its own memory request also keeps Ray Data from fusing decode into the actors (see plan.py)


class _ShardCollector:
    """Gathers scored rows arriving in any order into shards and writes each one, in input order, once complete.

    Rows stay in the columns they arrived in (:class:`ScoreBatch` pieces); a retried task's rows cannot count
    twice (an index already held is dropped)."""

    def __init__(self, store: ShardStore, records: tuple[ModelRecord, ...], columns: list[str], pending: list[int],
                 inputs: InputList, shard_size: int, say: Log, on_shard: Callable[[ShardDone], None] | None) -> None:
        self.store, self.records, self.pending, self.say, self.on_shard = store, records, pending, say, on_shard
        self.columns, self.shard_size = columns, shard_size
        self.carried = inputs.table.select(list(inputs.carried))  # the manifests' columns, written with each shard
        self.expected = {s: min(shard_size, len(inputs) - s * shard_size) for s in pending}
        self.pieces: dict[int, list[tuple[np.ndarray, ScoreBatch]]] = {}  # shard -> (indices, rows) as they came
        self.held: dict[int, set[int]] = {}  # shard -> indices held
        self.finished: set[int] = set()
        self.rows = self.failed = self.written = 0
        self.last_note = time.perf_counter()

    def add(self, shards: np.ndarray, indices: np.ndarray, batch: ScoreBatch) -> None:
        shards, indices = np.asarray(shards, np.int64), np.asarray(indices, np.int64)
        for shard in np.unique(shards).tolist():
            if shard in self.finished:
                continue
            held = self.held.setdefault(shard, set())
            rows = [row for row in np.flatnonzero(shards == shard).tolist() if int(indices[row]) not in held]
            if not rows:
                continue
            held.update(int(indices[row]) for row in rows)
            self.pieces.setdefault(shard, []).append((indices[rows], batch.take(rows)))
            if len(held) == self.expected[shard]:
                self._write(shard)

    def _write(self, shard: int) -> None:
        pieces = self.pieces.pop(shard)
        self.held.pop(shard)
        indices = np.concatenate([index for index, _ in pieces])
        ordered = ScoreBatch.concat([rows for _, rows in pieces], self.columns).take(np.argsort(indices, kind="stable"))
        carried = self.carried.slice(shard * self.shard_size, len(ordered))
        values = {name: carried.column(name).to_pylist() for name in carried.column_names}
        location = self.store.write_shard(shard, ordered, self.records, values)
        self.finished.add(shard)
        bad = ordered.failed
        self.rows, self.failed, self.written = self.rows + len(ordered), self.failed + bad, self.written + 1
        if time.perf_counter() - self.last_note > 10 or self.written == len(self.pending):
            self.last_note = time.perf_counter()
            self.say(f"{self.written}/{len(self.pending)} shards written ({self.rows} rows, {self.failed} failed)")
        if self.on_shard is not None:
            self.on_shard(ShardDone(shard, len(ordered), bad, location))

    def check_complete(self) -> None:
        if self.pieces or self.written != len(self.pending):
            missing = sorted(set(self.pending) - self.finished)
            raise IncompleteRun(f"Ray Data returned incomplete shards {missing[:10]}; run again to resume")
