"""Run the service: load the models, listen, serve until SIGTERM/SIGINT, drain, return.

uvicorn (h11) serves the Starlette app on a socket bound here, so a port that is taken is one clear
error and ``--port 0`` can report the port it got. Two additions to uvicorn's defaults:

- **idle connections are closed**: uvicorn times out keep-alive connections between requests, but not a
  connection that never sends its request line and headers (a slow or stalled client); the protocol here
  starts that timer when the connection opens (``idle_timeout_s``).
- **SIGTERM exits 0**: uvicorn stops accepting, lets in-flight requests finish (up to
  ``shutdown_timeout_s``), runs the app's shutdown (the batcher drains), then re-raises the signal it
  caught; a handler installed here receives it, so the process returns normally instead of dying of it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from nima_rt.apps.serve.app import create_app
from nima_rt.apps.serve.options import ServeOptions
from nima_rt.runtime.scorer import ModelSpec, Scorer, ScorerConfig

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ServeError(Exception):
    """The service could not start (the address); ``str()`` is one line."""


@dataclass(frozen=True)
class Listening:
    """Where the service answers, what it serves, and how: handed to ``on_ready`` once it listens."""

    url: str
    loopback: bool
    columns: list[str]
    backends: list[str]
    options: ServeOptions


@dataclass(frozen=True)
class ServeSummary:
    """How the service ended: the signal that stopped it (None: stopped otherwise)."""

    signal: str | None


def _protocol(idle_timeout_s: float) -> type[H11Protocol]:
    class IdleTimeoutH11(H11Protocol):
        """uvicorn's h11 protocol, closing a connection whose first request does not arrive in time (the
        timer is uvicorn's keep-alive timer: a request's headers cancel it, each answer restarts it)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.timeout_keep_alive_task = self.loop.call_later(idle_timeout_s, self.timeout_keep_alive_handler)

    return IdleTimeoutH11


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; ServeError naming the address when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ServeError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> tuple[str, bool]:
    host, port = sock.getsockname()[:2]
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}", loopback


@contextmanager
def _return_on_stop_signals(stopped_by: list[str]) -> Iterator[None]:
    """While serving, SIGTERM/SIGINT re-raised by uvicorn after its graceful shutdown are noted, not fatal."""

    def note(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(models: Sequence[ModelSpec], config: ScorerConfig, options: ServeOptions,
          on_ready: Callable[[Listening], None] | None = None) -> ServeSummary:
    """Serve ``models`` (the bundled defaults when empty) over HTTP until SIGTERM/SIGINT; return after the
    in-flight requests are answered. Raises what :class:`Scorer` raises for a bad model, and
    :class:`ServeError` when the address cannot be had (both before anything listens)."""
    sock = bind(options.host, options.port)
    try:
        # the Scorer runs each micro-batch as one inference call: its batch size is the largest batch
        with Scorer(list(models) or [None], replace(config, batch_size=options.max_batch, gpu_decode="off")) as scorer:
            app, _service = create_app(scorer, options)
            server = uvicorn.Server(uvicorn.Config(
                app, http=_protocol(options.idle_timeout_s), lifespan="on", log_level="warning",
                access_log=options.access_log, timeout_keep_alive=max(1, round(options.idle_timeout_s)),
                timeout_graceful_shutdown=options.shutdown_timeout_s, limit_concurrency=options.max_connections,
                server_header=False,
            ))
            url, loopback = _url(sock)
            listening = Listening(url, loopback, scorer.columns, scorer.backend_summary, options)
            stopped_by: list[str] = []

            async def run() -> None:
                serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
                while not server.started and not serving.done():
                    await asyncio.sleep(0.01)
                if server.started and on_ready is not None:
                    on_ready(listening)
                await serving

            with _return_on_stop_signals(stopped_by):
                asyncio.run(run())
            if not server.started:
                raise ServeError(f"{url}: the service did not start (see the lines above)")
            return ServeSummary(stopped_by[0] if stopped_by else None)
    finally:
        sock.close()
