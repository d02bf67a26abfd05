"""A started `nima-rt serve` process and plain HTTP requests to it (http.client and raw sockets), for the
service's tests and the install test."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helpers.paths import REPO

SERVING = re.compile(r"^serving .* on http://(?P<host>[^ ]+):(?P<port>\d+) ")


@dataclass
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Service:
    """A `nima-rt serve` child process and where it listens; its stderr lines are collected as they come."""

    process: subprocess.Popen
    host: str
    port: int
    lines: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 60) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def post_image(self, data: bytes, path: str = "/v1/score", content_type: str = "image/jpeg") -> Answer:
        return self.request("POST", path, data, {"Content-Type": content_type})

    def post_files(self, files: Sequence[tuple[str, bytes]], path: str = "/v1/score") -> Answer:
        body, content_type = multipart(files)
        return self.request("POST", path, body, {"Content-Type": content_type})

    def connect(self, timeout: float = 30) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def rss_kb(self) -> int:
        """The server's resident memory now (VmRSS, kB)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics (``name{labels}``), 0 when absent."""
        text = self.request("GET", "/metrics").body.decode()
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (killed after ``timeout`` seconds: then the code is negative)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def multipart(files: Sequence[tuple[str, bytes]], field_name: str = "file") -> tuple[bytes, str]:
    """A multipart/form-data body with one ``field_name`` part per (filename, bytes); and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{name}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def read_answer(sock: socket.socket) -> Answer:
    """The HTTP answer on a raw socket (reads until the body's Content-Length or the connection closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body)


def start_service(args: Sequence[str], command: Sequence[str] | None = None, env: dict[str, str] | None = None,
                  timeout: float = 120) -> Service:
    """Start ``nima-rt serve --port 0 ARGS`` (or ``command``) and wait until it says where it listens."""
    argv = list(command) if command is not None else [sys.executable, "-m", "nima_rt", "serve", "--port", "0"]
    process = subprocess.Popen([*argv, *args], cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True, env=env if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    found: queue.Queue[tuple[str, int] | None] = queue.Queue()

    def pump() -> None:  # keeps reading so the pipe never fills
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            match = SERVING.match(line)
            if match:
                found.put((match["host"].strip("[]"), int(match["port"])))
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        where = found.get(timeout=timeout)
    except queue.Empty:
        where = None
    if where is None:
        process.kill()
        process.wait()
        time.sleep(0.1)
        raise RuntimeError("nima-rt serve did not start:\n" + "\n".join(lines))
    return Service(process, where[0], where[1], lines)
