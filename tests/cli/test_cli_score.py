"""`nima-rt score` and `nima-rt info` through the CLI: schemas, exit codes, resume, ranking."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.paths import REPO
from PIL import Image
from typer.testing import CliRunner

from nima_rt.cli import app

runner = CliRunner()
PROBS = [f"tiny_p{k}" for k in range(1, 11)]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_default_output_is_csv_on_stdout_with_messages_on_stderr(tiny_model: Path, photo_dir: Path) -> None:
    result = run("score", photo_dir, "--model", tiny_model)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["path", "error", "tiny_mean", "tiny_std"] + PROBS
    assert len(rows) == 7
    assert all(float(r[2]) > 1 for r in rows[1:])
    assert sum(float(p) for p in rows[1][4:]) == pytest.approx(1.0, abs=1e-4)
    assert result.stderr.splitlines()[0].startswith("tiny: backend: onnxruntime-cpu")
    assert result.stderr.splitlines()[-1].startswith("scored 6, failed 0 in ")
    assert "photos" not in result.stderr  # data never mixed into stderr


def test_jsonl_schema(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    (photo_dir / "listing_a" / "broken.JPG").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "scores.jsonl"
    result = run("score", photo_dir, "-m", tiny_model, "--output", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7
    good = rows[1]
    assert set(good) == {"path", "error", "tiny"}
    assert good["error"] is None and set(good["tiny"]) == {"mean", "std", "dist"} and len(good["tiny"]["dist"]) == 10
    broken = next(r for r in rows if r["path"].endswith("broken.JPG"))  # extensions match case-insensitively
    assert broken["tiny"] is None and broken["error"].startswith(str(photo_dir / "listing_a" / "broken.JPG") + ": ")
    assert "failed 1" in result.stderr


def test_parquet_output(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "scores.parquet"
    assert run("score", photo_dir, "-m", tiny_model, "-o", out).exit_code == 0
    table = pq.read_table(out)
    assert table.column_names == ["path", "error", "tiny_mean", "tiny_std", "tiny_dist"]
    assert table.num_rows == 6 and len(table.column("tiny_dist")[0].as_py()) == 10


def test_group_by_parent_marks_one_best_per_listing(tiny_model: Path, photo_dir: Path) -> None:
    result = run("score", photo_dir, "-m", tiny_model, "--group-by", "parent", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for group in ("listing_a", "listing_b"):
        members = [r for r in rows if r["group"].endswith(group)]
        assert [r["rank"] for r in members] == [1, 2, 3]
        assert [r["best"] for r in members] == [True, False, False]
        means = [r["tiny"]["mean"] for r in members]
        assert means == sorted(means, reverse=True)


def test_sort_and_top(tiny_model: Path, photo_dir: Path) -> None:
    result = run("score", photo_dir, "-m", tiny_model, "--top", "2", "-f", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    sorted_run = run("score", photo_dir, "-m", tiny_model, "--sort", "-f", "jsonl")
    everything = [json.loads(line) for line in sorted_run.stdout.splitlines()]
    assert [r["path"] for r in rows] == [r["path"] for r in everything[:2]]
    assert everything[0]["tiny"]["mean"] >= everything[-1]["tiny"]["mean"]


def test_exit_codes(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    bad_model = run("score", photo_dir, "--model", tmp_path / "missing.onnx")
    assert bad_model.exit_code == 1
    assert bad_model.stderr.strip().startswith(f"error: {tmp_path / 'missing.onnx'}: no such model file")
    unwritable = run("score", photo_dir, "-m", tiny_model, "-o", tmp_path / "no" / "such" / "dir.csv")
    assert unwritable.exit_code == 1
    target = tmp_path / "no" / "such" / "dir.csv"
    assert f"error: {target}: cannot write output (No such file or directory)" in unwritable.stderr
    assert run("score", photo_dir, "-m", tiny_model, "--group-by", "dir:0").exit_code == 2
    colour = run("score", photo_dir, "-m", tiny_model, "--group-by", "colour")  # a column no manifest carries
    assert colour.exit_code == 1 and colour.stderr.splitlines()[-1] == (
        "error: --group-by colour: no such column in the inputs (carried columns: none; or use parent, dir:N, none)")
    assert run("score", photo_dir, "-m", tiny_model, "--resume").exit_code == 2
    assert run("score", "-m", tiny_model).exit_code == 2  # no PATH


def test_no_default_model_message(photo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("nima_rt.io.model_file.BUNDLED_DIR", tmp_path / "empty")
    result = run("score", photo_dir)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: no default model is bundled with this nima-rt install; pass --model FILE.onnx "
        "(see docs/reference/models.md)"
    )


def test_strict_stops_at_the_first_failure(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    (photo_dir / "listing_a" / "img_1a.png").write_text("oops")
    out = tmp_path / "s.csv"
    result = run("score", photo_dir, "-m", tiny_model, "--strict", "-o", out)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --strict: {photo_dir / 'listing_a' / 'img_1a.png'}: not an image file Pillow can read"
    )
    rows = list(csv.reader(out.open()))
    assert [Path(r[0]).name for r in rows[1:]] == ["img_0.jpg", "img_1.png", "img_1a.png"]


def test_resume_repairs_a_torn_line_and_skips_done_paths(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"r.{fmt}"
        assert run("score", photo_dir, "-m", tiny_model, "-o", out).exit_code == 0
        complete = out.read_text()
        lines = complete.splitlines(keepends=True)
        keep = 3 if fmt == "csv" else 2  # the header counts in CSV
        out.write_text("".join(lines[:keep]) + lines[keep][:17])  # a killed run's torn last line
        result = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")
        assert result.exit_code == 0, result.output
        assert "resuming" in result.stderr and "2 paths already scored" in result.stderr
        assert out.read_text() == complete  # nothing lost, nothing repeated, same bytes


def test_resume_refuses_another_models_output(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "other.csv"
    out.write_text("path,error,other_mean\n")
    result = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")
    assert result.exit_code == 1
    assert "cannot resume, its columns (path, error, other_mean...) are not this run's" in result.stderr


def test_resume_after_a_real_kill(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(400):
        Image.new("RGB", (24, 24), (index % 256, 40, 90)).save(folder / f"{index:04d}.png")
    out = tmp_path / "killed.jsonl"
    command = [sys.executable, "-m", "nima_rt", "score", str(folder), "-m", str(tiny_model), "-o", str(out),
               "--batch-size", "1", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 20):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = out.read_text().count("\n")
    assert 20 <= written < 400, "the run must be killed part way"
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())
    assert len(paths) == len(set(paths)) == 400


def test_info_prints_metadata_and_backends(tiny_model: Path) -> None:
    result = run("info", tiny_model, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["metadata"]["name"] == "tiny" and data["metadata"]["input_size"] == 32
    chosen = [b["name"] for b in data["backends"] if b["chosen"]]
    assert chosen == ["onnxruntime-cpu"]
    text = run("info", tiny_model)
    assert "kind:         technical" in text.stdout and "onnxruntime-cpu" in text.stdout


def test_unicode_and_multi_dot_names_in_rows(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "séjour"
    folder.mkdir()
    Image.new("RGB", (10, 10)).save(folder / "chambre.vue.mer.Webp", format="WEBP")
    (folder / "x.jpg").mkdir()  # a directory named like an image is walked, not scored
    result = run("score", folder, "-m", tiny_model, "-f", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == [os.path.join(str(folder), "chambre.vue.mer.Webp")]
    assert rows[0]["error"] is None


def test_gpu_decode_on_without_a_gpu_is_a_one_line_error(tiny_model: Path, photo_dir: Path) -> None:
    result = run("score", photo_dir, "-m", tiny_model, "--gpu-decode", "on")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: GPU decode: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert run("score", photo_dir, "-m", tiny_model, "--gpu-decode", "maybe").exit_code == 2


def test_full_decode_turns_the_jpeg_draft_off(tiny_model: Path, tmp_path: Path) -> None:
    import numpy as np
    from helpers.photos import photo_like
    from helpers.tiny_models import reference_scores

    from nima_rt.contract.spec import ResizeSpec
    from nima_rt.io.decode import Preprocess, decode_file

    path = tmp_path / "big.jpg"
    Image.fromarray(photo_like(5, 512, 384)).save(path, quality=85)
    means = {}
    for flag, draft in (([], True), (["--full-decode"], False)):
        result = run("score", path, "-m", tiny_model, "-f", "jsonl", *flag)
        assert result.exit_code == 0, result.output
        means[draft] = json.loads(result.stdout)["tiny"]["mean"]
        expected = reference_scores(decode_file(path, [Preprocess(32, ResizeSpec(jpeg_draft=draft))])[0][None])
        assert means[draft] == pytest.approx(float(expected[1][0]), abs=1e-5)
    assert means[True] != means[False]
    assert not np.isnan(means[False])


def test_progress_line_only_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from nima_rt.cli.common import Progress

    quiet = Progress(total=3, enabled=False)
    for ok in (True, False, True):
        quiet.update(ok)
    quiet.finish()
    assert capsys.readouterr().err == ""
    shown = Progress(total=3, enabled=True)
    for ok in (True, False, True):
        shown.update(ok)
    shown.finish()
    err = capsys.readouterr().err
    assert err.startswith("\r1/3 files, 0 failed, ") and err.endswith("\n")
    assert "\r3/3 files, 1 failed, " in err
    assert (shown.done, shown.failed) == (3, 1)


# -- issue 13: hostile names, full disks, closed pipes, exit codes, path lists --------------------


def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    names = [os.fsdecode(b"caf\xe9.png"), "new\nline.png", "carriage\rreturn.png", "=cmd.png", "plain.png"]
    for index, name in enumerate(names):
        Image.new("RGB", (10, 10), (index * 40, 20, 20)).save(os.path.join(folder, name), format="PNG")
    Path(os.path.join(folder, os.fsdecode(b"bad\xff\nname.jpg"))).write_bytes(b"not an image")
    return folder


def test_hostile_names_in_every_format_and_resume_rescores_nothing(tiny_model: Path, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    folder = hostile_folder(tmp_path)
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"h.{fmt}"
        result = run("score", folder, "-m", tiny_model, "-o", out)
        assert result.exit_code == 0, result.output
        if fmt == "parquet":
            assert pd.read_parquet(out).shape[0] == 6
            continue
        complete = out.read_bytes()
        if fmt == "csv":
            frame = pd.read_csv(out, keep_default_na=False)
            assert frame.shape[0] == 6 and f"{folder}/caf\\xe9.png" in set(frame["path"])
            assert f"{folder}/new\nline.png" in set(frame["path"]) and f"'{folder}/=cmd.png" not in set(frame["path"])
            assert all("\n" not in e for e in frame["error"])
        else:
            rows = {r["path"]: r for r in map(json.loads, out.read_text(encoding="utf-8").split("\n")[:-1])}
            assert len(rows) == 6
            bad = rows[f"{folder}/bad\\xff\nname.jpg"]
            assert bad["error"] == f"{folder}/bad\\xff\\nname.jpg: not an image file Pillow can read"
        again = run("score", folder, "-m", tiny_model, "-o", out, "--resume")
        assert again.exit_code == 0, again.output
        assert "6 paths already scored" in again.stderr
        assert out.read_bytes() == complete  # nothing scored twice


def test_csv_formula_escaping_and_its_flag(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    Image.new("RGB", (10, 10)).save(folder / "=HYPERLINK(1).png")
    import contextlib

    with contextlib.chdir(folder):  # relative paths: the cell starts with the name
        escaped = run("score", "=HYPERLINK(1).png", "-m", tiny_model)
        plain = run("score", "=HYPERLINK(1).png", "-m", tiny_model, "--no-formula-escape")
    assert list(csv.reader(io.StringIO(escaped.stdout)))[1][0] == "'=HYPERLINK(1).png"
    assert list(csv.reader(io.StringIO(plain.stdout)))[1][0] == "=HYPERLINK(1).png"


def run_with_file_size_limit(args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    """``nima-rt ARGS`` in a process that cannot make a file larger than ``limit`` bytes (RLIMIT_FSIZE, its
    SIGXFSZ ignored): every write past it fails with EFBIG, as writes on a full disk fail with ENOSPC."""
    import resource

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "nima_rt", *args], capture_output=True, text=True,
                          preexec_fn=limited, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_full_disk_is_one_error_line_and_the_output_resumes(
    tiny_model: Path, photo_dir: Path, tmp_path: Path, fmt: str
) -> None:
    if fmt == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
    complete_run = tmp_path / f"complete.{fmt}"
    assert run("score", photo_dir, "-m", tiny_model, "-o", complete_run).exit_code == 0
    out = tmp_path / f"full.{fmt}"
    args = ["score", str(photo_dir), "-m", str(tiny_model), "-o", str(out), "-q"]
    failed = run_with_file_size_limit(args, 600 if fmt != "parquet" else 2000)
    assert failed.returncode == 1
    assert failed.stderr == f"error: {out}: cannot write output (File too large)\n"  # one line, no traceback
    if fmt == "parquet":
        assert not out.exists()  # no unreadable file under the final name
    resumed = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    if fmt == "parquet":
        assert pq.read_table(out).equals(pq.read_table(complete_run))
        assert not (tmp_path / f"full.{fmt}.parts").exists()
    else:
        assert out.read_bytes() == complete_run.read_bytes()  # nothing lost, nothing twice, no torn row


def test_a_special_output_file_is_written_as_it_is(tiny_model: Path, photo_dir: Path) -> None:
    dev_full = subprocess.run([sys.executable, "-m", "nima_rt", "score", str(photo_dir), "-m", str(tiny_model),
                               "-o", "/dev/full", "-q"], capture_output=True, text=True)
    assert dev_full.returncode == 1
    assert dev_full.stderr == "error: /dev/full: cannot write output (No space left on device)\n"
    assert run("score", photo_dir, "-m", tiny_model, "-o", "/dev/null").exit_code == 0  # twice: never refused,
    assert run("score", photo_dir, "-m", tiny_model, "-o", "/dev/null").exit_code == 0  # nothing to lock


def test_a_closed_stdout_ends_quietly_with_141(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(300):
        Image.new("RGB", (12, 12), (index % 256, 0, 0)).save(folder / f"{index:03d}.png")
    process = subprocess.Popen([sys.executable, "-m", "nima_rt", "score", str(folder), "-m", str(tiny_model), "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert stderr == ""


def test_nothing_scored_is_exit_3(tiny_model: Path, tmp_path: Path, photo_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = run("score", tmp_path / "empty", "-m", tiny_model)
    assert empty.exit_code == 3
    assert empty.stderr.strip().splitlines()[-1] == f"error: no image files found in {tmp_path / 'empty'}"
    missing = run("score", tmp_path / "nope.jpg", "-m", tiny_model)
    assert missing.exit_code == 3
    last = missing.stderr.strip().splitlines()[-1]
    assert last == "error: none of the 1 input(s) could be scored (see the error column)"
    out = tmp_path / "done.csv"
    assert run("score", photo_dir, "-m", tiny_model, "-o", out).exit_code == 0
    assert run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume").exit_code == 0  # all done: success
    assert run("score", photo_dir, "-m", tiny_model, "--backend", "nosuch").exit_code == 2


def test_paths_from_stdin_and_a_list_file(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    files = sorted(str(p) for p in photo_dir.rglob("*.*"))
    odd = os.path.join(tmp_path, os.fsdecode(b"l\xe9gacy.png"))
    Image.new("RGB", (10, 10)).save(odd, format="PNG")
    listing = b"".join(os.fsencode(p) + b"\n" for p in files[:2] + [odd]) + b"\n"
    result = runner.invoke(app, ["score", "-", "-m", str(tiny_model), "-f", "jsonl"], input=listing)
    assert result.exit_code == 0, result.output
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert paths == files[:2] + [f"{tmp_path}/l\\xe9gacy.png"]
    (tmp_path / "list.txt").write_bytes(os.fsencode(files[3]) + b"\r\n")
    from_file = run("score", files[4], "--paths-from", tmp_path / "list.txt", "-m", tiny_model, "-f", "jsonl")
    assert [json.loads(line)["path"] for line in from_file.stdout.splitlines()] == [files[4], files[3]]
    missing = run("score", "--paths-from", tmp_path / "nope.txt", "-m", tiny_model)
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        f"error: --paths-from {tmp_path / 'nope.txt'}: cannot read the list of paths (No such file or directory)"
    )


def test_ext_narrows_the_walk_and_skipped_files_are_reported(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (10, 10)).save(folder / "a.ppm")
    Image.new("RGB", (10, 10)).save(folder / "b.tga")
    Image.new("RGB", (10, 10)).save(folder / "c.png")
    (folder / "readme.txt").write_text("x")
    every = run("score", folder, "-m", tiny_model, "-f", "jsonl")
    assert [Path(json.loads(line)["path"]).name for line in every.stdout.splitlines()] == ["a.ppm", "b.tga", "c.png"]
    assert every.stderr.strip().splitlines()[-1] == (
        f"skipped 1 file(s) without an image extension (e.g. {folder / 'readme.txt'})"
    )
    narrowed = run("score", folder, "-m", tiny_model, "-f", "jsonl", "--ext", "png,.TGA")
    assert [Path(json.loads(line)["path"]).name for line in narrowed.stdout.splitlines()] == ["b.tga", "c.png"]


def test_parquet_resumes_like_the_text_formats(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    first = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")  # nothing yet: a whole run
    assert first.exit_code == 0, first.output
    table = pq.read_table(out)
    second = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")
    assert second.exit_code == 0 and "6 paths already scored" in second.stderr
    assert pq.read_table(out).equals(table)  # nothing scored again
    out.write_bytes(b"PAR1")  # what a killed run of an older nima-rt left under the final name
    broken = run("score", photo_dir, "-m", tiny_model, "-o", out, "--resume")
    assert broken.exit_code == 1
    assert broken.stderr.splitlines()[-1].startswith(f"error: {out}: cannot resume, not a readable Parquet file (")
    assert broken.stderr.splitlines()[-1].endswith("; --overwrite replaces it")
    replaced = run("score", photo_dir, "-m", tiny_model, "-o", out, "--overwrite")
    assert replaced.exit_code == 0 and pq.read_table(out).num_rows == 6


def test_model_name_equals_file_names_the_column(tiny_model: Path, photo_dir: Path) -> None:
    result = run("score", photo_dir, "-m", f"ava={tiny_model}", "-m", f"hotels={tiny_model}")
    assert result.exit_code == 0, result.output
    header = next(csv.reader(io.StringIO(result.stdout)))
    assert header[2:4] == ["ava_mean", "ava_std"] and "hotels_mean" in header


def test_progress_bar_with_total_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    from nima_rt.cli.common import Progress

    bar = Progress(total=4, enabled=True)
    bar.update(True)
    bar.finish()
    err = capsys.readouterr().err
    assert err.startswith("\r1/4 files, 0 failed, ")
    assert "[#####...............]  25% ETA 00:00:" in err


def test_version_and_models_list(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nima_rt import __version__

    version = run("--version")
    assert (version.exit_code, version.stdout) == (0, f"nima-rt {__version__}\n")
    listed = run("models", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert {"technical", "aesthetic"} <= {row["name"] for row in data["bundled"]}
    assert [row["name"] for row in data["bundled"] if row["default"]] == ["aesthetic", "technical"]
    (aesthetic,) = [row for row in data["bundled"] if row["name"] == "aesthetic"]
    assert aesthetic["licenses"][0].startswith("Apache-2.0, Copyright 2018 idealo internet GmbH")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "tiny.onnx").write_bytes(tiny_model.read_bytes())
    monkeypatch.setattr("nima_rt.io.model_file.BUNDLED_DIR", bundle)
    text = run("models")
    assert text.stdout.splitlines()[:2] == [
        f"tiny: technical, 32x32, trained on nothing (test model)  [{bundle / 'tiny.onnx'}]", "  licence: not recorded"]


def test_engine_ray_without_ray_is_one_install_line(
    tiny_model: Path, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    result = run("score", photo_dir, "-m", tiny_model, "--engine", "ray", "-o", tmp_path / "shards")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: --engine ray needs the 'ray' extra (ray is not installed): pip install 'nima-rt[ray]'\n"
    )


def test_the_readme_first_command_runs_without_the_training_stack() -> None:
    """README's first command without the training stack: no torch, timm, scipy, onnx, pyarrow or ray."""
    repo = REPO
    code = (
        "import sys\n"
        "BLOCKED = {'torch', 'torchvision', 'timm', 'scipy', 'onnx', 'pyarrow', 'ray', 'tensorflow', 'pandas'}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from nima_rt.cli import app\n"
        "sys.argv = ['nima-rt', 'score', 'examples/listings', '--group-by', 'parent']\n"
        "app()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo,
                         env=dict(os.environ, PYTHONPATH=str(repo)), timeout=120)
    assert out.returncode == 0, out.stderr
    fields = (1, 3, 15, 28, 29, 30, 31)  # cut -d, -f1,3,15,28-31
    shown = [",".join(row[i - 1] for i in fields) for row in csv.reader(io.StringIO(out.stdout))]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    command = "$ nima-rt score examples/listings --group-by parent | cut -d, -f1,3,15,28-31\n"
    block = readme.split(command, 1)[1].split("```", 1)[0]
    assert shown == block.strip().splitlines()  # the README shows the real output: the best photo of each listing


def test_a_finished_output_is_not_replaced_without_overwrite(tiny_model: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "done.csv"
    assert run("score", photo_dir, "-m", tiny_model, "-o", out).exit_code == 0
    finished = out.read_bytes()
    (photo_dir / "listing_a" / "img_0.jpg").unlink()
    again = run("score", photo_dir, "-m", tiny_model, "-o", out)
    assert again.exit_code == 2
    assert again.stderr.splitlines()[-1] == (f"error: {out}: already holds {len(finished)} bytes of rows; pass "
                                             "--resume to continue it or --overwrite to replace it")
    assert out.read_bytes() == finished  # was silently cut to the new run's rows
    replaced = run("score", photo_dir, "-m", tiny_model, "-o", out, "--overwrite")
    assert replaced.exit_code == 0 and out.read_text().count("\n") == 6  # header + 5 rows
    both = run("score", photo_dir, "-m", tiny_model, "-o", out, "--overwrite", "--resume")
    assert both.exit_code == 2 and "--overwrite" in both.stderr  # a usage error (SettingError, tests/io)
