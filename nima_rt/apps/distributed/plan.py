"""Settings of a distributed run and how they map onto a Ray cluster's CPUs and GPUs.

Sizing rule (measured, docs/guide/scale.md): Ray schedules by declared resources, so an actor pool that
declares every CPU starves the decode tasks and the job hangs (two 1-CPU actors on 2 cores did,
> 9 min). The plan therefore always leaves CPUs for decoding and refuses one that would not.

Ray Data fuses a task map into the next actor map when both declare the same resources, which
would run every decode serially inside the few scoring actors. The actors declare memory
(:data:`ACTOR_MEMORY`) and the decode tasks do not, so the two stages stay apart: decode tasks
spread over every free CPU of the cluster and the actors only run the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nima_rt.io.decode import DecodeOptions
from nima_rt.runtime.backends import check_backend_settings
from nima_rt.runtime.rank_output import RankOptions
from nima_rt.runtime.scorer import DEFAULT_BATCH_SIZE

ACTOR_MEMORY = 1 << 30  # bytes each scoring actor declares: a model session, batches, the Python worker


class PlanError(ValueError):
    """The requested resources do not fit the cluster; ``str()`` says what to change."""


@dataclass(frozen=True)
class RayScoreConfig:
    """A distributed scoring run. ``None`` sizes are chosen by :func:`plan_resources`."""

    output: str  # a folder (local or URI) that receives part-NNNNNN.parquet shards
    models: tuple[str | None, ...] = (None,)  # bundled names or .onnx/.engine files; None = default
    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:10001": join a cluster
    shard_size: int = 1000  # inputs per output file: the unit of resume
    batch_size: int | None = None  # images per inference call in an actor (default: the Scorer's, per device)
    decode_batch: int = 16  # files per decode task call
    device: str = "auto"
    backend: str | None = None
    threads: int | None = None  # inference threads per actor (CPU backends)
    actors: int | None = None  # scoring actors (default: one per GPU, else about a sixth of the CPUs)
    actor_cpus: float | None = None  # CPUs each actor declares
    decode_cpus: float | None = None  # CPUs each decode task declares
    ranking: RankOptions | None = None  # rank the complete folder into OUT/_ranked.parquet (output/format ignored)
    ray_logs: bool = False  # let Ray's own log lines reach stderr (they always go to Ray's session logs)
    # How the decode tasks decode: --full-decode, --max-pixels and --memory-budget (each decode task process
    # holds at most one decode at a time, so the budget bounds each one's decode buffers)
    decode: DecodeOptions = field(default_factory=DecodeOptions)

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard size must be >= 1, got {self.shard_size}")
        if (self.batch_size is not None and self.batch_size < 1) or self.decode_batch < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_size} and {self.decode_batch}")
        check_backend_settings(self.device, self.backend)
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors}")
        for name in ("actor_cpus", "decode_cpus"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class ResourcePlan:
    """What the pipeline asks Ray for."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    threads: int  # inference threads inside each actor
    batch_size: int  # images per inference call
    decode_cpus: float
    actor_memory: int  # bytes; declared so Ray places actors where memory is free
    device: str  # passed to the actors' Scorer: "cuda" when actors hold GPUs, else "cpu"

    def describe(self) -> str:
        gpu = f", {self.actor_gpus:g} GPU" if self.actor_gpus else ""
        return (
            f"{self.actors} scoring actor(s) x ({self.actor_cpus:g} CPU{gpu}, {self.threads} thread(s), "
            f"batch {self.batch_size}, device {self.device}); decode tasks x {self.decode_cpus:g} CPU"
        )


def plan_resources(cpus: float, gpus: float, config: RayScoreConfig) -> ResourcePlan:
    """Size the actor pool and the decode tasks for a cluster with ``cpus`` CPUs and ``gpus`` GPUs."""
    if cpus <= 0:
        raise PlanError("the Ray cluster reports no CPUs; decode tasks cannot run")
    use_gpu = config.device in ("auto", "cuda") and gpus >= 1
    if config.device == "cuda" and not use_gpu:
        raise PlanError(f"--device cuda: the Ray cluster has {gpus:g} GPUs")
    small = cpus <= 4
    decode_cpus = config.decode_cpus or (0.5 if small else 1.0)
    if use_gpu:
        actors = config.actors or int(gpus)
        if actors > gpus:
            raise PlanError(f"{actors} GPU actors asked for, the Ray cluster has {gpus:g} GPUs")
        actor_cpus = config.actor_cpus or (0.5 if small else 1.0)
        threads = config.threads or 1
        actor_gpus = 1.0
        device = "cuda" if config.device == "cuda" else "auto"
    else:
        # CPU inference: about a third of the cores infer, two threads per actor. That fits a model whose
        # inference costs about what its decode does; the bundled EfficientNet-Lite0 spends 71% of its CPU time
        # inferring (docs/guide/scale.md), so for it give the actors more cores (actors=, actor_cpus=).
        actors = config.actors or max(1, int(cpus // 6))
        actor_cpus = config.actor_cpus or (min(2.0, cpus / 4) if small else 2.0)
        threads = config.threads or max(1, round(actor_cpus))
        actor_gpus = 0.0
        device = "cpu"
    needed = actors * actor_cpus + decode_cpus
    if needed > cpus:
        raise PlanError(
            f"{actors} actor(s) x {actor_cpus:g} CPU plus one {decode_cpus:g}-CPU decode task need {needed:g} "
            f"CPUs, the Ray cluster has {cpus:g}: actors holding every CPU starve decoding (use fewer actors "
            "or fractional actor CPUs)"
        )
    batch_size = config.batch_size or DEFAULT_BATCH_SIZE["cuda" if use_gpu else "cpu"]
    return ResourcePlan(actors, actor_cpus, actor_gpus, threads, batch_size, decode_cpus, ACTOR_MEMORY, device)
