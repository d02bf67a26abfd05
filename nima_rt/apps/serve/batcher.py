"""Micro-batching: the images of concurrent requests decoded in parallel, then run through the models
together, up to ``max_batch`` images or ``max_wait_ms``.

Three kinds of thread share the work. The event loop admits images (a bounded number: more is a 503),
hands each to the decode pool (``Scorer.decode_bytes``, the decoder files use) and forms batches; the
inference pool runs up to ``Scorer.streams`` batches at once (``Scorer.score_decoded``), as
``nima-rt score`` does. A batch goes as soon as an inference stream is free and it is full, or no other
image is still being decoded, or its first image has waited ``max_wait_ms``: a lone request never waits
for company, a busy service fills its batches.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from nima_rt.apps.serve.metrics import ServeMetrics
from nima_rt.apps.serve.uploads import Upload, overloaded
from nima_rt.contract.messages import one_line
from nima_rt.io.results import ScoreResult
from nima_rt.runtime.scorer import DecodedInput, Scorer


@dataclass
class _Waiting:
    """A decoded image waiting for a batch, and where its row goes."""

    decoded: DecodedInput
    row: asyncio.Future[ScoreResult]


class MicroBatcher:
    """Scores the images of many requests in shared batches; create, :meth:`start` in the event loop,
    :meth:`score` from request handlers, :meth:`close` to drain."""

    def __init__(self, scorer: Scorer, max_batch: int, max_wait_ms: float, max_queue: int, retry_after_s: int,
                 metrics: ServeMetrics) -> None:
        self.scorer = scorer
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.streams = scorer.streams
        self._decode_pool = ThreadPoolExecutor(scorer.cpu_plan.decode_workers, thread_name_prefix="nima-serve-decode")
        self._infer_pool = ThreadPoolExecutor(self.streams, thread_name_prefix="nima-serve-infer")
        self._waiting: deque[_Waiting] = deque()
        self.admitted = 0  # images of requests being answered
        self.decoding = 0  # images in (or queued for) the decode pool
        self.running = 0  # batches in inference
        self._wake: asyncio.Event | None = None
        self._former: asyncio.Task[None] | None = None
        self._closing = False
        metrics.watch(admitted=lambda: self.admitted, waiting=lambda: len(self._waiting),
                      decoding=lambda: self.decoding)

    @property
    def waiting(self) -> int:
        """Decoded images waiting for an inference stream."""
        return len(self._waiting)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._former = asyncio.get_running_loop().create_task(self._form_batches(), name="nima-serve-batches")

    async def score(self, uploads: Sequence[Upload]) -> list[ScoreResult]:
        """One row per upload, in order; 503 (:class:`HttpError`) when the queue cannot take them all."""
        if self._closing:
            raise overloaded("shutting down", self.retry_after_s)
        if self.admitted + len(uploads) > self.max_queue:
            raise overloaded(f"{self.admitted} images in the queue, limit {self.max_queue} (--max-queue)",
                             self.retry_after_s)
        self.admitted += len(uploads)
        try:
            return list(await asyncio.gather(*(self._submit(upload) for upload in uploads)))
        finally:
            self.admitted -= len(uploads)

    def _submit(self, upload: Upload) -> asyncio.Future[ScoreResult]:
        loop = asyncio.get_running_loop()
        row: asyncio.Future[ScoreResult] = loop.create_future()
        self.decoding += 1
        decoding = loop.run_in_executor(self._decode_pool, self.scorer.decode_bytes, upload.data, upload.name)
        decoding.add_done_callback(partial(self._decoded, upload.name, row))
        return row

    def _decoded(self, name: str, row: asyncio.Future[ScoreResult], decoding: asyncio.Future[DecodedInput]) -> None:
        self.decoding -= 1
        self._notify()
        if row.done():  # the request was cancelled
            return
        error = decoding.exception()
        if error is not None:  # a decoder bug: the row says so, the service goes on
            row.set_result(ScoreResult(name, f"{name}: unexpected {type(error).__name__} ({one_line(error)})"))
            return
        decoded = decoding.result()
        if decoded.arrays is None:
            row.set_result(ScoreResult(decoded.path, decoded.error))
        else:
            self._waiting.append(_Waiting(decoded, row))

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, timeout: float | None = None) -> None:
        """Until something changes (an image decoded, a batch done) or ``timeout`` seconds pass."""
        assert self._wake is not None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    async def _form_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.running >= self.streams or not self._waiting:
                if self._closing and not self._waiting and not self.decoding and not self.running:
                    return
                await self._sleep()
            deadline = loop.time() + self.max_wait_s
            while len(self._waiting) < self.max_batch and self.decoding:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._sleep(remaining)
            batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
            batch = [item for item in batch if not item.row.done()]
            if not batch:
                continue
            self.running += 1
            self.metrics.batch_images.observe(len(batch))
            scoring = loop.run_in_executor(self._infer_pool, self._infer, [item.decoded for item in batch])
            scoring.add_done_callback(partial(self._scored, batch))

    def _infer(self, decoded: list[DecodedInput]) -> list[ScoreResult]:
        return [row for batch in self.scorer.score_decoded(decoded) for row in batch.rows()]

    def _scored(self, batch: list[_Waiting], scoring: asyncio.Future[list[ScoreResult]]) -> None:
        self.running -= 1
        self._notify()
        error = scoring.exception()
        for index, item in enumerate(batch):
            if item.row.done():
                continue
            if error is not None:  # score_decoded turns backend errors into rows: this is a bug, said per row
                path = item.decoded.path
                item.row.set_result(ScoreResult(path, f"{path}: inference failed ({type(error).__name__}: "
                                                      f"{one_line(error)})"))
            else:
                item.row.set_result(scoring.result()[index])

    async def close(self) -> None:
        """Refuse new work, finish what was admitted, stop the threads."""
        self._closing = True
        self._notify()
        if self._former is not None:
            await self._former
        self._decode_pool.shutdown(wait=True)
        self._infer_pool.shutdown(wait=True)
