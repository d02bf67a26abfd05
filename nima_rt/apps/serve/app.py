"""The HTTP API of ``nima-rt serve`` (Starlette): routes, answers and error mapping.

- ``POST /v1/score``: an image's bytes as the body (``image/*``, ``application/octet-stream``), or
  ``multipart/form-data`` with ``file`` parts; one row per image, as ``nima-rt score -f jsonl`` writes it.
- ``POST /v1/rank``: the same body, the rows ranked as ``nima-rt score --rank-by/--sort-by/--top`` rank a
  listing (query ``rank_by``, ``sort_by``, ``top``; ``group_by=parent`` ranks per folder of the file names).
- ``GET /healthz`` (alive), ``GET /readyz`` (models loaded, not draining), ``GET /metrics`` (Prometheus).

Every error is ``{"error": "one line"}`` with its status.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nima_rt import __version__
from nima_rt.apps.serve.batcher import MicroBatcher
from nima_rt.apps.serve.metrics import CONTENT_TYPE, ASGIApp, ServeMetrics
from nima_rt.apps.serve.options import ServeOptions
from nima_rt.apps.serve.uploads import BodyBudget, BodyReader, HttpError, check_media_type, uploads_of
from nima_rt.contract.messages import one_line
from nima_rt.io.results import ScoreResult
from nima_rt.io.scores.writers import json_row
from nima_rt.runtime.ranking import RankedRow, RankRuleError, rank_groups, rank_rows, resolve_rank_rule
from nima_rt.runtime.scorer import Scorer

ROUTES = ("/", "/v1/score", "/v1/rank", "/healthz", "/readyz", "/metrics")
ROUTE_LIST = "POST /v1/score, POST /v1/rank, GET /healthz, GET /readyz, GET /metrics"


class JsonAnswer(JSONResponse):
    """JSON with non-finite numbers as null (JSON has no NaN), UTF-8, compact."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> JsonAnswer:
    return JsonAnswer({"error": one_line(message)}, status_code=status, headers=headers)


@dataclass
class Service:
    """What the handlers share: the models, the settings, the batcher, the body budget, the metrics."""

    scorer: Scorer
    options: ServeOptions
    batcher: MicroBatcher
    budget: BodyBudget
    metrics: ServeMetrics
    ready: bool = False

    @property
    def columns(self) -> list[str]:
        return self.scorer.columns

    async def results(self, request: Request) -> list[ScoreResult]:
        """The request's images scored, in upload order (errors as rows)."""
        content_type = request.headers.get("content-type")
        check_media_type(content_type)
        reader = BodyReader(self.options, self.budget)
        try:
            body = await reader.read(request.headers, request.stream())
            uploads = uploads_of(content_type, body, self.options.max_files)
            del body
            results = await self.batcher.score(uploads)
        except ClientDisconnect:
            raise HttpError(400, "the client disconnected before the body arrived") from None
        finally:
            reader.release()
        failed = sum(not r.ok for r in results)
        self.metrics.count_images(len(results) - failed, failed)
        return results

    def answer(self, results: list[ScoreResult], rows: list[dict[str, Any]], extra: dict[str, Any]) -> JsonAnswer:
        """200 with the rows; 422 when no image could be scored (one image: its error is the answer's)."""
        body = {"models": self.columns, **extra, "images": rows}
        if any(r.ok for r in results):
            return JsonAnswer(body)
        message = results[0].error if len(results) == 1 else f"none of the {len(results)} images could be scored"
        return JsonAnswer({"error": one_line(message or "not scored"), **body}, status_code=422)


async def _score(request: Request) -> Response:
    service: Service = request.app.state.service
    results = await service.results(request)
    return service.answer(results, [json_row(r, service.columns) for r in results], {})


def _rank_query(request: Request, columns: list[str]) -> tuple[Any, int | None, str | None]:
    query = request.query_params
    unknown = sorted(set(query) - {"rank_by", "sort_by", "top", "group_by"})
    if unknown:
        raise HttpError(400, f"unknown query parameter {unknown[0]!r} (rank_by, sort_by, top, group_by)")
    try:
        rule = resolve_rank_rule(query.get("rank_by"), query.get("sort_by"), columns)
    except RankRuleError as exc:
        raise HttpError(400, str(exc).replace("--rank-by", "rank_by").replace("--sort-by", "sort_by")) from None
    top_text = query.get("top")
    if top_text is not None and not (top_text.isdigit() and int(top_text) >= 1):
        raise HttpError(400, f"top must be a whole number >= 1, got {top_text!r}")
    group_by = query.get("group_by")
    if group_by not in (None, "parent"):
        raise HttpError(400, f"group_by must be 'parent' (rank per folder of the file names), got {group_by!r}")
    return rule, int(top_text) if top_text is not None else None, group_by


async def _rank(request: Request) -> Response:
    service: Service = request.app.state.service
    rule, top, group_by = _rank_query(request, service.columns)  # checked before the body is read
    results = await service.results(request)
    ranked: list[RankedRow] = list(rank_groups(results, rule, top) if group_by else rank_rows(results, rule, top))
    rows = [json_row(row.result, service.columns, row.extra()) for row in ranked]
    return service.answer(results, rows, {"rule": rule.text()})


async def _healthz(request: Request) -> Response:
    return JsonAnswer({"status": "ok"})


async def _readyz(request: Request) -> Response:
    service: Service = request.app.state.service
    if not service.ready:
        return error_answer(503, "not ready: models loading or the service is draining", {"Retry-After": "1"})
    return JsonAnswer({"status": "ready", "models": service.columns})


async def _metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE)


async def _index(request: Request) -> Response:
    service: Service = request.app.state.service
    return JsonAnswer({"service": "nima-rt", "version": __version__, "models": service.columns,
                       "backends": service.scorer.backend_summary, "routes": ROUTE_LIST.split(", "),
                       "max_batch": service.scorer.batch_size, "max_wait_ms": service.options.max_wait_ms})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_answer(exc.status, exc.message, exc.headers)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return error_answer(404, f"no route {where}: the service answers {ROUTE_LIST}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error_answer(405, f"{where}: method not allowed (allowed: {allowed})", dict(exc.headers or {}))
    return error_answer(exc.status_code, f"{where}: {exc.detail}", dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_answer(500, f"internal error ({type(exc).__name__}: {one_line(exc)})")


def create_app(scorer: Scorer, options: ServeOptions) -> tuple[ASGIApp, Service]:
    """The ASGI app (with its metrics wrapper) serving ``scorer``'s models, and its shared state."""
    metrics = ServeMetrics(ROUTES)
    batcher = MicroBatcher(scorer, scorer.batch_size, options.max_wait_ms, options.max_queue, options.retry_after_s,
                           metrics)
    service = Service(scorer, options, batcher, BodyBudget(options.max_inflight_bytes), metrics)
    metrics.body_bytes.set_function(lambda: service.budget.held)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await batcher.start()
        service.ready = True
        try:
            yield
        finally:
            service.ready = False
            await batcher.close()

    app = Starlette(
        routes=[Route("/", _index, methods=["GET"]), Route("/v1/score", _score, methods=["POST"]),
                Route("/v1/rank", _rank, methods=["POST"]), Route("/healthz", _healthz, methods=["GET"]),
                Route("/readyz", _readyz, methods=["GET"]), Route("/metrics", _metrics, methods=["GET"])],
        exception_handlers={HttpError: _http_error, HTTPException: _starlette_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.service = service
    return metrics.wrap(app), service
