"""Scale-out scoring with Ray Data (extra ``ray``): ``nima-rt score ... --engine ray``.

The pipeline (docs/guide/scale.md)::

    inputs (folder walk or CSV/Parquet manifest with a ``path`` column)
      -> shards of ``shard_size`` inputs (the unit of resume)
      -> Ray Data: CPU decode tasks (the runtime's decode on each file's bytes; bad files -> error rows)
      -> map_batches into :class:`~nima_rt.apps.distributed.stages.ScoreActor` (an actor pool holding the
         same Scorer/Backend as the single-machine runner; one actor per GPU, fractional CPUs otherwise)
      -> one Parquet file per shard, written atomically (temp name + rename); a re-run skips
         every shard whose file exists.

Importing this package does not import ray; :func:`score_with_ray` does.
"""

from __future__ import annotations

from nima_rt.apps.distributed.inputs import InputError, InputList, collect_inputs, read_manifest
from nima_rt.apps.distributed.pipeline import IncompleteRun, RunSummary, ShardDone, score_with_ray
from nima_rt.apps.distributed.plan import RayScoreConfig, ResourcePlan, plan_resources
from nima_rt.apps.distributed.shards import RunRecord, ShardStore, read_output

__all__ = [
    "IncompleteRun",
    "InputError",
    "InputList",
    "RayScoreConfig",
    "ResourcePlan",
    "RunRecord",
    "RunSummary",
    "ShardDone",
    "ShardStore",
    "collect_inputs",
    "plan_resources",
    "read_manifest",
    "read_output",
    "score_with_ray",
]
