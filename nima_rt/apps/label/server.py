"""The rating web app's HTTP side: a standard-library threaded server (``http.server``) carrying one
:class:`~nima_rt.apps.label.app.LabelApp` (routes and content), whose requests pass the guards of
:mod:`nima_rt.apps.label.guards` (Host, Origin, token, JSON bodies of at most 16 KiB).

Every refusal is a 4xx JSON ``{"error": ...}``; an unexpected failure is a bare 500 with the details on
the server's stderr only, never a traceback page.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nima_rt.apps.label.app import DEFAULT_PROMPT, AppConfig, LabelApp, Response, json_response
from nima_rt.apps.label.checks import LabelError, RequestError
from nima_rt.apps.label.guards import is_loopback
from nima_rt.apps.label.store import Store

MAX_BODY = 16 * 1024
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,256}")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class _Handler(BaseHTTPRequestHandler):
    server: LabelHTTPServer
    server_version = "nima-rt-label"
    timeout = 60  # seconds a silent connection may hold its thread
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def version_string(self) -> str:
        return self.server_version

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body() if method == "POST" else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = self.server.app.handle(method, self.path, headers, body)
        except RequestError as exc:
            response = json_response({"error": str(exc)}, exc.status)
        except Exception as exc:  # a bug or a broken database: one line on stderr, a bare 500 out
            self.server.log(f"error: {self.command} {self.path}: {type(exc).__name__}: {exc}")
            response = json_response({"error": "internal error (see the server's log)"}, 500)
        self._send(response)

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return None
        try:
            length = int(length_text)
        except ValueError:
            raise RequestError(400, "Content-Length is not a number") from None
        if length < 0:
            raise RequestError(400, "Content-Length is negative")
        if length > MAX_BODY:
            self.close_connection = True
            raise RequestError(413, f"body larger than {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            for key, value in {**SECURITY_HEADERS, **response.headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(response.length or 0))
            self.end_headers()
            if self.command == "HEAD":
                if not isinstance(response.body, bytes):
                    response.body.close()
            elif isinstance(response.body, bytes):
                self.wfile.write(response.body)
            else:
                with response.body as handle:
                    while chunk := handle.read(256 * 1024):
                        self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.verbose:
            self.server.log(f"{self.address_string()} {format % args}")


class LabelHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server carrying one :class:`LabelApp`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: LabelApp, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}/"

    @staticmethod
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def check_token(token: str | None) -> None:
    """Refuse a token that cannot travel safely in a URL and a cookie."""
    if token is not None and not TOKEN_PATTERN.fullmatch(token):
        raise LabelError("--token must be 8 to 256 characters from A-Z a-z 0-9 - _ . ~ (it goes in a URL and a cookie)")


def make_server(
    store: Store,
    images_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    prompt: str = DEFAULT_PROMPT,
    verbose: bool = False,
) -> LabelHTTPServer:
    """Bind the rating server (port 0 picks a free port; see ``server.url``). Call ``serve_forever()``."""
    check_token(token)
    root = os.path.realpath(images_dir)
    if not os.path.isdir(root):
        raise LabelError(f"{images_dir}: not a folder of images")
    config = AppConfig(images_dir=root, token=token, prompt=prompt, check_host=is_loopback(host))
    try:
        return LabelHTTPServer((host, port), LabelApp(store, config), verbose=verbose)
    except OSError as exc:
        raise LabelError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


__all__ = ["AppConfig", "LabelApp", "LabelHTTPServer", "Response", "check_token", "is_loopback", "make_server"]
