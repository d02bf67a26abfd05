"""Labelling app: HTTP-level tests against a real server on 127.0.0.1 (ephemeral port), the store's
assignment rule, the export and the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.label_helpers import Client, cli_command, make_photos, path_of, subprocess_server, thread_server
from scipy.stats import spearmanr
from typer.testing import CliRunner

from nima_rt.apps.label.export import COUNT_COLUMNS, collect
from nima_rt.apps.label.store import LabelError, Store
from nima_rt.cli import app
from nima_rt.runtime.metrics import spearman


def db_rows(db: Path) -> list[tuple[str, str, int | None]]:
    """(rater, image path, score) in answer order, read through a fresh connection."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT ra.name, i.path, r.score FROM ratings r JOIN raters ra ON ra.id = r.rater_id "
            "JOIN images i ON i.id = r.image_id ORDER BY r.id"
        ).fetchall()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    make_photos(root, 6)
    return root


# -- rating, skip, undo -------------------------------------------------------------------------


def test_rate_stores_the_score_and_moves_on(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    with thread_server(photos, db) as (server, _):
        client = Client(server.url)
        first = client.next_image("ann")
        assert first == {"id": first["id"], "url": f"/images/{first['id']}"}  # no file name for the rater
        assert client.next_image("ann") == first  # the same photo until it is answered
        image = client.get(first["url"])
        assert image.status == 200 and image.headers["content-type"] == "image/jpeg"
        assert image.body == (photos / path_of(db, first)).read_bytes()

        reply = client.post("/api/rate", {"rater": "ann", "image_id": first["id"], "score": 7})
        assert reply.status == 200
        data = reply.json()
        assert data["saved"]["id"] == first["id"]
        assert data["image"]["id"] != first["id"]
        assert data["progress"] == {
            "rated": 1,
            "skipped": 0,
            "remaining": 5,
            "images": 6,
            "complete": 0,
            "ratings": 1,
            "ratings_per_image": 3,
        }
        # committed before the reply: another connection sees it while the server runs
        assert db_rows(db) == [("ann", path_of(db, first), 7)]
        again = client.post("/api/rate", {"rater": "ann", "image_id": first["id"], "score": 10})
        assert again.error(409) == f"rater 'ann' already answered image {first['id']}"
        again = client.post("/api/rate", {"rater": " Ann ", "image_id": first["id"], "score": 10})
        assert again.error(409) == f"rater 'Ann' already answered image {first['id']}"  # one person, one vote
        assert db_rows(db) == [("ann", path_of(db, first), 7)]


def test_skip_is_not_a_vote_and_the_photo_never_comes_back(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    with thread_server(photos, db, ratings_per_image=1) as (server, _):
        client = Client(server.url)
        skipped = client.next_image("ann")
        assert skipped is not None
        data = client.post("/api/skip", {"rater": "ann", "image_id": skipped["id"]}).json()
        assert data["skipped"]["id"] == skipped["id"]
        assert data["progress"]["skipped"] == 1 and data["progress"]["rated"] == 0
        seen = []
        while (image := client.next_image("ann")) is not None:
            seen.append(image["id"])
            client.post("/api/rate", {"rater": "ann", "image_id": image["id"], "score": 5})
        assert skipped["id"] not in seen and len(seen) == 5
        # the skipped photo still needs a rating: another rater gets exactly it
        assert client.next_image("bob") == skipped
    assert db_rows(db)[0] == ("ann", path_of(db, skipped), None)


def test_undo_reopens_the_last_answers_in_reverse_order(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    with thread_server(photos, db) as (server, _):
        client = Client(server.url)
        assert client.post("/api/undo", {"rater": "ann"}).error(409) == "rater 'ann' has nothing to undo"
        first = client.next_image("ann")
        second = client.post("/api/rate", {"rater": "ann", "image_id": first["id"], "score": 3}).json()["image"]
        client.post("/api/skip", {"rater": "ann", "image_id": second["id"]})

        undo = client.post("/api/undo", {"rater": "ann"}).json()
        assert undo["undone"] == second and undo["image"] == second
        assert undo["progress"]["skipped"] == 0 and undo["progress"]["rated"] == 1
        undo = client.post("/api/undo", {"rater": "ann"}).json()
        assert undo["undone"] == first and undo["image"] == first
        assert undo["progress"]["rated"] == 0
        assert db_rows(db) == []
        # rated again, with another score
        client.post("/api/rate", {"rater": "ann", "image_id": first["id"], "score": 9})
        assert db_rows(db) == [("ann", path_of(db, first), 9)]


# -- assignment ---------------------------------------------------------------------------------


def test_each_photo_gets_k_ratings_from_distinct_raters(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    with thread_server(photos, db, ratings_per_image=2) as (server, _):
        client = Client(server.url)
        served: dict[str, list[int]] = {}
        # raters take turns, one photo at a time
        active = ["ann", "bob", "cy", "dee"]
        while active:
            for rater in list(active):
                image = client.next_image(rater)
                if image is None:
                    active.remove(rater)
                    continue
                served.setdefault(rater, []).append(image["id"])
                client.post("/api/rate", {"rater": rater, "image_id": image["id"], "score": 6})
        final = client.post("/api/next", {"rater": "ann"}).json()["progress"]
    rows = db_rows(db)
    by_image: dict[str, list[str]] = {}
    for rater, path, _ in rows:
        by_image.setdefault(path, []).append(rater)
    assert sorted(by_image) == make_photos(tmp_path / "again", 6)
    assert all(len(raters) == 2 and len(set(raters)) == 2 for raters in by_image.values())
    assert all(len(paths) == len(set(paths)) for paths in served.values())  # nobody saw a photo twice
    assert len(rows) == 12 and sum(len(paths) for paths in served.values()) == 12
    assert final["complete"] == 6 and final["ratings"] == 12 and final["remaining"] == 0


def test_concurrent_raters_never_push_a_photo_past_k(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    make_photos(root, 12)
    db = tmp_path / "ratings.sqlite"
    raters = [f"rater{index}" for index in range(6)]
    start = threading.Barrier(len(raters))
    failures: list[str] = []

    def rate_until_done(client: Client, rater: str) -> None:
        start.wait()
        while (image := client.next_image(rater)) is not None:
            reply = client.post("/api/rate", {"rater": rater, "image_id": image["id"], "score": 5})
            if reply.status != 200:
                failures.append(f"{rater}: {reply.status} {reply.body!r}")

    with thread_server(root, db, ratings_per_image=2) as (server, _):
        threads = [threading.Thread(target=rate_until_done, args=(Client(server.url), r)) for r in raters]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    with sqlite3.connect(db) as connection:
        counts = connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT rater_id) FROM ratings GROUP BY image_id"
        ).fetchall()
    assert counts == [(2, 2)] * 12


def test_a_live_lease_holds_the_last_missing_rating(photos: Path, tmp_path: Path) -> None:
    now = [1000.0]
    with Store.open(tmp_path / "r.sqlite", ratings_per_image=1, lease_seconds=60, clock=lambda: now[0]) as store:
        store.sync_images(photos)
        held = store.next_image("ann")
        assert held is not None
        others = set()
        while (image := store.next_image("bob")) is not None:
            others.add(image.path)
            store.rate("bob", image.id, 4)
        assert held.path not in others and len(others) == 5
        now[0] += 61  # ann walked away: the lease expires and the photo goes to someone else
        assert store.next_image("cy") == held
        assert store.next_image("ann") is None  # cy holds it now, everything else is complete


def test_photos_that_vanish_are_no_longer_served(photos: Path, tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.sqlite", ratings_per_image=1) as store:
        assert store.sync_images(photos).found == 6
        (photos / "set_a" / "photo_00.jpg").unlink()
        scan = store.sync_images(photos)
        assert (scan.found, scan.added, scan.missing) == (5, 0, 1)
        served = []
        while (image := store.next_image("ann")) is not None:
            served.append(image.path)
            store.rate("ann", image.id, 5)
        assert "set_a/photo_00.jpg" not in served and len(served) == 5


# -- bad requests -------------------------------------------------------------------------------


def test_bad_requests_get_4xx_json_and_no_traceback(photos: Path, tmp_path: Path) -> None:
    with thread_server(photos, tmp_path / "r.sqlite") as (server, _):
        client = Client(server.url)
        image = client.next_image("ann")
        json_type = {"Content-Type": "application/json"}
        for score in (0, 11, "7", 7.5, True, None):
            reply = client.post("/api/rate", {"rater": "ann", "image_id": image["id"], "score": score})
            assert reply.error(400) == f"score must be an integer from 1 to 10, got {score!r}"
        assert client.post("/api/rate", {"rater": "ann", "image_id": 999, "score": 5}).error(404) == (
            "no image with id 999"
        )
        assert client.post("/api/skip", {"rater": "ann", "image_id": "1"}).error(400).startswith("image_id must")
        assert client.post("/api/rate", {"image_id": image["id"], "score": 5}).error(400) == "rater must be a string"
        assert client.post("/api/undo", {"rater": "   "}).error(400) == "rater name is empty"
        assert client.post("/api/undo", {"rater": "x" * 65}).error(400).startswith("rater name is longer")
        assert client.post("/api/next", {"rater": ""}).error(400) == "rater name is empty"
        assert client.request("POST", "/api/rate", b"{not json", json_type).error(400).startswith("body is not")
        assert client.request("POST", "/api/rate", b"[1, 2]", json_type).error(400) == "body must be a JSON object"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.request("POST", "/api/rate", b"score=5", form).error(415) == (
            "POST bodies must be application/json"
        )
        assert client.request("POST", "/api/rate", b"x" * 20000, json_type).error(413).startswith("body larger")
        assert client.post_without_length("/api/undo").error(411) == "POST needs a Content-Length"
        assert client.get("/api/nothing").error(404) == "no such page: /api/nothing"
        assert client.post("/api/nothing", {}).error(404) == "no such endpoint: /api/nothing"
        assert client.request("PUT", "/api/rate", b"{}", json_type).error(405) == "method PUT not allowed"
        assert client.request("OPTIONS", "/api/rate").error(405) == "method OPTIONS not allowed"
        head = client.request("HEAD", "/")
        assert head.status == 405 and head.body == b""
        assert db_rows(tmp_path / "r.sqlite") == []


def test_an_internal_error_is_a_bare_500(photos: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with thread_server(photos, tmp_path / "r.sqlite") as (server, store):
        store.close()  # the database went away under the server
        reply = Client(server.url).post("/api/next", {"rater": "ann"})
        assert reply.error(500) == "internal error (see the server's log)"
    assert (
        "error: POST /api/next: ProgrammingError: Cannot operate on a closed database."
        in capfd.readouterr().err
    )


# -- what is served ------------------------------------------------------------------------------


def test_page_and_assets_are_local_with_a_strict_policy(photos: Path, tmp_path: Path) -> None:
    with thread_server(photos, tmp_path / "r.sqlite") as (server, _):
        client = Client(server.url)
        page = client.get("/")
        assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="/static/app.js"' in page.body and b"http" not in page.body.split(b"</head>")[0]
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        script = client.get("/static/app.js")
        assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
        assert b"fetch(" in script.body and b"https://" not in script.body
        assert client.get("/static/app.css").status == 200
        assert client.get("/api/info").json() == {
            "prompt": "How good does this photo look?",
            "ratings_per_image": 3,
            "images": 6,
        }


def test_tiff_is_sent_as_jpeg(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "photos"
    root.mkdir()
    Image.new("RGB", (20, 10), (200, 30, 30)).save(root / "scan.tif")
    with thread_server(root, tmp_path / "r.sqlite") as (server, _):
        reply = Client(server.url).get("/images/1")
    assert reply.status == 200 and reply.headers["content-type"] == "image/jpeg"
    import io

    with Image.open(io.BytesIO(reply.body)) as sent:
        assert sent.format == "JPEG" and sent.size == (20, 10)
        red, green, blue = sent.convert("RGB").getpixel((10, 5))
        assert abs(red - 200) <= 3 and abs(green - 30) <= 3 and abs(blue - 30) <= 3


TRAVERSALS = [
    "/images/../secret.jpg",
    "/images/../../../../etc/passwd",
    "/images/%2e%2e/secret.jpg",
    "/images/%2E%2E%2Fsecret.jpg",
    "/images/set_a/..%2F..%2Fsecret.jpg",
    "/images//etc/passwd",
    "/images/%2Fetc%2Fpasswd",
    "/images/set_a/photo_00.jpg",  # a registered file's path: photos are addressed by id only
    "/images/1%00.txt",
    "/images/-1",
    "/images/0",
    "/images/99999",
    "/images/" + "9" * 19,  # beyond SQLite's integers
    "/images/" + "9" * 5000,
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_only_registered_ids_are_served(photos: Path, tmp_path: Path, path: str) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"not for raters")
    with thread_server(photos, tmp_path / "r.sqlite") as (server, _):
        reply = Client(server.url).get(path)
    assert reply.error(404).startswith("no such image in this set")
    assert b"not for raters" not in reply.body


def test_symlinks_pointing_out_are_never_served(photos: Path, tmp_path: Path) -> None:
    outside = tmp_path / "private"
    make_photos(outside, 2)
    (photos / "escape.jpg").symlink_to(outside / "set_a" / "photo_00.jpg")
    (photos / "escape_dir").symlink_to(outside / "set_a", target_is_directory=True)
    (photos / "inside_link.jpg").symlink_to(photos / "set_b" / "photo_01.jpg")
    db = tmp_path / "r.sqlite"
    with thread_server(photos, db) as (server, store):
        client = Client(server.url)
        assert store.sync_images(photos).outside == 2  # escape.jpg and the linked folder's photo: counted, never served
        with sqlite3.connect(db) as connection:
            ids = {str(path): int(i) for i, path in connection.execute("SELECT id, path FROM images")}
        assert "escape.jpg" not in ids and not any(path.startswith("escape_dir") for path in ids)
        assert client.get(f"/images/{ids['inside_link.jpg']}").status == 200  # a link within the folder is fine
        # a registered photo swapped for a link to the outside after the scan
        target = photos / "set_a" / "photo_02.jpg"
        target.unlink()
        target.symlink_to(outside / "set_a" / "photo_00.jpg")
        assert client.get(f"/images/{ids['set_a/photo_02.jpg']}").error(403) == "path is outside the images folder"
        # ... or for a FIFO: refused, never opened for reading (which would hang the server's thread)
        fifo = photos / "set_b" / "photo_03.jpg"
        fifo.unlink()
        os.mkfifo(fifo)
        fifo_id = ids["set_b/photo_03.jpg"]
        assert client.get(f"/images/{fifo_id}").error(404) == f"image {fifo_id}: the file cannot be read"


def test_only_loopback_host_names_are_answered(photos: Path, tmp_path: Path) -> None:
    with thread_server(photos, tmp_path / "r.sqlite") as (server, _):
        client = Client(server.url)
        port = server.server_address[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert client.get("/api/info", {"Host": host}).status == 200, host
        reply = client.get("/api/info", {"Host": f"rebound.example:{port}"})
        assert (
            reply.error(403)
            == f"Host 'rebound.example:{port}' is not a loopback name (this server listens on loopback)"
        )


def test_a_token_guards_every_request(photos: Path, tmp_path: Path) -> None:
    token = "s3cret-token_123"
    with thread_server(photos, tmp_path / "r.sqlite", token=token) as (server, _):
        client = Client(server.url)
        assert client.get("/").error(401).startswith("this server needs a token")
        assert client.get("/images/1").error(401).startswith("this server needs a token")
        assert client.post("/api/rate", {"rater": "a", "image_id": 1, "score": 5}).error(401)
        assert client.get("/api/info", {"X-Nima-Rt-Token": "wrong-token"}).error(403) == "wrong token"
        assert client.get("/?token=wrong-token").error(403) == "wrong token"
        login = client.get(f"/?token={token}")
        assert login.status == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"].split(";")[0]
        assert cookie == f"nima_rt_label_token={token}" and "HttpOnly" in login.headers["set-cookie"]
        assert client.get("/", {"Cookie": cookie}).status == 200
        assert client.get("/images/1", {"Cookie": cookie}).status == 200
        assert client.get("/api/info", {"X-Nima-Rt-Token": token}).status == 200


def test_requests_from_other_sites_are_refused_and_get_changes_nothing(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with thread_server(photos, db) as (server, _):
        client = Client(server.url)
        own = server.url.rstrip("/")
        evil = {"Origin": "http://evil.example"}
        refused = "request from another origin ('http://evil.example') refused: only the rating page of this server"
        assert client.post("/api/next", {"rater": "ann"}, evil).error(403).startswith(refused)
        assert client.post("/api/rate", {"rater": "ann", "image_id": 1, "score": 9}, evil).error(403)
        assert client.post("/api/undo", {"rater": "ann"}, {"Origin": "null"}).error(403)  # sandboxed frames
        cross = {"Sec-Fetch-Site": "cross-site"}
        assert client.post("/api/next", {"rater": "ann"}, cross).error(403) == (
            "cross-site request refused (Sec-Fetch-Site: cross-site)")
        assert client.get("/images/1", cross).error(403)  # another page cannot show (or read) the photos
        assert client.get("/api/info", {"Sec-Fetch-Site": "same-site"}).error(403)
        # GET never creates a rater or a lease: a link or an <img> elsewhere cannot lease photos
        assert client.get("/api/next?rater=ann").error(405).startswith("use POST /api/next")
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT COUNT(*) FROM raters").fetchone() == (0,)
            assert connection.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
        # the page itself may be linked from anywhere; its own requests carry its origin and pass
        assert client.get("/", cross).status == 200
        mine = {"Origin": own, "Sec-Fetch-Site": "same-origin"}
        image = client.post("/api/next", {"rater": "ann"}, mine).json()["image"]
        assert client.get(image["url"], {"Sec-Fetch-Site": "same-origin"}).status == 200
        assert client.post("/api/rate", {"rater": "ann", "image_id": image["id"], "score": 6}, mine).status == 200
    assert db_rows(db) == [("ann", path_of(db, image), 6)]


def test_hostile_values_and_files_get_4xx(photos: Path, tmp_path: Path) -> None:
    (photos / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 40)  # a TIFF header and nothing usable
    (photos / "cut.tif").write_bytes((photos / "set_a" / "photo_00.jpg").read_bytes()[:30])
    with thread_server(photos, tmp_path / "r.sqlite") as (server, store):
        client = Client(server.url)
        image = client.next_image("ann")
        huge = 2**70
        assert client.post("/api/rate", {"rater": "ann", "image_id": huge, "score": 5}).error(400) == (
            "image_id must be a positive integer, got an integer of 22 digits")
        assert client.post("/api/skip", {"rater": "ann", "image_id": huge}).error(400)
        json_type = {"Content-Type": "application/json"}
        body = b'{"rater": "ann", "image_id": %d, "score": %s}' % (image["id"], b"7" * 5000)
        assert client.request("POST", "/api/rate", body, json_type).error(400).startswith(
            "body is not JSON this server reads (Exceeds the limit")
        deep = b'{"rater": ' + b"[" * 8000 + b"]" * 8000 + b"}"
        assert client.request("POST", "/api/rate", deep, json_type).error(400)
        for name in ("broken.tif", "cut.tif"):
            ref = next(i for i, p in store.query("SELECT id, path FROM images") if p == name)
            assert client.get(f"/images/{ref}").error(415) == f"image {ref}: cannot decode this image"


def test_the_page_never_shows_file_names() -> None:
    from importlib import resources

    script = resources.files("nima_rt.apps.label").joinpath("static", "app.js").read_text(encoding="utf-8")
    assert ".path" not in script and 'photo.alt = "photo to rate"' in script


# -- durability ----------------------------------------------------------------------------------


def test_ratings_survive_killing_the_server(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    given = []
    with subprocess_server(str(photos), "--db", str(db), "--port", "0", "-k", "2") as (process, url, lines):
        assert url.startswith("http://127.0.0.1:")
        assert lines[0] == f"{photos}: 6 images (6 new, 0 in the database but gone)"
        client = Client(url)
        for rater, score in (("ann", 8), ("ann", 2), ("bob", 10)):
            image = client.next_image(rater)
            assert client.post("/api/rate", {"rater": rater, "image_id": image["id"], "score": score}).status == 200
            given.append((rater, path_of(db, image), score))
        image = client.next_image("bob")
        client.post("/api/skip", {"rater": "bob", "image_id": image["id"]})
        given.append(("bob", path_of(db, image), None))
        exported = CliRunner().invoke(app, ["label", "export", "--db", str(db), "--out", "-", "--relative"])
        assert exported.exit_code == 0 and len(exported.stdout.splitlines()) == 1 + 2  # while it serves
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    assert Path(f"{db}-wal").exists()  # not checkpointed: the rows live in the WAL
    assert db_rows(db) == given
    with Store.open(db, ratings_per_image=2) as store:
        assert store.progress("ann").rated == 2 and store.progress("bob").skipped == 1


# -- export and agreement ------------------------------------------------------------------------


@pytest.fixture
def rated_db(tmp_path: Path) -> tuple[Path, Path]:
    """Four photos a..d rated by ann, bob (all four) and cy (one rating, one skip)."""
    root = tmp_path / "photos"
    make_photos(root, 4)
    db = tmp_path / "ratings.sqlite"
    scores = {
        "ann": [2, 4, 6, 8],
        "bob": [3, 5, 5, 9],
        "cy": [9, None],
    }
    with Store.open(db, ratings_per_image=3) as store:
        store.sync_images(root)
        ids = [int(row[0]) for row in store.query("SELECT id FROM images ORDER BY path")]  # type: ignore[call-overload]
        for rater, values in scores.items():
            for image_id, score in zip(ids, values, strict=False):
                if score is None:
                    store.skip(rater, image_id)
                else:
                    store.rate(rater, image_id, score)
    return root, db


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(1, 11, 12).tolist()
        b = rng.integers(1, 11, 12).tolist()
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1, 2, 3, 4], [1, 2.5, 2.5, 4]) == pytest.approx(3 / math.sqrt(10))
    assert math.isnan(spearman([5, 5, 5], [1, 2, 3])) and math.isnan(spearman([1], [2]))  # one nan policy


def test_export_writes_vote_counts_and_agreement(rated_db: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = rated_db
    out, summary_file = tmp_path / "labels.csv", tmp_path / "agreement.json"
    result = CliRunner().invoke(
        app, ["label", "export", "--db", str(db), "--out", str(out), "--summary", str(summary_file)]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["path", *COUNT_COLUMNS]
    paths = sorted(row[0] for row in sqlite3.connect(db).execute("SELECT path FROM images"))
    assert [row["path"] for row in rows] == [str(root.resolve() / p) for p in paths]
    counts = [[int(row[column]) for column in COUNT_COLUMNS] for row in rows]
    expected = [[0] * 10 for _ in range(4)]
    for values in ([2, 4, 6, 8], [3, 5, 5, 9], [9]):
        for index, score in enumerate(values):
            expected[index][score - 1] += 1
    assert counts == expected
    summary = json.loads(summary_file.read_text())
    per_image = [[2, 3, 9], [4, 5], [6, 5], [8, 9]]
    assert summary["images"] == 4 and summary["ratings"] == 9 and summary["raters"] == 3
    assert summary["mean_image_std"] == pytest.approx(np.mean([np.std(scores) for scores in per_image]))
    assert summary["mean_pairwise_spearman"] == pytest.approx(3 / math.sqrt(10))
    assert summary["pairs"] == [
        {"rater_a": "ann", "rater_b": "bob", "overlap": 4, "spearman": pytest.approx(0.9487, abs=1e-4)}
    ]
    assert [r["name"] for r in summary["per_rater"]] == ["ann", "bob", "cy"]
    assert summary["per_rater"][2] == {"name": "cy", "ratings": 1, "skips": 1, "mean_score": 9.0, "mean_spearman": None}
    err = result.stderr
    assert "exported 4 images (9 ratings from 3 raters, 2.25 per image); dropped 0 with too few ratings" in err
    assert "mean pairwise Spearman 0.949 over 1 rater pairs" in err


def test_export_min_ratings_and_relative_paths(rated_db: tuple[Path, Path]) -> None:
    _, db = rated_db
    with Store.open(db, create=False) as store:
        votes, summary = collect(store, min_ratings=3, absolute=False)
    assert [(v.path, v.counts) for v in votes] == [("set_a/photo_00.jpg", (0, 1, 1, 0, 0, 0, 0, 0, 1, 0))]
    assert (summary.images, summary.dropped, summary.ratings) == (1, 3, 3)
    assert summary.pairs == [] and summary.mean_pairwise_spearman is None


def test_export_to_stdout(rated_db: tuple[Path, Path]) -> None:
    _, db = rated_db
    result = CliRunner().invoke(
        app, ["label", "export", "--db", str(db), "--out", "-", "--relative", "--min-ratings", "2"]
    )
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == ",".join(["path", *COUNT_COLUMNS])
    assert len(result.stdout.splitlines()) == 1 + 4


def test_export_reads_a_database_it_cannot_write(rated_db: tuple[Path, Path], tmp_path: Path) -> None:
    """Export opens the database read-only (SQLite ``mode=ro``): a read-only copy (another user's database,
    a read-only share) is exported and never written to."""
    import shutil

    _, db = rated_db
    with Store.open(db) as store:  # checkpoint the WAL into the file, as a copied database would be
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    folder = tmp_path / "readonly"
    folder.mkdir()
    copy = folder / "ratings.sqlite"
    shutil.copy(db, copy)
    before = copy.read_bytes()
    copy.chmod(0o444)
    folder.chmod(0o555)  # for root the modes change nothing: the byte and file checks below still hold
    try:
        result = CliRunner().invoke(app, ["label", "export", "--db", str(copy), "--out", "-", "--relative"])
        assert result.exit_code == 0, result.output  # before: "attempt to write a readonly database"
        assert len(result.stdout.splitlines()) == 1 + 4
        assert copy.read_bytes() == before
        with Store.open(copy, read_only=True) as store, pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.set_meta("touched", "yes")
    finally:
        folder.chmod(0o755)


def test_the_trainers_csv_reader_loads_the_export(rated_db: tuple[Path, Path], tmp_path: Path) -> None:
    from nima_rt.train.data.label_sets import load_label_set, split_by_group

    root, db = rated_db
    out = tmp_path / "labels.csv"
    args = ["label", "export", "--db", str(db), "--out", str(out), "--relative", "--group-by", "parent"]
    assert CliRunner().invoke(app, args).exit_code == 0
    labels = load_label_set(out, images=root)
    assert (len(labels), labels.missing, labels.invalid) == (4, 0, 0)
    assert [path.relative_to(root).as_posix() for path in labels.paths] == [
        "set_a/photo_00.jpg",
        "set_a/photo_02.jpg",
        "set_b/photo_01.jpg",
        "set_b/photo_03.jpg",
    ]
    assert labels.groups == ["set_a", "set_a", "set_b", "set_b"]
    first = np.zeros(10, dtype=np.float32)
    first[[1, 2, 8]] = 1 / 3  # ann 2, bob 3, cy 9
    np.testing.assert_allclose(labels.dists[0], first, atol=1e-7)
    train, val = split_by_group(labels, 0.5, seed=0)
    assert {tuple(train.groups), tuple(val.groups)} == {("set_a", "set_a"), ("set_b", "set_b")}
    # the default export (absolute paths) needs no images folder beyond the CSV's own
    assert CliRunner().invoke(app, ["label", "export", "--db", str(db), "--out", str(out)]).exit_code == 0
    assert len(load_label_set(out)) == 4


def test_export_holds_out_whole_groups_for_testing(rated_db: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = rated_db
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    base = ["label", "export", "--db", str(db), "--out", str(train), "--relative", "--test-out", str(test)]
    result = CliRunner().invoke(app, [*base, "--group-by", "parent", "--test-fraction", "0.25"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == f"{train}: 2 images; {test}: 2 images"  # a folder is never cut
    sides = []
    for path in (train, test):
        with path.open(newline="") as stream:
            sides.append([(row["path"], row["group"]) for row in csv.DictReader(stream)])
    assert {group for _, group in sides[0]}.isdisjoint({group for _, group in sides[1]})
    assert sorted(sides[0] + sides[1]) == [
        ("set_a/photo_00.jpg", "set_a"),
        ("set_a/photo_02.jpg", "set_a"),
        ("set_b/photo_01.jpg", "set_b"),
        ("set_b/photo_03.jpg", "set_b"),
    ]
    # the same seed draws the same split; without groups each photo is its own group
    again = CliRunner().invoke(app, [*base, "--group-by", "parent", "--test-fraction", "0.25"])
    assert again.exit_code == 0
    with test.open(newline="") as stream:
        assert [(row["path"], row["group"]) for row in csv.DictReader(stream)] == sides[1]
    result = CliRunner().invoke(app, [*base, "--test-fraction", "0.25", "--seed", "3"])
    assert result.stderr.splitlines()[-1] == f"{train}: 3 images; {test}: 1 images"
    result = CliRunner().invoke(app, [*base, "--group-by", "parent", "--test-fraction", "0.9"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot hold out 90% of 4 images in 2 group(s) and keep any for training"


# -- CLI failures and warnings --------------------------------------------------------------------


def test_cli_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["label", "serve", str(empty), "--db", str(tmp_path / "r.sqlite"), "--port", "0"])
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[-1]
        == f"error: {empty}: no image files to rate (looked for .jpg .png .webp .tif .bmp .gif ...)"
    )
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    result = runner.invoke(app, ["label", "export", "--db", str(other), "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 1
    assert result.stderr == f"error: {other}: an SQLite file but not a nima-rt ratings database (no meta table)\n"
    result = runner.invoke(app, ["label", "export", "--db", str(tmp_path / "none.sqlite"), "--out", "x.csv"])
    assert result.stderr == f"error: {tmp_path / 'none.sqlite'}: no such ratings database\n"
    text = tmp_path / "text.sqlite"
    text.write_text("hello, not a database" * 100)
    with pytest.raises(LabelError, match="not a usable ratings database"):
        Store.open(text)
    result = runner.invoke(app, ["label", "serve", str(empty), "--db", str(tmp_path / "t.sqlite"), "--token", "short"])
    assert result.exit_code == 1 and "--token must be 8 to 256 characters" in result.stderr
    assert not (tmp_path / "t.sqlite").exists()  # refused before any database is made
    result = runner.invoke(app, ["label", "serve", str(tmp_path / "nowhere"), "--db", str(tmp_path / "t.sqlite")])
    assert result.exit_code == 1 and result.stderr == f"error: {tmp_path / 'nowhere'}: not a folder of images\n"
    assert not (tmp_path / "t.sqlite").exists()


def test_serving_another_host_warns(photos: Path, tmp_path: Path) -> None:
    args = (str(photos), "--db", str(tmp_path / "r.sqlite"), "--host", "0.0.0.0", "--port", "0")
    with subprocess_server(*args) as (_, url, lines):
        assert url.startswith("http://0.0.0.0:")
    assert lines[1] == (
        "warning: listening on 0.0.0.0, reachable from other machines: anyone who can reach it can rate "
        "and see the photos; traffic is plain HTTP"
    )


def test_cli_help_lists_serve_and_export() -> None:
    result = subprocess.run(cli_command("label", "--help"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "serve" in result.stdout and "export" in result.stdout
