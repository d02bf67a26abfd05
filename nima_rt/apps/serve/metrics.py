"""``GET /metrics``: the service's Prometheus metrics, in a registry of its own (no global state).

- ``nima_rt_serve_requests_total{route, status}`` and ``nima_rt_serve_request_seconds{route}`` (latency
  histogram), counted by an ASGI wrapper around the whole app, errors included;
- ``nima_rt_serve_images_total{outcome}`` (scored / failed);
- ``nima_rt_serve_batch_images`` (histogram of batch sizes);
- ``nima_rt_serve_queue_images{state}`` (admitted, decoding, waiting: read at scrape time) and
  ``nima_rt_serve_body_bytes`` (request bodies held in memory).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    """The service's metrics and their registry."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = frozenset(routes)
        self.requests = Counter("nima_rt_serve_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("nima_rt_serve_request_seconds", "Time from request to the end of the answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("nima_rt_serve_images", "Images answered, by outcome (scored or failed)",
                              ["outcome"], registry=self.registry)
        self.batch_images = Histogram("nima_rt_serve_batch_images", "Images per inference batch",
                                      buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue = Gauge("nima_rt_serve_queue_images", "Images admitted (being answered), decoding, or decoded "
                           "and waiting for an inference stream", ["state"], registry=self.registry)
        self.body_bytes = Gauge("nima_rt_serve_body_bytes", "Request body bytes held in memory",
                                registry=self.registry)

    def watch(self, **gauges: Callable[[], float]) -> None:
        """Queue gauges read at scrape time (``admitted=lambda: ...``)."""
        for state, read in gauges.items():
            self.queue.labels(state=state).set_function(read)

    def count_images(self, scored: int, failed: int) -> None:
        self.images.labels(outcome="scored").inc(scored)
        self.images.labels(outcome="failed").inc(failed)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def route_of(self, path: str) -> str:
        """The route label: a known route, else ``other`` (unknown paths must not grow the label set)."""
        return path if path in self.routes else "other"

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """An ASGI app that counts every HTTP answer of ``app`` by route and status and times it."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = {"code": 500}

            async def send_and_note(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_and_note)
            finally:
                route = self.route_of(scope["path"])
                self.requests.labels(route=route, status=str(status["code"])).inc()
                self.latency.labels(route=route).observe(time.perf_counter() - started)

        return counted
