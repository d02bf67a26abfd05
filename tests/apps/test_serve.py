"""`nima-rt serve` answered over real HTTP: parity with `nima-rt score`, the listing form, error codes,
health, metrics, micro-batching across requests, and the CLI's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers.paths import REPO
from helpers.photos import photo_like
from PIL import Image

pytest.importorskip("uvicorn", reason="nima-rt serve needs the 'serve' extra")
from helpers.serve_client import Service, start_service  # noqa: E402

PHOTOS = sorted((REPO / "examples" / "photos").glob("*.jpg"))


@pytest.fixture(scope="module")
def default_service():
    """The bundled default models, as `nima-rt serve` with no --model serves them."""
    service = start_service([])
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def tiny_service(tiny_model: Path):
    service = start_service(["--model", str(tiny_model), "--max-files", "4", "--max-wait-ms", "300",
                             "--max-batch", "8"])
    yield service
    assert service.stop() == 0


def _cli_rows(*args: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "nima_rt", "score", *args, "-f", "jsonl", "-q"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _jpeg(seed: int, width: int = 320, height: int = 240) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(photo_like(seed, width, height)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_scores_over_http_equal_nima_rt_score(default_service: Service) -> None:
    expected = {Path(row["path"]).name: row for row in _cli_rows(*map(str, PHOTOS))}
    columns = default_service.request("GET", "/").json()["models"]
    assert columns and all(column in expected[PHOTOS[0].name] for column in columns)
    one_by_one = {}
    for photo in PHOTOS:
        answer = default_service.post_image(photo.read_bytes())
        assert answer.status == 200, answer.body
        body = answer.json()
        assert body["models"] == columns and len(body["images"]) == 1
        one_by_one[photo.name] = body["images"][0]
    together = default_service.post_files([(p.name, p.read_bytes()) for p in PHOTOS]).json()["images"]
    assert [row["path"] for row in together] == [p.name for p in PHOTOS]  # upload order
    for row in together:
        for got in (row, one_by_one[row["path"]]):
            want = expected[row["path"]]
            assert got["error"] is None
            for column in columns:
                assert abs(got[column]["mean"] - want[column]["mean"]) <= 1e-5
                assert got[column]["std"] == pytest.approx(want[column]["std"], abs=1e-5)
                assert got[column]["dist"] == pytest.approx(want[column]["dist"], abs=1e-5)


def test_listing_form_ranks_as_group_by_parent(default_service: Service, tmp_path: Path) -> None:
    listing = tmp_path / "listing"
    listing.mkdir()
    for photo in PHOTOS:
        (listing / photo.name).write_bytes(photo.read_bytes())
    files = [(f"listing/{p.name}", p.read_bytes()) for p in PHOTOS]
    # the default rule (no rank option), as `--group-by parent` picks it
    cli = _cli_rows(str(listing), "--group-by", "parent")
    answer = default_service.post_files(files, path="/v1/rank?group_by=parent")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert [(Path(r["path"]).name, r["rank"], r["best"]) for r in body["images"]] == \
        [(Path(r["path"]).name, r["rank"], r["best"]) for r in cli]
    assert [r["group"] for r in body["images"]] == ["listing"] * len(PHOTOS)
    # a rank rule, as `--rank-by` takes it
    column = body["models"][-1]
    rule = f"{column} if {column}>=5"
    cli = _cli_rows(str(listing), "--group-by", "parent", "--rank-by", rule)
    body = default_service.post_files(files, path=f"/v1/rank?group_by=parent&rank_by={quote(rule)}").json()
    assert body["rule"] == cli[0]["best_by"]
    for got, want in zip(body["images"], cli, strict=True):
        assert (Path(got["path"]).name, got["rank"], got["best"], got["best_by"]) == \
            (Path(want["path"]).name, want["rank"], want["best"], want["best_by"])
        assert got["rank_score"] == pytest.approx(want["rank_score"], abs=1e-5)


def test_listing_form_takes_the_rank_options(default_service: Service) -> None:
    column = default_service.request("GET", "/").json()["models"][0]
    files = [(p.name, p.read_bytes()) for p in PHOTOS] + [("broken.jpg", b"\xff\xd8 not a jpeg")]
    body = default_service.post_files(files, path=f"/v1/rank?sort_by={column}&top=2").json()
    assert [r["rank"] for r in body["images"]] == [1, 2]  # --top drops failed rows and keeps the best K
    means = [r[column]["mean"] for r in body["images"]]
    assert means == sorted(means, reverse=True)
    best = max(_cli_rows(*map(str, PHOTOS)), key=lambda r: r[column]["mean"])
    assert body["images"][0]["path"] == Path(best["path"]).name and body["rule"] == column
    everything = default_service.post_files(files, path=f"/v1/rank?rank_by={quote(column + ' if ' + column + '>=0')}")
    everything = everything.json()
    assert everything["images"][-1]["path"] == "broken.jpg" and everything["images"][-1]["rank"] is None
    assert everything["images"][-1]["error"] == "broken.jpg: not an image file Pillow can read"


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "error"), [
    ("GET", "/v1/score", None, {}, 405, "GET /v1/score: method not allowed (allowed: POST)"),
    ("POST", "/v2/score", b"x", {}, 404, "no route POST /v2/score: the service answers POST /v1/score, POST "
     "/v1/rank, GET /healthz, GET /readyz, GET /metrics"),
    ("POST", "/v1/score", b"{}", {"Content-Type": "application/json"}, 415, "Content-Type application/json is not "
     "an image: send the image's bytes as image/* or application/octet-stream, or multipart/form-data with 'file' "
     "parts"),
    ("POST", "/v1/score", b"", {"Content-Type": "image/jpeg"}, 400, "empty request body: send an image"),
    ("POST", "/v1/score", b"not an image", {"Content-Type": "image/jpeg"}, 422,
     "<body>: not an image file Pillow can read"),
    ("POST", "/v1/score", b"--x\r\n", {"Content-Type": "multipart/form-data"}, 400,
     "multipart/form-data without a boundary in its Content-Type"),
    ("POST", "/v1/rank?rank_by=nope", b"x", {"Content-Type": "image/jpeg"}, 400,
     "rank_by: rank rule 'nope': unknown model column nope (the models give tiny)"),
    ("POST", "/v1/rank?top=0", b"x", {"Content-Type": "image/jpeg"}, 400, "top must be a whole number >= 1, got '0'"),
    ("POST", "/v1/rank?order=asc", b"x", {"Content-Type": "image/jpeg"}, 400,
     "unknown query parameter 'order' (rank_by, sort_by, top, group_by)"),
])
def test_errors_are_one_line_json(tiny_service: Service, method: str, path: str, body: bytes | None,
                                  headers: dict[str, str], status: int, error: str) -> None:
    answer = tiny_service.request(method, path, body, headers)
    assert (answer.status, answer.json()["error"]) == (status, error)
    assert answer.headers["content-type"] == "application/json"
    if status == 405:
        assert answer.headers["allow"] == "POST"


def test_multipart_forms(tiny_service: Service) -> None:
    mixed = tiny_service.post_files([("a.jpg", _jpeg(1)), ("b.jpg", b"junk"), ("c.jpg", _jpeg(2))]).json()
    assert [r["path"] for r in mixed["images"]] == ["a.jpg", "b.jpg", "c.jpg"]
    assert mixed["images"][1]["error"] == "b.jpg: not an image file Pillow can read"
    assert mixed["images"][0]["tiny"]["mean"] > 0 and mixed["images"][1]["tiny"] is None
    all_bad = tiny_service.post_files([("x.jpg", b"junk"), ("y.jpg", b"")])
    assert all_bad.status == 422 and all_bad.json()["error"] == "none of the 2 images could be scored"
    too_many = tiny_service.post_files([(f"{i}.jpg", _jpeg(i)) for i in range(5)])
    assert (too_many.status, too_many.json()["error"]) == (413, "more than 4 files in one request (--max-files)")
    from helpers.serve_client import multipart

    other_field, content_type = multipart([("a.jpg", _jpeg(1))], field_name="image")
    answer = tiny_service.request("POST", "/v1/score", other_field, {"Content-Type": content_type})
    assert (answer.status, answer.json()["error"]) == (
        400, "multipart body has no 'file' part: send each image as a part named 'file'")


def test_health_readiness_and_metrics(tiny_service: Service) -> None:
    assert tiny_service.request("GET", "/healthz").json() == {"status": "ok"}
    assert tiny_service.request("GET", "/readyz").json() == {"status": "ready", "models": ["tiny"]}
    before = tiny_service.metric("nima_rt_serve_requests_total", 'route="/v1/score",status="200"')
    scored = tiny_service.metric("nima_rt_serve_images_total", 'outcome="scored"')
    assert tiny_service.post_image(_jpeg(5)).status == 200
    assert tiny_service.post_image(b"junk").status == 422
    assert tiny_service.metric("nima_rt_serve_requests_total", 'route="/v1/score",status="200"') == before + 1
    assert tiny_service.metric("nima_rt_serve_images_total", 'outcome="scored"') == scored + 1
    answer = tiny_service.request("GET", "/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.body.decode()
    for sample in ('nima_rt_serve_requests_total{route="/v1/score",status="422"}',
                   'nima_rt_serve_request_seconds_bucket{le="0.1",route="/v1/score"}',
                   'nima_rt_serve_batch_images_bucket{le="8.0"}', 'nima_rt_serve_queue_images{state="admitted"} 0.0',
                   'nima_rt_serve_queue_images{state="waiting"} 0.0', "nima_rt_serve_body_bytes 0.0"):
        assert sample in text, sample
    tiny_service.request("GET", "/some/random/path")
    assert 'route="other",status="404"' in tiny_service.request("GET", "/metrics").body.decode()


def test_concurrent_requests_share_batches(tiny_service: Service) -> None:
    batches = tiny_service.metric("nima_rt_serve_batch_images_count")
    images = tiny_service.metric("nima_rt_serve_batch_images_sum")
    bodies = [_jpeg(seed, 900, 700) for seed in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(tiny_service.post_image, bodies))
    assert [a.status for a in answers] == [200] * 16
    singles = [tiny_service.post_image(body).json()["images"][0]["tiny"] for body in bodies[:4]]
    assert singles == [a.json()["images"][0]["tiny"] for a in answers[:4]]  # batching changes no score
    new_batches = tiny_service.metric("nima_rt_serve_batch_images_count") - batches - 4
    assert tiny_service.metric("nima_rt_serve_batch_images_sum") - images == 20
    assert new_batches <= 8, f"16 concurrent requests ran in {new_batches} batches: not batched together"


def test_a_lone_request_does_not_wait_for_company(tiny_model: Path) -> None:
    service = start_service(["--model", str(tiny_model), "--max-wait-ms", "5000"])
    try:
        import time

        started = time.perf_counter()
        assert service.post_image(_jpeg(3)).status == 200
        assert time.perf_counter() - started < 4.0  # nothing else was decoding: no 5 s wait
    finally:
        assert service.stop() == 0


def test_the_lean_install_does_not_import_the_server_stack() -> None:
    code = ("import sys, nima_rt, nima_rt.cli; "
            "print(','.join(m for m in ('starlette', 'uvicorn', 'prometheus_client', 'python_multipart') "
            "if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ""


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nima_rt", "serve", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_the_command_refuses_what_it_cannot_serve(tmp_path: Path, tiny_service: Service) -> None:
    taken = _serve_cli("--model", "tiny.onnx", "--port", "0")
    assert taken.returncode == 1 and "tiny.onnx: no such model file" in taken.stderr
    busy = _serve_cli("--port", str(tiny_service.port), "--host", tiny_service.host)
    assert busy.returncode == 1
    assert busy.stderr.strip().endswith(f"error: cannot listen on {tiny_service.host}:{tiny_service.port} "
                                        "(Address already in use)")
    clash = _serve_cli("--max-files", "10", "--max-queue", "5")
    assert clash.returncode == 2 and "--max-files" in clash.stderr and "could never be admitted" in clash.stderr
