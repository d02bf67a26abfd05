"""The micro-batcher on its own (a fake Scorer whose inference waits for the test): which images share a
batch, the bounded queue's 503, draining on close."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("prometheus_client", reason="nima-rt serve needs the 'serve' extra")
from nima_rt.apps.serve.batcher import MicroBatcher  # noqa: E402
from nima_rt.apps.serve.metrics import ServeMetrics  # noqa: E402
from nima_rt.apps.serve.uploads import HttpError, Upload  # noqa: E402
from nima_rt.io.results import ModelScore, ScoreResult  # noqa: E402
from nima_rt.runtime.scorer import DecodedInput  # noqa: E402


@dataclass
class _Plan:
    decode_workers: int = 2


@dataclass
class _Rows:
    results: list[ScoreResult]

    def rows(self):
        return iter(self.results)


@dataclass
class FakeScorer:
    """Decodes b"bad" as a failure, anything else as one array; inference waits for ``release``."""

    streams: int = 1
    cpu_plan: _Plan = field(default_factory=_Plan)
    release: threading.Event = field(default_factory=threading.Event)
    batches: list[list[str]] = field(default_factory=list)

    def decode_bytes(self, data: bytes, name: str | None = None, index: int = 0) -> DecodedInput:
        if data == b"bad":
            return DecodedInput(name, None, f"{name}: not an image file Pillow can read")
        return DecodedInput(name, [np.zeros((2, 2, 3), np.uint8)], None)

    def score_decoded(self, items: list[DecodedInput]):
        assert self.release.wait(30)
        self.batches.append([item.path for item in items])
        return [_Rows([ScoreResult(item.path, None, {"m": ModelScore(1.0, 0.5, (1.0,))}) for item in items])]


def _batcher(scorer: FakeScorer, max_batch: int = 4, max_wait_ms: float = 50, max_queue: int = 8) -> MicroBatcher:
    return MicroBatcher(scorer, max_batch, max_wait_ms, max_queue, 1, ServeMetrics(("/v1/score",)))  # type: ignore[arg-type]


def test_concurrent_requests_fill_batches_in_order() -> None:
    async def scenario() -> tuple[list[list[ScoreResult]], list[list[str]]]:
        scorer = FakeScorer()
        batcher = _batcher(scorer, max_wait_ms=5000)  # waits only while images are still decoding
        await batcher.start()
        scorer.release.set()
        requests = [batcher.score([Upload(f"r{r}-{i}", b"img") for i in range(2)]) for r in range(3)]
        answers = await asyncio.gather(*requests)
        await batcher.close()
        return answers, scorer.batches

    answers, batches = asyncio.run(scenario())
    assert [[row.path for row in answer] for answer in answers] == [["r0-0", "r0-1"], ["r1-0", "r1-1"],
                                                                     ["r2-0", "r2-1"]]
    assert sorted(len(b) for b in batches) == [2, 4]  # 6 images from 3 requests: a full batch of 4, then 2
    assert sorted(path for batch in batches for path in batch) == sorted(f"r{r}-{i}" for r in range(3) for i in (0, 1))


def test_failed_decodes_skip_inference_and_a_lone_image_goes_at_once() -> None:
    async def scenario() -> tuple[list[ScoreResult], list[list[str]], float]:
        scorer = FakeScorer()
        batcher = _batcher(scorer, max_wait_ms=5000)
        await batcher.start()
        scorer.release.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        rows = await batcher.score([Upload("a", b"img"), Upload("b", b"bad")])
        elapsed = loop.time() - started
        await batcher.close()
        return rows, scorer.batches, elapsed

    rows, batches, elapsed = asyncio.run(scenario())
    assert [(r.path, r.error) for r in rows] == [("a", None), ("b", "b: not an image file Pillow can read")]
    assert batches == [["a"]]
    assert elapsed < 4  # nothing else was decoding: the batch did not wait 5 s for company


def test_a_full_queue_answers_503_and_close_drains() -> None:
    async def scenario() -> tuple[HttpError, list[ScoreResult], HttpError]:
        scorer = FakeScorer()
        batcher = _batcher(scorer, max_queue=3)
        await batcher.start()
        held = asyncio.ensure_future(batcher.score([Upload(f"h{i}", b"img") for i in range(3)]))
        await asyncio.sleep(0.2)  # inference is held: the 3 images stay admitted
        with pytest.raises(HttpError) as full:
            await batcher.score([Upload("x", b"img")])
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.1)
        with pytest.raises(HttpError) as shutting:
            await batcher.score([Upload("y", b"img")])
        scorer.release.set()
        rows = await held
        await closing
        return full.value, rows, shutting.value

    full, rows, shutting = asyncio.run(scenario())
    assert (full.status, full.headers) == (503, {"Retry-After": "1"})
    assert full.message == "service busy: 3 images in the queue, limit 3 (--max-queue); retry after 1 s"
    assert [r.path for r in rows] == ["h0", "h1", "h2"] and all(r.ok for r in rows)  # drained, not dropped
    assert shutting.message == "service busy: shutting down; retry after 1 s"
