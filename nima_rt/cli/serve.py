"""``nima-rt serve``: score images over HTTP, batching concurrent requests (docs/guide/serve.md).

Parses the options into :class:`ServeOptions` and a :class:`ScorerConfig` and makes one call,
:func:`nima_rt.apps.serve.server.serve`; the server stack (Starlette, uvicorn, prometheus-client, the
``serve`` extra) is imported only when the command runs.
"""

from __future__ import annotations

import typer

from nima_rt.apps.serve.options import ServeOptions
from nima_rt.cli import options
from nima_rt.cli.common import fail, note, require_extra

DEFAULTS = ServeOptions()  # the one home of the defaults; the server stack is not imported by this module


def serve(
    model: options.Models = None,
    host: str = typer.Option(DEFAULTS.host, "--host", help="Address to listen on (loopback only by default; 0.0.0.0 "
                             "in a container)."),
    port: int = typer.Option(DEFAULTS.port, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    max_batch: int | None = typer.Option(
        None, "--max-batch", min=1, max=4096,
        help="Most images run through the models together (default: 4 on CPU, 128 on GPU)."),
    max_wait_ms: float = typer.Option(
        DEFAULTS.max_wait_ms, "--max-wait-ms", min=0.0,
        help="How long a batch waits for images still being decoded (never when nothing else is)."),
    max_queue: int = typer.Option(DEFAULTS.max_queue, "--max-queue", min=1,
                                  help="Images admitted at once; more: 503 + Retry-After."),
    max_body_mb: float = typer.Option(DEFAULTS.max_body_mb, "--max-body-mb", min=0.001,
                                      help="Largest request body (MB); more: 413, refused before it is read."),
    max_files: int = typer.Option(DEFAULTS.max_files, "--max-files", min=1,
                                  help="Most files in one multipart request."),
    max_inflight_mb: float = typer.Option(DEFAULTS.max_inflight_mb, "--max-inflight-mb", min=0.001,
                                          help="Request bodies held in memory at once (MB); more: 503 + Retry-After."),
    read_timeout: float = typer.Option(DEFAULTS.read_timeout_s, "--read-timeout", min=0.001,
                                       help="Seconds a request body may take; more: 408."),
    idle_timeout: float = typer.Option(DEFAULTS.idle_timeout_s, "--idle-timeout", min=0.001,
                                       help="Seconds a connection may wait without sending a request."),
    shutdown_timeout: float = typer.Option(DEFAULTS.shutdown_timeout_s, "--shutdown-timeout", min=0.0,
                                           help="SIGTERM: seconds in-flight requests get to finish."),
    workers: options.Workers = None,
    threads: options.Threads = None,
    streams: options.Streams = None,
    device: options.Device = "auto",
    backend: options.BackendName = None,
    precision: options.Precision = None,
    full_decode: options.FullDecode = False,
    access_log: bool = typer.Option(False, "--access-log", help="Log every request on stderr."),
    quiet: options.Quiet = False,
) -> None:
    """Serve the models over HTTP: POST an image to /v1/score, several to /v1/rank; stops cleanly on SIGTERM."""
    require_extra("uvicorn", "serve", "nima-rt serve")
    require_extra("starlette", "serve", "nima-rt serve")
    require_extra("prometheus_client", "serve", "nima-rt serve")
    require_extra("python_multipart", "serve", "nima-rt serve")
    from nima_rt.apps.serve.options import ServeSettingError
    from nima_rt.apps.serve.server import Listening, ServeError
    from nima_rt.apps.serve.server import serve as run_service
    from nima_rt.contract.spec import ContractError
    from nima_rt.runtime.backends import BackendUnavailable

    try:
        settings = ServeOptions(host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                max_queue=max_queue, max_body_mb=max_body_mb, max_files=max_files,
                                max_inflight_mb=max_inflight_mb, read_timeout_s=read_timeout,
                                idle_timeout_s=idle_timeout, shutdown_timeout_s=shutdown_timeout,
                                access_log=access_log)
    except ServeSettingError as exc:
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=exc.option) from None
    config = options.scorer_config(workers=workers, threads=threads, streams=streams, device=device, backend=backend,
                                   precision=precision, full_decode=full_decode)

    def ready(listening: Listening) -> None:
        if not quiet:
            for line in listening.backends:
                note(line)
        if not listening.loopback:
            note(f"warning: listening on {host}, reachable from other machines: no authentication, plain HTTP "
                 "(put it behind your load balancer or proxy)")
        note(f"serving {', '.join(listening.columns)} on {listening.url} (POST /v1/score, /v1/rank; GET /healthz, "
             f"/readyz, /metrics; SIGTERM or Ctrl-C stops)")

    try:
        summary = run_service(model or [], config, settings, on_ready=ready)
    except (ContractError, BackendUnavailable, ServeError, ValueError) as exc:
        fail(str(exc))
    if not quiet:
        note(f"stopped ({summary.signal or 'shut down'}): in-flight requests answered")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


__all__ = ["register", "serve"]
