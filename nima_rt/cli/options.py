"""Option groups shared by the commands that score: declared once, used by score, report and Ray.

Each alias is a typer ``Annotated`` option; a command lists the ones it takes and hands their values
to :func:`scorer_config` (or the Ray engine's config), so names, help, defaults and allowed values
cannot drift between commands. Allowed values come from :mod:`nima_rt.contract.choices`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from nima_rt.cli.common import fail, note
from nima_rt.contract.choices import DEVICES, SettingError
from nima_rt.io.decode import DEFAULT_DECODE_MEMORY, DEFAULT_MAX_PIXELS, DecodeOptions
from nima_rt.runtime.backends import BACKENDS
from nima_rt.runtime.scorer import Scorer, ScorerConfig
from nima_rt.train import load_contract_module


def one_of(allowed: Sequence[str]) -> Callable[[str | None], str | None]:
    """An option callback that turns a value outside ``allowed`` into a usage error (exit 2)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return check


# -- model ---------------------------------------------------------------------------------------
Models = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Bundled model name or model file (.onnx/.engine); NAME=FILE puts its scores "
                 "under NAME; repeat for several."),
]

# -- device / backend / precision ----------------------------------------------------------------
Device = Annotated[str, typer.Option("--device", help=" | ".join(DEVICES))]
BackendName = Annotated[
    str | None,
    typer.Option("--backend", help=f"Force one backend: {' | '.join(entry.name for entry in BACKENDS)} "
                 "(see `nima-rt info`)."),
]
Precision = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="Backend precision (default: the model's policy: fp32 unless its metadata records a passed fp16 "
        "check; docs/guide/runtime.md). int8: the bundled model's INT8 copy (CPU; docs/guide/export.md).",
    ),
]

# -- decode ---------------------------------------------------------------------------------------
GpuDecode = Annotated[
    str,
    typer.Option(
        "--gpu-decode",
        help="Decode JPEGs on the GPU (nvJPEG): auto (when a model runs on CUDA) | on | off.",
    ),
]
FullDecode = Annotated[
    bool,
    typer.Option("--full-decode",
                 help="Decode JPEGs in full instead of DCT-scaled (slower; see docs/guide/runtime.md)."),
]
Workers = Annotated[int | None, typer.Option("--workers", "-w", min=1, help="Decode threads (default: all cores).")]
MaxPixels = Annotated[
    int | None,
    typer.Option("--max-pixels", min=1, metavar="N",
                 help=f"Refuse (error row) an image that decodes to more than N pixels, after the JPEG draft "
                 f"(default {DEFAULT_MAX_PIXELS}, Pillow's limit; a 100 MP camera JPEG decodes at 1/8 scale).")
]
MemoryBudget = Annotated[
    int | None,
    typer.Option("--memory-budget", min=16, metavar="MB",
                 help=f"Decode memory in MB: what one image's decode may need (more is an error row) and all "
                 f"decodes in flight may hold (default {DEFAULT_DECODE_MEMORY >> 20}; docs/guide/runtime.md"
                 "#memory-budget).")
]

# -- batch / threads ------------------------------------------------------------------------------
BatchSize = Annotated[
    int | None,
    typer.Option("--batch-size", "-b", min=1, max=4096,
                 help="Images per inference call (default: 4 on CPU, per stream; 128 on GPU)."),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Inference threads on CPU in all (default: all cores, one per stream)."),
]
Streams = Annotated[
    int | None,
    typer.Option("--streams", min=1,
                 help="Batches run at the same time on CPU, sharing --threads "
                 "(default: one per thread; 1: one batch at a time on every thread).")
]

# -- reporting ------------------------------------------------------------------------------------
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No backend line and no summary on stderr.")]
RankColumn = Annotated[str | None, typer.Option("--sort-by", help="Model column to sort/rank by (default: the first).")]
Top = Annotated[int | None, typer.Option("--top", min=1, help="Keep only the K best (per group with --group-by).")]
GroupBy = Annotated[
    str | None,
    typer.Option("--group-by", help="Rank within listings and mark each one's best photo: parent (its folder), dir:N "
                 "(its first N folders, for nested listings), a manifest column (e.g. listing_id) or none "
                 "(docs/guide/ranking.md)."),
]
RankBy = Annotated[
    str | None,
    typer.Option("--rank-by", help="Rank rule over the models' means: 'aesthetic', '0.7*aesthetic+0.3*technical' or "
                 "'aesthetic if technical>=5' (photos meeting the condition first; docs/guide/ranking.md)."),
]


def decode_options(full_decode: bool = False, max_pixels: int | None = None,
                   memory_budget: int | None = None) -> DecodeOptions:
    """``--full-decode``, ``--max-pixels`` and ``--memory-budget`` (MB) as the library's DecodeOptions (both
    engines)."""
    return DecodeOptions(jpeg_draft=not full_decode, max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                         decode_memory=memory_budget << 20 if memory_budget else DEFAULT_DECODE_MEMORY)


def scorer_config(
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    streams: int | None = None,
    device: str = "auto",
    backend: str | None = None,
    precision: str | None = None,
    gpu_decode: str = "auto",
    full_decode: bool = False,
    max_pixels: int | None = None,
    memory_budget: int | None = None,
) -> ScorerConfig:
    """The library config for the shared options above (the one place they meet ``ScorerConfig``, which checks
    them once); a value it refuses is a usage error naming the option. ``memory_budget`` is in MB."""
    decode = decode_options(full_decode, max_pixels, memory_budget)
    try:
        return ScorerConfig(batch_size=batch_size, workers=workers, threads=threads, streams=streams, device=device,
                            backend=backend, precision=precision, gpu_decode=gpu_decode,
                            decode=decode, checkpoint_loader=load_contract_module)
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None


def open_scorer(models: list[str] | None, config: ScorerConfig, quiet: bool) -> Scorer:
    """Open the models (bundled default when none) or exit with one ``error:`` line; print the backends."""
    from nima_rt.contract.spec import ContractError
    from nima_rt.runtime.backends import BackendUnavailable

    try:
        scorer = Scorer(list(models) if models else [None], config)
    except (ContractError, BackendUnavailable, ValueError) as exc:
        fail(str(exc))
    if not quiet:
        for line in scorer.backend_summary:
            note(line)
    return scorer
