"""Helpers for the labelling-app tests: photo folders, servers in a thread or a subprocess, raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from nima_rt.apps.label.server import LabelHTTPServer, make_server
from nima_rt.apps.label.store import Store

URL_LINE = re.compile(r"rating page: (http://[^/\s]+/)")


def make_photos(root: Path, count: int, size: tuple[int, int] = (48, 32)) -> list[str]:
    """``count`` small JPEGs with distinct colours under ``root`` (two sub-folders); relative paths."""
    paths = []
    for index in range(count):
        relative = f"{'set_a' if index % 2 == 0 else 'set_b'}/photo_{index:02d}.jpg"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (25 * index % 256, 255 - 20 * index % 256, 90)).save(target, quality=90)
        paths.append(relative)
    return sorted(paths)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def error(self, status: int) -> str:
        """Assert a refusal: ``status``, a JSON ``{"error": ...}`` body, no traceback; return the message."""
        assert self.status == status, (self.status, self.body)
        assert self.headers["content-type"] == "application/json"
        body = self.json()
        assert set(body) == {"error"}
        assert "Traceback" not in body["error"] and 'File "' not in body["error"]
        return str(body["error"])


class Client:
    """Raw HTTP/1.1 requests (paths are sent exactly as given: no normalisation of ``..``)."""

    def __init__(self, url: str) -> None:
        match = re.fullmatch(r"http://(\[[^\]]+\]|[^:/]+):(\d+)/", url)
        if match is None:
            raise ValueError(f"unexpected server URL {url!r}")
        self.host, self.port = match.group(1).strip("[]"), int(match.group(2))

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post_without_length(self, path: str) -> Reply:
        """A JSON POST with no Content-Length header (http.client adds one unless asked not to)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.putrequest("POST", path)
            connection.putheader("Content-Type", "application/json")
            connection.endheaders()
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, data: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request(
            "POST", path, json.dumps(data).encode("utf-8"), {"Content-Type": "application/json", **(headers or {})}
        )

    def next_image(self, rater: str) -> dict[str, Any] | None:
        """The rater's current photo, ``{"id", "url"}`` (``POST /api/next`` leases it)."""
        reply = self.post("/api/next", {"rater": rater})
        assert reply.status == 200, reply.body
        return reply.json()["image"]


def path_of(db: Path, image: dict[str, Any]) -> str:
    """The file behind a photo the page was sent (by id: the page never gets the path), from the database."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        return str(connection.execute("SELECT path FROM images WHERE id = ?", (image["id"],)).fetchone()[0])


@contextmanager
def thread_server(
    images: Path, db: Path, ratings_per_image: int = 3, token: str | None = None, **store_options: Any
) -> Iterator[tuple[LabelHTTPServer, Store]]:
    """A real server on 127.0.0.1 with an ephemeral port, served from a thread."""
    store = Store.open(db, ratings_per_image=ratings_per_image, **store_options)
    store.sync_images(images)
    server = make_server(store, images, "127.0.0.1", 0, token=token)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, store
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        store.close()


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from nima_rt.cli import main; main()", *args]


@contextmanager
def subprocess_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """``nima-rt label serve ARGS`` in a child process; yields it, its URL and the stderr lines so far."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        cli_command("label", "serve", *args), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            match = URL_LINE.search(line)
            if match:
                yield process, match.group(1), lines
                break
        else:
            raise AssertionError(f"server exited with {process.wait()} before serving: {lines}")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
