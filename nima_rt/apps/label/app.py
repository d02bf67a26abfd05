"""The rating app without the socket: ``LabelApp.handle(method, target, headers, body) -> Response``.

Routes (JSON in and out; every error is ``{"error": "..."}`` with a 4xx status, never a traceback):

- ``GET /`` the page; ``GET /static/app.js|app.css`` its script and style (package data, no CDN);
- ``GET /api/info`` prompt, K, image count;
- ``POST /api/next {"rater"}`` the rater's current photo (leased to them; ``null`` when none is left) and
  progress. It is a POST because it creates the rater and the lease: no GET changes anything;
- ``POST /api/rate {"rater", "image_id", "score"}``, ``POST /api/skip {"rater", "image_id"}``,
  ``POST /api/undo {"rater"}``: answer, then the next photo and progress;
- ``GET /images/<id>`` one registered photo, by its id.

Raters never see a file name: a photo is ``{"id", "url": "/images/<id>"}`` (a name like
``suite_sea_view.jpg`` sways a rating). A photo is served only when its id is registered *and* its real
path (symlinks resolved) lies inside the images folder at the time of the request; it is opened only
if it is a regular file. Request guards: :mod:`nima_rt.apps.label.guards`.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nima_rt.apps.label import guards
from nima_rt.apps.label.checks import SQLITE_MAX_INTEGER, RequestError, is_inside
from nima_rt.apps.label.store import ImageRef, Store

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
IMAGE_ID = re.compile(r"[0-9]{1,19}")
PAGE_PATHS = (*STATIC_FILES, "/favicon.ico")  # what another site may link to; everything else is guarded


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
    """A photo as the page sees it: its id and URL, never its file name."""
    return None if image is None else {"id": image.id, "url": f"/images/{image.id}"}


class LabelApp:
    """Request handling without the socket: ``handle(method, target, headers, body) -> Response``."""

    def __init__(self, store: Store, config: AppConfig) -> None:
        self.store = store
        self.config = config
        self._static: dict[str, bytes] = {}

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        try:
            return self._route(method, target, headers, body)
        except RequestError as exc:
            return json_response({"error": str(exc)}, exc.status)

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Response:
        if self.config.check_host:
            guards.check_host(headers.get("host"))
        url = urlsplit(target)
        if not url.path.startswith("/"):
            raise RequestError(400, "request target must be a path")
        query = parse_qs(url.query, keep_blank_values=True)
        if method == "GET" and url.path == "/" and "token" in query:
            return self._login(query["token"][-1])
        guards.check_token(headers, self.config.token)
        if method != "GET" or url.path not in PAGE_PATHS:
            guards.check_same_origin(headers)
        if method == "GET":
            return self._get(url.path)
        if method == "POST":
            return self._post(url.path, guards.json_body(headers, body))
        raise RequestError(405, f"method {method} not allowed")

    def _get(self, path: str) -> Response:
        if path in STATIC_FILES:
            return self._static_file(path)
        if path.startswith("/images/"):
            return self._image(path[len("/images/") :])
        if path == "/api/info":
            return json_response(self._info())
        if path == "/api/next":
            raise RequestError(405, "use POST /api/next with {\"rater\": NAME}: it leases a photo to the rater")
        if path == "/favicon.ico":
            return Response(204, b"", "text/plain")
        raise RequestError(404, f"no such page: {path[:200]}")

    def _post(self, path: str, data: dict[str, Any]) -> Response:
        rater = data.get("rater")
        if path == "/api/next":
            return json_response(self._after(rater))
        if path == "/api/rate":
            saved = self.store.rate(rater, data.get("image_id"), data.get("score"))  # type: ignore[arg-type]
            return json_response({"saved": _image_json(saved), **self._after(rater)})
        if path == "/api/skip":
            saved = self.store.skip(rater, data.get("image_id"))  # type: ignore[arg-type]
            return json_response({"skipped": _image_json(saved), **self._after(rater)})
        if path == "/api/undo":
            undone = self.store.undo(rater)  # type: ignore[arg-type]
            return json_response({"undone": _image_json(undone), **self._after(rater)})
        raise RequestError(404, f"no such endpoint: {path[:200]}")

    def _login(self, token: str) -> Response:
        if self.config.token is not None and not guards.token_ok(token, self.config.token):
            raise RequestError(403, "wrong token")
        response = Response(303, b"", "text/plain")
        response.headers["Location"] = "/"
        if self.config.token is not None:
            response.headers["Set-Cookie"] = f"{guards.TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        return response

    # -- content -------------------------------------------------------------------------------

    def _static_file(self, path: str) -> Response:
        name, content_type = STATIC_FILES[path]
        if name not in self._static:
            self._static[name] = resources.files(__package__).joinpath("static", name).read_bytes()
        response = Response(200, self._static[name], content_type)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _image(self, text: str) -> Response:
        if not IMAGE_ID.fullmatch(text):
            raise RequestError(404, "no such image in this set (photos are addressed by id: /images/<id>)")
        number = int(text)
        image = self.store.image_by_id(number) if 1 <= number <= SQLITE_MAX_INTEGER else None
        if image is None:
            raise RequestError(404, "no such image in this set")
        real = os.path.realpath(os.path.join(self.config.images_dir, image.path))
        if not is_inside(self.config.images_dir, real):
            raise RequestError(403, "path is outside the images folder")
        label = f"image {image.id}"  # raters never see a file name, not even in an error
        extension = os.path.splitext(real)[1].lower()
        if extension not in BROWSER_TYPES:
            return self._transcoded(real, label)
        from nima_rt.io.files import RefusedFile, open_regular

        try:
            handle = open_regular(real, label, "an image file")  # closed by the handler after sending
        except RefusedFile:
            raise RequestError(404, f"{label}: the file cannot be read") from None
        response = Response(200, handle, BROWSER_TYPES[extension], os.fstat(handle.fileno()).st_size)  # type: ignore[arg-type]
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

    def _after(self, rater: Any) -> dict[str, Any]:
        image = self.store.next_image(rater)
        return {"image": _image_json(image), "progress": asdict(self.store.progress(rater))}


__all__ = ["DEFAULT_PROMPT", "AppConfig", "LabelApp", "Response", "json_response"]
