"""`nima-rt serve` under load, beside `nima-rt score` and a naive server, on the same 1-3 MP JPEGs.

    python benchmarks/serve_load.py [--files 64] [--repeats 3] [--clients 1,8,16,32] [--requests 96]
                                    [--model M ...] [--sources PHOTOS] [--workdir DIR] [--serve-args "..."]
                                    [--sweep] [--quick] [--json OUT]

Everything listens on 127.0.0.1 and is bounded: each load level sends ``--requests`` requests (one image
each, raw body) from N client threads over keep-alive connections, after N warm-up requests. Each repeat
runs, in a rotated order: `nima-rt score` on the folder (its summary's images/s: the batch baseline);
the single-image API latency (``Scorer.score_bytes`` on one file at a time, in this process); the service
(``nima-rt serve``) at every load level; and a naive server (stdlib ThreadingHTTPServer, one shared Scorer,
``score_bytes`` per request: each request runs through the models alone, as a first Flask service does)
at every load level. Per level: requests/s, p50 and p99 latency, and the server's CPU ms per image (its
own user + system time: the figure neighbours on a shared machine move least). Ratios are taken within
a repeat, then the median over repeats is printed. ``--sweep`` compares --max-batch / --max-wait-ms
candidates at 8 and 32 clients instead (the defaults come from it, docs/guide/serve.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cpu_throughput import (
    children_cpu_s,
    cli_rate,
    cpu_model,
    load_average,
    make_corpus,
    quick_corpus,
    run_cli,
    source_photos,
)

HOST = "127.0.0.1"
SERVING = re.compile(r"^serving .* on http://127\.0\.0\.1:(?P<port>\d+) ")
SWEEP = {
    "batch 4, wait 5 ms (default)": [],
    "batch 8, wait 5 ms": ["--max-batch", "8"],
    "batch 16, wait 5 ms": ["--max-batch", "16"],
    "batch 4, wait 0 ms": ["--max-wait-ms", "0"],
    "batch 8, wait 20 ms": ["--max-batch", "8", "--max-wait-ms", "20"],
}


@dataclass
class Level:
    """One load level of one server in one repeat."""

    clients: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_image: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass
class Figures:
    score_rates: list[float] = field(default_factory=list)
    score_cpu_ms: list[float] = field(default_factory=list)
    single_ms: list[float] = field(default_factory=list)
    servers: dict[str, dict[int, list[Level]]] = field(default_factory=dict)


# -- servers ------------------------------------------------------------------------------------------

class Server:
    """A server child process on 127.0.0.1 and its port."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        port = None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            match = SERVING.match(line)
            if match:
                port = int(match["port"])
                break
        if port is None:
            raise SystemExit("error: the server did not start:\n" + "\n".join(self.lines))
        self.port = port
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_argv(models: list[str], extra: list[str]) -> list[str]:
    model_args = [arg for model in models for arg in ("--model", model)]
    return [sys.executable, "-m", "nima_rt", "serve", "--host", HOST, "--port", "0", "-q", *model_args, *extra]


def naive_argv(models: list[str]) -> list[str]:
    return [sys.executable, __file__, "--naive-server", *[arg for model in models for arg in ("--model", model)]]


def run_naive_server(models: list[str]) -> int:
    """The baseline: a threaded stdlib server, one shared Scorer, each request scored alone."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nima_rt import Scorer
    from nima_rt.io.scores.writers import json_row

    scorer = Scorer(models or [None])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rows = [json_row(r, scorer.columns) for r in scorer.score_bytes(body)]
            answer = json.dumps({"images": rows}).encode()
            self.send_response(200 if rows[0]["error"] is None else 422)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # the stdlib's 5 resets connections at 32 clients (Flask's server: 128)
        daemon_threads = True

    server = Server((HOST, 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving {','.join(scorer.columns)} on http://{HOST}:{server.server_address[1]} (naive)",
          file=sys.stderr, flush=True)
    server.serve_forever()
    scorer.close()
    return 0


# -- load -----------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def load(server: Server, bodies: list[bytes], clients: int, requests: int) -> Level:
    """``requests`` POSTs from ``clients`` threads (keep-alive), after one warm-up request per client."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests + clients))

    def client(_: int) -> None:
        connection = http.client.HTTPConnection(HOST, server.port, timeout=300)
        try:
            for index in counter:
                body = bodies[index % len(bodies)]
                started = time.perf_counter()
                try:
                    connection.request("POST", "/v1/score", body, {"Content-Type": "image/jpeg"})
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except OSError:  # a refused or reset connection is an error of the server under test
                    connection.close()
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    if index >= clients and ok:  # the first `clients` requests are the warm-up
                        latencies.append(elapsed)
                    errors[0] += not ok
        finally:
            connection.close()

    # warm-up: the first request of each client is not timed; then the clock runs over the rest
    cpu_before = server.cpu_s()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - started
    cpu = server.cpu_s() - cpu_before
    total = requests + clients
    seconds *= requests / total  # the warm-up's share of the wall time is not counted
    return Level(clients, len(latencies), seconds, 1000 * percentile(latencies, 0.5),
                 1000 * percentile(latencies, 0.99), 1000 * cpu / total, errors[0])


