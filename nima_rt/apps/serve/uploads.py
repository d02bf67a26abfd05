"""A request's images: the body read within its limits (size, time, memory across requests), then split
into uploads (a raw image body, or the ``file`` parts of a multipart form).

Every refusal is an :class:`HttpError` whose message is the one line the client gets as
``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from nima_rt.apps.serve.multipart import MultipartError, file_parts
from nima_rt.apps.serve.options import MIB, ServeOptions
from nima_rt.contract.messages import one_line

RAW_TYPES = ("image/", "application/octet-stream")
MULTIPART = "multipart/form-data"


class HttpError(Exception):
    """An answer other than 200: ``status``, a one-line message and extra headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = dict(headers or {})


def overloaded(reason: str, retry_after_s: int) -> HttpError:
    """503 with Retry-After: the service is full (back-pressure), try again shortly."""
    return HttpError(503, f"service busy: {reason}; retry after {retry_after_s} s",
                     {"Retry-After": str(retry_after_s)})


@dataclass
class Upload:
    """One image of a request: the name its row gets and its encoded bytes."""

    name: str
    data: bytes | bytearray


@dataclass
class BodyBudget:
    """Request bodies held in memory at once, across requests (single event-loop thread: no lock)."""

    limit: int
    held: int = 0

    def take(self, size: int, retry_after_s: int) -> None:
        if self.held + size > self.limit:
            raise overloaded(f"{self.held / MIB:.0f} MiB of request bodies in memory, limit "
                             f"{self.limit / MIB:.0f} MiB", retry_after_s)
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


@dataclass
class BodyReader:
    """Reads one request's body: refuses a declared length over the limit before reading a byte, stops a
    streamed one at the limit, and holds its size in the shared :class:`BodyBudget` until :meth:`release`.

    After a 413 the rest of the body is not kept: uvicorn reads and drops what the client still sends
    (so the client gets its answer instead of a reset connection) until the idle timeout closes the
    connection. A 408 closes the connection at once."""

    options: ServeOptions
    budget: BodyBudget
    taken: int = field(default=0)

    async def read(self, headers: Mapping[str, str], stream: AsyncIterator[bytes]) -> bytearray:
        limit = self.options.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HttpError(400, f"Content-Length {declared!r} is not a number")
            if int(declared) > limit:
                raise HttpError(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes "
                                f"({self.options.max_body_mb:g} MB, --max-body-mb)")
            self._take(int(declared))
        try:
            return await asyncio.wait_for(self._collect(stream, limit, declared is None), self.options.read_timeout_s)
        except TimeoutError:
            raise HttpError(408, f"request body not received within {self.options.read_timeout_s:g} s "
                            "(--read-timeout)", {"Connection": "close"}) from None

    async def _collect(self, stream: AsyncIterator[bytes], limit: int, streamed: bool) -> bytearray:
        body = bytearray()
        async for chunk in stream:
            if len(body) + len(chunk) > limit:
                raise HttpError(413, f"request body over the limit of {limit} bytes ({self.options.max_body_mb:g} "
                                "MB, --max-body-mb)")
            if streamed:  # no Content-Length: hold the budget as the bytes arrive
                self._take(len(chunk))
            body += chunk
        return body

    def _take(self, size: int) -> None:
        self.budget.take(size, self.options.retry_after_s)
        self.taken += size

    def release(self) -> None:
        self.budget.give(self.taken)
        self.taken = 0


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None) -> None:
    """415 unless the body is an image (``image/*``, ``application/octet-stream``, none given) or a form."""
    kind = media_type(content_type)
    if kind and kind != MULTIPART and not kind.startswith(RAW_TYPES):
        raise HttpError(415, f"Content-Type {kind} is not an image: send the image's bytes as image/* or "
                        "application/octet-stream, or multipart/form-data with 'file' parts")


def uploads_of(content_type: str | None, body: bytearray, max_files: int) -> list[Upload]:
    """The images of a request: the whole body, or the multipart form's ``file`` parts in their order."""
    if media_type(content_type) != MULTIPART:
        if not body:
            raise HttpError(400, "empty request body: send an image")
        return [Upload("<body>", body)]
    try:
        parts = file_parts(content_type or "", body, max_files)
    except MultipartError as exc:
        raise HttpError(exc.status, str(exc)) from None
    if not parts:
        raise HttpError(400, "multipart body has no 'file' part: send each image as a part named 'file'")
    return [Upload(part.filename or f"<file {index}>", part.data) for index, part in enumerate(parts)]
