"""Every bundled model scores a JPEG exactly as it does alone, whatever other bundled models run beside it
(issue 24: the decode policy is per model; the default job reads each file once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paths import EXAMPLE_PHOTOS

from nima_rt import Scorer, ScorerConfig, bundled_models

PHOTOS = sorted(EXAMPLE_PHOTOS.glob("*.jpg"))


@pytest.mark.skipif(len(bundled_models()) < 2, reason="needs two bundled models")
def test_each_bundled_model_scores_alone_as_beside_every_other() -> None:
    names = list(bundled_models())  # aesthetic (exact decode), technical (JPEG draft), technical.int8
    config = ScorerConfig(batch_size=4, threads=1)
    with Scorer(names, config) as scorer:
        together = {Path(r.path).name: r.scores for r in scorer.score_paths(PHOTOS)}
        columns = scorer.columns
    for name, column in zip(names, columns, strict=True):
        with Scorer([name], config) as alone:
            for result in alone.score_paths(PHOTOS):
                assert result.scores[alone.columns[0]] == together[Path(result.path).name][column], (name, result.path)
    with Scorer(None, config) as default:  # the default job: the same models, the same scores
        assert default.columns == ["aesthetic", "technical"]
        for result in default.score_paths(PHOTOS):
            assert result.scores == {c: together[Path(result.path).name][c] for c in default.columns}