def score_run(corpus: Path, files: list[Path], workdir: Path, model_args: list[str], figures: Figures) -> float:
    """`nima-rt score` on the folder: its summary's images/s; its CPU ms per image (the child's CPU time
    less that of a one-file run, so start-up is not counted) goes to ``figures``."""
    one = workdir / "one"
    one.mkdir(exist_ok=True)
    if not (one / files[0].name).exists():
        (one / files[0].name).write_bytes(files[0].read_bytes())
    before = children_cpu_s()
    run_cli(["score", str(one), "-o", str(workdir / "one.csv"), "--overwrite", *model_args])
    startup = children_cpu_s() - before
    before = children_cpu_s()
    _, _, stderr = run_cli(["score", str(corpus), "-o", str(workdir / "scores.csv"), "--overwrite", *model_args])
    figures.score_cpu_ms.append(1000 * (children_cpu_s() - before - startup) / (len(files) - 1))
    return cli_rate(stderr)


def single_image_ms(models: list[str], bodies: list[bytes]) -> float:
    """Median ms of ``Scorer.score_bytes`` on one image at a time (the library's single-image latency)."""
    from nima_rt import Scorer

    with Scorer(models or [None]) as scorer:
        for body in bodies[:2]:
            list(scorer.score_bytes(body))
        times = []
        for body in bodies:
            started = time.perf_counter()
            list(scorer.score_bytes(body))
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


# -- report --------------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(figures: Figures, levels: list[int]) -> list[str]:
    score = median(figures.score_rates)
    lines = [f"nima-rt score (batch, same files): {score:.1f} images/s (median of {len(figures.score_rates)}: "
             f"{', '.join(f'{r:.1f}' for r in figures.score_rates)}); CPU ms/image "
             f"{median(figures.score_cpu_ms):.1f} (start-up not counted)",
             f"single-image API latency (Scorer.score_bytes, one file at a time): {median(figures.single_ms):.0f} ms "
             "median", "",
             "| server | clients | requests/s | p50 ms | p99 ms | CPU ms/image | / nima-rt score | p99 / single |",
             "|---|---|---|---|---|---|---|---|"]
    for name, by_level in figures.servers.items():
        for clients in levels:
            runs = by_level.get(clients, [])
            if not runs:
                continue
            ratios = [run.rate / rate for run, rate in zip(runs, figures.score_rates, strict=False)]
            lines.append(
                f"| {name} | {clients} | {median([r.rate for r in runs]):.1f} | {median([r.p50_ms for r in runs]):.0f} "
                f"| {median([r.p99_ms for r in runs]):.0f} | {median([r.cpu_ms_per_image for r in runs]):.1f} "
                f"| {median(ratios):.2f} | {median([r.p99_ms for r in runs]) / median(figures.single_ms):.2f} |")
            errors = sum(r.errors for r in runs)
            if errors:
                lines.append(f"|   ({errors} non-200 answers) | | | | | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", default="1,8,16,32")
    parser.add_argument("--requests", type=int, default=96, help="timed requests per load level")
    parser.add_argument("--model", action="append", default=[], help="repeat for several (default: bundled)")
    parser.add_argument("--sources", type=Path, default=None, help="folder of real photos to cut the corpus from")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--serve-args", default="", help="extra `nima-rt serve` options for the service")
    parser.add_argument("--sweep", action="store_true", help="compare --max-batch/--max-wait-ms candidates")
    parser.add_argument("--quick", action="store_true", help="generated photos, 8 files, 1 repeat, 1 and 4 clients")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        return run_naive_server(args.model)
    if args.quick:
        args.files, args.repeats, args.clients, args.requests = 8, 1, "1,4", 8
    levels = [int(c) for c in args.clients.split(",")]
    if args.sweep:
        levels = [c for c in levels if c >= 8] or [8, 32]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nima-serve-load-"))
    corpus = workdir / ("quick" if args.quick else "corpus")
    files = sorted(corpus.glob("*.jpg")) if corpus.is_dir() else []
    if len(files) != args.files:
        for old in files:
            old.unlink()
        files = (quick_corpus(corpus, args.files) if args.quick
                 else make_corpus(source_photos(args.sources, workdir / "references"), corpus, args.files))
    bodies = [path.read_bytes() for path in files]
    sizes = sorted(len(b) for b in bodies)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average {load_average()} at the start; {len(files)} "
          f"JPEGs ({sizes[0] // 1024}-{sizes[-1] // 1024} KB); {args.requests} timed requests per level; "
          f"127.0.0.1 only", flush=True)
    services = ({f"serve, {name}": extra for name, extra in SWEEP.items()} if args.sweep
                else {"nima-rt serve": args.serve_args.split(), "naive (threads, 1 request per run)": None})
    figures = Figures(servers={name: {} for name in services})
    model_args = [arg for model in args.model for arg in ("--model", model)]
    steps = ["score", "single", *services]
    for repeat in range(args.repeats):
        order = steps[repeat % len(steps):] + steps[:repeat % len(steps)]
        for step in order:
            if step == "score":
                figures.score_rates.append(score_run(corpus, files, workdir, model_args, figures))
            elif step == "single":
                figures.single_ms.append(single_image_ms(args.model, bodies))
            else:
                extra = services[step]
                server = Server(naive_argv(args.model) if extra is None else serve_argv(args.model, extra))
                try:
                    for clients in levels:
                        level = load(server, bodies, clients, args.requests)
                        figures.servers[step].setdefault(clients, []).append(level)
                finally:
                    server.stop()
        print(f"repeat {repeat + 1}/{args.repeats} done; load average {load_average()}", flush=True)
    print()
    for line in table(figures, levels):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({
            "cpu": cpu_model(), "files": len(files), "score_rates": figures.score_rates,
            "score_cpu_ms": figures.score_cpu_ms, "single_ms": figures.single_ms,
            "servers": {name: {str(c): [asdict(level) | {"rate": level.rate} for level in runs]
                               for c, runs in by_level.items()} for name, by_level in figures.servers.items()},
        }, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
