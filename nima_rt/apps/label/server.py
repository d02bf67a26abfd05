"""The rating web app: a standard-library HTTP server (``http.server`` + ``sqlite3``).

Routes (JSON in and out; every error is ``{"error": "..."}`` with a 4xx status, never a traceback):

- ``GET /`` the page; ``GET /static/app.js|app.css`` its script and style (package data, no CDN);
- ``GET /api/info`` prompt, K, image count;
- ``GET /api/next?rater=NAME`` the rater's current image (``null`` when none is left) and progress;
- ``POST /api/rate {"rater", "image_id", "score"}``, ``POST /api/skip {"rater", "image_id"}``,
  ``POST /api/undo {"rater"}``: answer, then the next image and progress;
- ``GET /images/<path>`` one registered file of the images folder.

Safety: an image is served only when its path is registered in the database *and* its real path
(symlinks resolved) lies inside the images folder, so ``..``, encoded ``%2e%2e``, absolute paths and
symlinks pointing out are refused. On a loopback address the ``Host`` header must name loopback
(a web page elsewhere cannot reach the server through DNS rebinding). With a token, every request
must carry it (cookie set by opening ``/?token=...``, or the ``X-Nima-Rt-Token`` header). POST bodies
must be ``application/json`` (which a cross-site form cannot send) and at most 16 KiB.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import os
import re
import socket
import sys
from dataclasses import asdict, dataclass
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from nima_rt.apps.label.store import ImageRef, LabelError, RequestError, Store, is_inside

MAX_BODY = 16 * 1024
TOKEN_COOKIE = "nima_rt_label_token"
TOKEN_HEADER = "X-Nima-Rt-Token"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,256}")
DEFAULT_PROMPT = "How good does this photo look?"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
# Formats a browser shows as they are; other image files are re-encoded as JPEG when served.
BROWSER_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".dib": "image/bmp",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AppConfig:
    """What the page and the request checks need besides the store."""

    images_dir: str  # real path of the images folder
    token: str | None = None
    prompt: str = DEFAULT_PROMPT
    check_host: bool = True  # only loopback Host headers (set when bound to loopback)


class Response:
    """A finished response: status, headers, body (bytes or an open binary file)."""

    def __init__(self, status: int, body: bytes | io.BufferedIOBase, content_type: str, length: int | None = None):
        self.status = status
        self.body = body
        self.headers: dict[str, str] = {"Content-Type": content_type}
        self.length = len(body) if isinstance(body, bytes) else length


def json_response(data: Any, status: int = 200) -> Response:
    response = Response(status, json.dumps(data).encode("utf-8"), "application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _image_json(image: ImageRef | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {"id": image.id, "path": image.path, "url": "/images/" + quote(image.path)}


class LabelApp:
    """Request handling without the socket: ``handle(method, target, headers, body) -> Response``."""

    def __init__(self, store: Store, config: AppConfig) -> None:
        self.store = store
        self.config = config
        self._static: dict[str, bytes] = {}

    # -- entry point ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        try:
            return self._route(method, target, headers, body)
        except RequestError as exc:
            return json_response({"error": str(exc)}, exc.status)

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        self._check_host(headers.get("host"))
        url = urlsplit(target)
        if not url.path.startswith("/"):
            raise RequestError(400, "request target must be a path")
        query = parse_qs(url.query, keep_blank_values=True)
        if method == "GET" and url.path == "/" and "token" in query:
            return self._login(query["token"][-1])
        self._check_token(headers)
        if method == "GET":
            if url.path in STATIC_FILES:
                return self._static_file(url.path)
            if url.path.startswith("/images/"):
                return self._image(url.path[len("/images/") :])
            if url.path == "/api/info":
                return json_response(self._info())
            if url.path == "/api/next":
                rater = query.get("rater", [""])[-1]
                return json_response(self._state(rater, self.store.next_image(rater)))
            if url.path == "/favicon.ico":
                return Response(204, b"", "text/plain")
            raise RequestError(404, f"no such page: {url.path}")
        if method == "POST":
            data = self._json_body(headers, body)
            rater = data.get("rater")
            if url.path == "/api/rate":
                saved = self.store.rate(rater, data.get("image_id"), data.get("score"))  # type: ignore[arg-type]
                return json_response({"saved": _image_json(saved), **self._after(rater)})
            if url.path == "/api/skip":
                saved = self.store.skip(rater, data.get("image_id"))  # type: ignore[arg-type]
                return json_response({"skipped": _image_json(saved), **self._after(rater)})
            if url.path == "/api/undo":
                undone = self.store.undo(rater)  # type: ignore[arg-type]
                return json_response({"undone": _image_json(undone), **self._after(rater)})
            raise RequestError(404, f"no such endpoint: {url.path}")
        raise RequestError(405, f"method {method} not allowed")

    # -- checks --------------------------------------------------------------------------------

    def _check_host(self, host: str | None) -> None:
        if not self.config.check_host:
            return
        if not host:
            raise RequestError(400, "missing Host header")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not is_loopback(name):
            raise RequestError(403, f"Host {host!r} is not a loopback name (this server listens on loopback)")

    def _token_ok(self, given: str) -> bool:
        expected = self.config.token or ""
        return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))

    def _check_token(self, headers: dict[str, str]) -> None:
        if self.config.token is None:
            return
        given = headers.get(TOKEN_HEADER.lower())
        if given is None and "cookie" in headers:
            try:
                morsel = SimpleCookie(headers["cookie"]).get(TOKEN_COOKIE)
            except CookieError:
                morsel = None
            given = None if morsel is None else morsel.value
        if given is None:
            raise RequestError(401, "this server needs a token: open the link with ?token=... that its owner gave you")
        if not self._token_ok(given):
            raise RequestError(403, "wrong token")

    def _login(self, token: str) -> Response:
        if self.config.token is not None and not self._token_ok(token):
            raise RequestError(403, "wrong token")
        response = Response(303, b"", "text/plain")
        response.headers["Location"] = "/"
        if self.config.token is not None:
            response.headers["Set-Cookie"] = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        return response

    @staticmethod
    def _json_body(headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(415, "POST bodies must be application/json")
        if body is None:
            raise RequestError(411, "POST needs a Content-Length")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(400, f"body is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RequestError(400, "body must be a JSON object")
        return data

    # -- content -------------------------------------------------------------------------------

    def _static_file(self, path: str) -> Response:
        name, content_type = STATIC_FILES[path]
        if name not in self._static:
            self._static[name] = resources.files(__package__).joinpath("static", name).read_bytes()
        response = Response(200, self._static[name], content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _image(self, quoted: str) -> Response:
        try:
            relative = unquote(quoted, errors="strict")
        except UnicodeDecodeError:
            raise RequestError(400, "image path is not valid UTF-8") from None
        if "\x00" in relative or "\\" in relative:
            raise RequestError(400, "image path has a NUL or backslash")
        root = self.config.images_dir
        candidate = os.path.join(root, relative)
        if os.path.isabs(relative) or not is_inside(root, candidate):
            raise RequestError(403, "path is outside the images folder")
        image = self.store.image_by_path(relative)
        if image is None:
            raise RequestError(404, "no such image in this set")
        real = os.path.realpath(candidate)
        extension = os.path.splitext(real)[1].lower()
        if extension not in BROWSER_TYPES:
            return self._transcoded(real, image.path)
        try:
            handle = open(real, "rb")  # noqa: SIM115 - closed by the handler after sending
        except OSError:
            raise RequestError(404, "image file cannot be read") from None
        response = Response(200, handle, BROWSER_TYPES[extension], os.fstat(handle.fileno()).st_size)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @staticmethod
    def _transcoded(real: str, label: str) -> Response:
        """TIFF and other files a browser cannot show: decoded with Pillow and sent as JPEG."""
        from nima_rt.io.decode import DecodeError, load_rgb

        try:
            picture = load_rgb(real, label)  # the project's one opener: EXIF, RGB, bomb policy
        except DecodeError:
            raise RequestError(415, f"{label}: cannot decode this image") from None
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=92)
        response = Response(200, buffer.getvalue(), "image/jpeg")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    def _info(self) -> dict[str, Any]:
        return {
            "prompt": self.config.prompt,
            "ratings_per_image": self.store.ratings_per_image,
            "images": int(self.store.query("SELECT COUNT(*) FROM images WHERE present = 1")[0][0]),  # type: ignore[call-overload]
        }

    def _state(self, rater: str, image: ImageRef | None) -> dict[str, Any]:
        return {"image": _image_json(image), "progress": asdict(self.store.progress(rater))}

    def _after(self, rater: Any) -> dict[str, Any]:
        return self._state(rater, self.store.next_image(rater))


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
