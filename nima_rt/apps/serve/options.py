"""The service's settings (``nima-rt serve`` options), checked once when they are made."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024

# Measured by benchmarks/serve_load.py (docs/guide/serve.md): see the table there.
DEFAULT_MAX_WAIT_MS = 5.0


class ServeSettingError(ValueError):
    """A setting the service cannot run with; ``option`` names the command-line option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class ServeOptions:
    """How ``nima-rt serve`` listens, batches and protects itself.

    Memory is bounded by ``max_inflight_mb`` (request bodies held at once, across requests) plus
    ``max_queue`` decoded images (one model input each, ~150 KB at 224 px) plus the Scorer's decode budget.
    """

    host: str = "127.0.0.1"  # loopback only unless a host is given
    port: int = 8000  # 0 picks a free port
    max_batch: int | None = None  # images run through the models together at most (None: the Scorer's batch
    # size for its device, nima_rt.runtime.scorer.DEFAULT_BATCH_SIZE: 4 on CPU, 128 on GPU)
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS  # how long a batch waits for images still being decoded
    max_queue: int = 64  # images admitted at once (decoding, waiting, in inference); more: 503 + Retry-After
    max_body_mb: float = 32.0  # one request body; more: 413 before the rest is read
    max_files: int = 64  # files in one multipart request
    max_inflight_mb: float = 256.0  # request bodies held in memory at once; more: 503 + Retry-After
    read_timeout_s: float = 30.0  # a request body must arrive within this; else 408
    idle_timeout_s: float = 5.0  # a connection with no request (headers) for this long is closed
    shutdown_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take before they are cut
    retry_after_s: int = 1  # the Retry-After of a 503
    max_connections: int = 1024  # open connections; past it new requests get uvicorn's 503
    access_log: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServeSettingError("--port", f"must be 0..65535, got {self.port}")
        positive = {"--max-batch": self.max_batch or 1, "--max-queue": self.max_queue, "--max-files": self.max_files,
                    "--max-body-mb": self.max_body_mb, "--max-inflight-mb": self.max_inflight_mb,
                    "--read-timeout": self.read_timeout_s, "--idle-timeout": self.idle_timeout_s,
                    "--retry-after": self.retry_after_s, "--max-connections": self.max_connections}
        for option, value in positive.items():
            if not value > 0:
                raise ServeSettingError(option, f"must be > 0, got {value}")
        if self.max_wait_ms < 0:
            raise ServeSettingError("--max-wait-ms", f"must be >= 0, got {self.max_wait_ms}")
        if self.shutdown_timeout_s < 0:
            raise ServeSettingError("--shutdown-timeout", f"must be >= 0, got {self.shutdown_timeout_s}")
        if self.max_files > self.max_queue:
            raise ServeSettingError("--max-files", f"{self.max_files} is more than --max-queue {self.max_queue}: "
                                    "such a request could never be admitted")
        if self.max_body_mb > self.max_inflight_mb:
            raise ServeSettingError("--max-body-mb", f"{self.max_body_mb:g} is more than --max-inflight-mb "
                                    f"{self.max_inflight_mb:g}: such a body could never be admitted")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MIB)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * MIB)
