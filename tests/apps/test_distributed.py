"""Ray Data scale-out (nima_rt.apps.distributed): same rows as the in-process Scorer, resumable shards.

Planning, manifests, sources and the shard store are tested without Ray. The Ray tests share one
local Ray (``ray.init(num_cpus=2)``, module-scoped) and skip when the ``ray`` extra is absent.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.photos import photo_like
from PIL import Image
from typer.testing import CliRunner

from nima_rt import Scorer, ScorerConfig
from nima_rt.apps.distributed import (
    InputError,
    RayScoreConfig,
    RunRecord,
    ShardStore,
    collect_inputs,
    plan_resources,
    read_output,
)
from nima_rt.apps.distributed.plan import PlanError
from nima_rt.apps.distributed.shards import ModelRecord
from nima_rt.apps.distributed.sources import SourceError, SourceReader
from nima_rt.apps.distributed.stages import decode_bytes
from nima_rt.cli import app
from nima_rt.contract.spec import ResizeSpec
from nima_rt.io.decode import DecodeError, DecodeOptions, Preprocess, decode_file
from nima_rt.io.files import file_sha256
from nima_rt.io.scores.writers import OutputError

IMAGES = 200


# -- without Ray -------------------------------------------------------------------------------


def test_plan_leaves_cpus_for_decoding() -> None:
    small = plan_resources(2, 0, RayScoreConfig(output="o"))
    assert (small.actors, small.actor_cpus, small.actor_gpus, small.threads, small.decode_cpus) == (1, 0.5, 0, 1, 0.5)
    assert (small.device, small.batch_size) == ("cpu", 4)  # the Scorer's CPU default
    gpu = plan_resources(64, 8, RayScoreConfig(output="o"))
    assert (gpu.actors, gpu.actor_cpus, gpu.actor_gpus, gpu.decode_cpus, gpu.batch_size) == (8, 1.0, 1.0, 1.0, 128)
    cpu_cluster = plan_resources(48, 0, RayScoreConfig(output="o", device="cpu"))
    assert (cpu_cluster.actors, cpu_cluster.actor_cpus, cpu_cluster.threads) == (8, 2.0, 2)
    with pytest.raises(PlanError) as caught:
        plan_resources(2, 0, RayScoreConfig(output="o", actors=2, actor_cpus=1.0))
    assert str(caught.value) == (
        "2 actor(s) x 1 CPU plus one 0.5-CPU decode task need 2.5 CPUs, the Ray cluster has 2: actors holding "
        "every CPU starve decoding (use fewer actors or fractional actor CPUs)"
    )
    with pytest.raises(PlanError, match="--device cuda: the Ray cluster has 0 GPUs"):
        plan_resources(8, 0, RayScoreConfig(output="o", device="cuda"))


def test_manifests_keep_paths_as_written_and_resolve_them_next_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    csv = tmp_path / "lists" / "m.csv"
    csv.write_text("id,path\n1,a/x.jpg\n2,/abs/y.png\n3,s3://bucket/z.jpg\n4,\n", encoding="utf-8")
    pq.write_table(pa.table({"path": ["b.jpg", "file:///data/c.jpg"]}), tmp_path / "m2.parquet")
    inputs = collect_inputs([str(csv), str(tmp_path / "m2.parquet")])
    assert inputs.table.column("path").to_pylist() == [
        "a/x.jpg", "/abs/y.png", "s3://bucket/z.jpg", "b.jpg", "file:///data/c.jpg"
    ]
    assert inputs.table.column("source").to_pylist() == [  # None: read as written
        str(tmp_path / "lists" / "a" / "x.jpg"), None, None, str(tmp_path / "b.jpg"), None
    ]
    assert collect_inputs([str(csv), str(tmp_path / "m2.parquet")]).fingerprint == inputs.fingerprint
    assert collect_inputs([str(tmp_path / "m2.parquet")]).fingerprint != inputs.fingerprint
    assert inputs.carried == ("id",)  # the manifest's other column, as text; "" where a manifest has none
    assert inputs.table.column("id").to_pylist() == ["1", "2", "3", "", ""]
    (tmp_path / "same.csv").write_text("path,id\na/x.jpg,1\n/abs/y.png,2\ns3://bucket/z.jpg,3\nb.jpg,\n"
                                       "file:///data/c.jpg,\n")
    assert collect_inputs([str(tmp_path / "same.csv")]).fingerprint == inputs.fingerprint  # content, not files
    (tmp_path / "shifted.csv").write_text("path,id\na/x.jp,1\ng/abs/y.png,2\ns3://bucket/z.jpg,3\nb.jpg,\n"
                                          "file:///data/c.jpg,\n")
    assert collect_inputs([str(tmp_path / "shifted.csv")]).fingerprint != inputs.fingerprint  # boundaries count
    (tmp_path / "relabelled.csv").write_text("path,id\na/x.jpg,9\n/abs/y.png,2\ns3://bucket/z.jpg,3\nb.jpg,\n"
                                             "file:///data/c.jpg,\n")
    assert collect_inputs([str(tmp_path / "relabelled.csv")]).fingerprint != inputs.fingerprint  # listing ids count
    (tmp_path / "paths.csv").write_text("path\nb.jpg\nfile:///data/c.jpg\n")  # no carried columns: the paths alone
    assert collect_inputs([str(tmp_path / "paths.csv")]).fingerprint == collect_inputs(
        [str(tmp_path / "m2.parquet")]).fingerprint
    bad = tmp_path / "bad.csv"
    bad.write_text("file\nx.jpg\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        collect_inputs([str(bad)])
    assert str(caught.value) == f"{bad}: manifest has no 'path' column (columns: file)"
    with pytest.raises(InputError, match="no such manifest file"):
        collect_inputs([str(tmp_path / "missing.parquet")])


def test_folders_are_listed_like_the_single_machine_runner(photo_dir: Path) -> None:
    from nima_rt.io.inputs import iter_inputs

    inputs = collect_inputs([str(photo_dir)])
    assert inputs.table.column("path").to_pylist() == [item.path for item in iter_inputs([str(photo_dir)])]
    assert inputs.table.column("error").null_count == len(inputs)


def test_bytes_decode_and_read_errors_match_the_file_decoder(tmp_path: Path) -> None:
    specs = [Preprocess(32, ResizeSpec())]
    jpeg = tmp_path / "p.jpg"
    Image.fromarray(photo_like(3, 300, 200)).save(jpeg, quality=90)  # large enough for the JPEG draft
    assert np.array_equal(decode_bytes(jpeg.read_bytes(), str(jpeg), specs, DecodeOptions())[0],
                          decode_file(str(jpeg), specs)[0])
    reader = SourceReader()
    for missing in (tmp_path / "gone.jpg", tmp_path):
        with pytest.raises(DecodeError) as from_file:
            decode_file(str(missing), specs)
        with pytest.raises(SourceError) as from_reader:
            reader.read(str(missing), str(missing))
        assert str(from_reader.value) == str(from_file.value)
    assert reader.read(jpeg.as_uri(), "label") == jpeg.read_bytes()  # file:// through pyarrow
    with pytest.raises(SourceError) as caught:
        reader.read((tmp_path / "gone.jpg").as_uri(), "gone")
    assert str(caught.value) == "gone: no such file (or a broken symlink)"
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://nima-test/q.jpg", "wb") as handle:  # a scheme pyarrow does not know
        handle.write(b"abc")
    assert reader.read("memory://nima-test/q.jpg", "q") == b"abc"


def test_shard_store_refuses_another_run_and_drops_stale_temp_files(tmp_path: Path) -> None:
    models = (ModelRecord("tiny", "tiny", "ab" * 32),)
    record = RunRecord(inputs=10, inputs_sha256="f" * 64, shard_size=4, models=models)
    store = ShardStore(str(tmp_path / "out"))
    assert store.open_run(record) == set()
    assert record.shards == 3
    (tmp_path / "out" / "part-000001.parquet").write_bytes(b"complete")
    (tmp_path / "out" / ".part-000002.parquet.tmp-123").write_bytes(b"torn")
    assert store.open_run(record) == {1}
    assert sorted(os.listdir(tmp_path / "out")) == ["_nima_rt_run.json", "part-000001.parquet"]
    other = RunRecord(inputs=10, inputs_sha256="f" * 64, shard_size=5, models=models)
    with pytest.raises(OutputError) as caught:
        store.open_run(other)
    assert str(caught.value) == (
        f"{tmp_path / 'out'}: cannot resume, its shard size is 4, this run's is 5; choose a new --output"
    )
    (tmp_path / "file.parquet").write_bytes(b"x")
    with pytest.raises(OutputError, match="is a file; --engine ray writes a folder"):
        ShardStore(str(tmp_path / "file.parquet")).open_run(record)


def _said(result) -> str:
    """A CLI result's output as one line, typer's error box taken away."""
    return " ".join(result.output.replace("│", " ").split())


def test_decode_tasks_keep_the_pixel_limit_and_memory_budget_they_are_given(tmp_path: Path) -> None:
    from nima_rt.apps.distributed.stages import decode_batch

    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (90, 120, 150)).save(big)
    spec = Preprocess(224, ResizeSpec())
    batch = {"path": np.array([str(big)] * 3, dtype=object), "source": np.array([None] * 3, dtype=object),
             "error": np.array([None] * 3, dtype=object), "index": np.arange(3), "shard": np.zeros(3, dtype=np.int64)}
    one = {key: value[:1] for key, value in batch.items()}
    assert decode_batch(one, [spec])["error"][0] == ""  # 6 MP fits the defaults
    assert decode_batch(one, [spec], DecodeOptions(max_pixels=5_000_000))["error"][0] == (
        f"{big}: image is 3000x2000 = 6000000 pixels, above the decompression-bomb limit of 5000000 pixels "
        "(--max-pixels)")
    refused = decode_batch(one, [spec], DecodeOptions(decode_memory=8 << 20))["error"][0]
    assert refused.startswith(f"{big}: decoding this 3000x2000 RGB image needs about ")
    assert refused.endswith(" MB, above the memory budget of 8 MB (--memory-budget)")


def test_cli_passes_decode_options_to_the_ray_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nima_rt.apps.distributed import pipeline

    seen = []

    def capture(paths, config, log=None):  # noqa: ANN001, ANN202 (stands in for score_with_ray)
        seen.append(config.decode)
        raise ValueError("stopped here")

    monkeypatch.setattr(pipeline, "score_with_ray", capture)
    result = CliRunner().invoke(app, ["score", str(tmp_path), "--engine", "ray", "-o", str(tmp_path / "out"),
                                      "--max-pixels", "1000000", "--memory-budget", "64", "--full-decode"])
    assert result.exit_code == 1 and "stopped here" in result.output
    assert seen == [DecodeOptions(jpeg_draft=False, max_pixels=1_000_000, decode_memory=64 << 20)]


def test_cli_refuses_single_machine_options_with_ray(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(tmp_path), "--engine", "ray", "--strict", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--strict work(s) with --engine local only" in result.output
    result = runner.invoke(app, ["score", str(tmp_path), "--engine", "ray", "-o", str(tmp_path / "ray.csv")])
    assert result.exit_code == 2 and not (tmp_path / "ray.csv").exists()
    assert "not a CSV file: give a folder" in _said(result)
    result = runner.invoke(app, ["score", str(tmp_path), "--engine", "ray", "-f", "JSON", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "writes Parquet only" in _said(result)
    result = runner.invoke(app, ["score", str(tmp_path), "--engine", "ray", "--group-by", "dir:0", "-o",
                                 str(tmp_path / "o")])
    assert result.exit_code == 2 and "the depth counts folders from 1" in _said(result)
    result = runner.invoke(app, ["score", str(tmp_path), "--engine", "ray"])
    assert result.exit_code == 2 and "--engine ray needs --output DIR" in result.output
    result = runner.invoke(app, ["score", str(tmp_path), "--address", "auto", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--address needs --engine ray" in result.output


def test_a_backend_the_device_excludes_fails_before_ray_starts(
    tiny_model: Path, photo_dir: Path, tmp_path: Path
) -> None:
    from nima_rt.apps.distributed import score_with_ray

    config = RayScoreConfig(output=str(tmp_path / "o"), models=(str(tiny_model),), backend="onnxruntime-cpu",
                            device="cuda")
    with pytest.raises(ValueError, match="^backend onnxruntime-cpu does not run on --device cuda$"):
        score_with_ray([str(photo_dir)], config)
    assert not (tmp_path / "o").exists()


# -- with a local Ray ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'nima-rt[ray]')")
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~200 small photos in two folders, a truncated JPEG and a text file named .jpg."""
    root = tmp_path_factory.mktemp("corpus")
    for index in range(IMAGES):
        folder = root / f"hotel_{index % 3}"
        folder.mkdir(exist_ok=True)
        image = Image.fromarray(photo_like(index, 24 + index % 17, 18 + index % 11))
        if index % 4 == 0:
            image.save(folder / f"{index:03d}.png")
        else:
            image.save(folder / f"{index:03d}.jpg", quality=88)
    whole = io.BytesIO()
    Image.fromarray(photo_like(999, 320, 240)).save(whole, "JPEG", quality=90)
    (root / "hotel_1" / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
    (root / "hotel_2" / "notes.jpg").write_text("not a photo", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def in_process(corpus: Path, tiny_model: Path) -> list:
    with Scorer([tiny_model], ScorerConfig(batch_size=16)) as scorer:
        return list(scorer.score_paths([corpus]))


def assert_rows_match(table: pa.Table, expected: list, column: str = "tiny") -> None:
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [e.path for e in expected]
    assert [r["error"] for r in rows] == [e.error for e in expected]
    for row, result in zip(rows, expected, strict=True):
        if result.ok:
            score = result.scores[column]
            assert row[f"{column}_mean"] == pytest.approx(score.mean, abs=1e-6)
            assert row[f"{column}_std"] == pytest.approx(score.std, abs=1e-6)
            assert np.allclose(row[f"{column}_dist"], score.dist, atol=1e-6)
        else:
            assert row[f"{column}_mean"] is None and row[f"{column}_dist"] is None


def test_ray_scores_match_the_in_process_scorer_row_for_row(
    ray_session, corpus: Path, tiny_model: Path, in_process: list, tmp_path: Path
) -> None:
    output = tmp_path / "scores.parquet"
    config = RayScoreConfig(output=str(output), models=(str(tiny_model),), shard_size=48, batch_size=16)
    summary = score_with(config, [str(corpus)])
    assert (summary.inputs, summary.shards, summary.written_shards, summary.skipped_shards) == (202, 5, 5, 0)
    assert (summary.rows, summary.failed) == (202, 2)
    # decode ran as its own task stage, not fused into the scoring actors
    assert "MapBatches(decode_batch):" in summary.stats and "MapBatches(ScoreActor):" in summary.stats
    table = read_output(str(output))
    assert_rows_match(table, in_process)
    errors = {Path(e.path).name: e.error for e in in_process if not e.ok}
    assert errors["notes.jpg"].endswith("notes.jpg: not an image file Pillow can read")
    assert "truncated.jpg: cannot decode image (" in errors["truncated.jpg"]
    assert set(table.column("tiny_sha256").to_pylist()) == {file_sha256(tiny_model)}
    assert table.schema.field("tiny_dist").type == pa.list_(pa.float32(), 10)
    record = json.loads((output / "_nima_rt_run.json").read_text())
    assert (record["inputs"], record["shard_size"], record["models"][0]["column"]) == (202, 48, "tiny")
    assert sorted(p.name for p in output.glob("part-*.parquet")) == [f"part-{i:06d}.parquet" for i in range(5)]
    assert pq.read_table(output / "part-000004.parquet").num_rows == 202 - 4 * 48


def score_with(config: RayScoreConfig, given: list[str], on_shard=None):
    from nima_rt.apps.distributed import score_with_ray

    return score_with_ray(given, config, on_shard=on_shard)


def test_manifest_of_uris_relative_paths_and_a_missing_file(
    ray_session, corpus: Path, tiny_model: Path, in_process: list, tmp_path: Path
) -> None:
    chosen = in_process[:40]
    entries = [Path(r.path).as_uri() if i % 2 else os.path.relpath(r.path, corpus) for i, r in enumerate(chosen)]
    manifest = corpus / "manifest.parquet"
    pq.write_table(pa.table({"path": entries + ["hotel_0/missing.jpg"], "listing": list(range(41))}), manifest)
    output = tmp_path / "out"
    summary = score_with(RayScoreConfig(output=str(output), models=(str(tiny_model),), shard_size=16),
                         [str(manifest)])
    assert (summary.rows, summary.failed) == (41, 1)
    table = read_output(str(output))
    assert table.column("path").to_pylist() == entries + ["hotel_0/missing.jpg"]
    assert table.column("error").to_pylist()[-1] == "hotel_0/missing.jpg: no such file (or a broken symlink)"
    expected_means = [r.scores["tiny"].mean for r in chosen]
    assert np.allclose(table.column("tiny_mean").to_pylist()[:40], expected_means, atol=1e-6)
    manifest.unlink()


def test_ray_ranks_by_a_manifest_column_and_picks_what_the_local_engine_picks(
    ray_session, corpus: Path, tiny_model: Path, in_process: list, tmp_path: Path
) -> None:
    from nima_rt.io.scores.reader import ScoreFiles
    from nima_rt.runtime.rank_output import RankOptions, rank_output

    entries = sorted((r.path for r in in_process), key=lambda p: Path(p).name)  # the hotels interleaved
    manifest = tmp_path / "listings.csv"
    manifest.write_text("path,listing_id\n" + "".join(f"{p},{Path(p).parent.name}\n" for p in entries))
    local = tmp_path / "local.csv"
    result = CliRunner().invoke(app, ["score", str(manifest), "-m", str(tiny_model), "-o", str(local), "-q",
                                      "--group-by", "listing_id", "--top", "2"])
    assert result.exit_code == 0, result.output
    output = tmp_path / "ray_out"
    ranking = RankOptions(group_by="listing_id", top=2)
    summary = score_with(RayScoreConfig(output=str(output), models=(str(tiny_model),), shard_size=48, batch_size=16,
                                        ranking=ranking), [str(manifest)])
    assert summary.ranked is not None and (summary.ranked.listings, summary.ranked.rows) == (3, 8)  # + 2 failed
    shards = read_output(str(output))
    assert shards.column("listing_id").to_pylist() == [Path(p).parent.name for p in entries]  # carried per shard
    ranked = list(ScoreFiles([output / "_ranked.parquet"]).rows())
    picks = {(r.carried["listing_id"], r.path) for r in ranked if r.ok}
    assert picks == {(r.carried["listing_id"], r.path) for r in ScoreFiles([local]).rows() if r.ok}
    again = tmp_path / "again.parquet"  # `nima-rt rank OUT/` gives the rank step's rows
    rank_output([str(output)], RankOptions(output=str(again), group_by="listing_id", top=2))
    assert pq.read_table(again).to_pylist() == pq.read_table(output / "_ranked.parquet").to_pylist()
    assert pq.read_table(output).num_rows == 202  # Parquet readers of OUT skip _ranked.parquet
    page = tmp_path / "ray.html"  # the report reads the folder too
    report = CliRunner().invoke(app, ["report", "--scores", str(output), "--group-by", "listing_id", "-o", str(page)])
    assert report.exit_code == 0, report.output
    assert "200 photos in 3 listing(s), 2 failed" in report.output


class Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_without_scoring_any_input_twice(
    ray_session, corpus: Path, tiny_model: Path, in_process: list, tmp_path: Path
) -> None:
    output = tmp_path / "resumable"
    config = RayScoreConfig(output=str(output), models=(str(tiny_model),), shard_size=20, batch_size=8)
    first: list[int] = []

    def stop_after_three(done) -> None:
        first.append(done.shard)
        if len(first) == 3:
            raise Interrupted()

    with pytest.raises(Interrupted):
        score_with(config, [str(corpus)], on_shard=stop_after_three)
    parts = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")}
    assert sorted(parts) == sorted(f"part-{s:06d}.parquet" for s in first)
    first_rows = sum(pq.read_table(output / name).num_rows for name in parts)
    (output / ".part-000010.parquet.tmp-deadbeef").write_bytes(b"torn write of a killed run")

    second: list[int] = []
    summary = score_with(config, [str(corpus)], on_shard=lambda done: second.append(done.shard))
    assert summary.skipped_shards == 3 and summary.shards == 11
    assert sorted(first + second) == list(range(11))  # every shard exactly once across the two runs
    assert summary.rows == 202 - first_rows
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet") if p.name in parts} == parts
    assert not list(output.glob(".part-*"))
    assert_rows_match(read_output(str(output)), in_process)
    again = score_with(config, [str(corpus)])
    assert (again.written_shards, again.skipped_shards, again.plan) == (0, 11, None)


def test_cli_engine_ray_writes_shards(ray_session, corpus: Path, tiny_model: Path, tmp_path: Path) -> None:
    output = tmp_path / "cli_out"
    result = CliRunner().invoke(
        app, ["score", str(corpus / "hotel_0"), "--engine", "ray", "-m", str(tiny_model), "-o", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "scored 67, failed 0" in result.output
    assert read_output(str(output)).num_rows == 67


def test_an_actor_that_cannot_open_the_model_fails_the_run_naming_the_users_file(
    ray_session, corpus: Path, tmp_path: Path
) -> None:
    import onnx
    from helpers.tiny_models import tiny_model_proto

    proto = tiny_model_proto(name="broken", size=32)  # valid metadata, a graph onnxruntime refuses
    proto.graph.node[1].input[0] = "nonexistent"
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    result = CliRunner().invoke(
        app, ["score", str(corpus / "hotel_0"), "--engine", "ray", "-m", str(broken), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    expected = f"error: ray: nima_rt.contract.spec.ContractError: {broken}: onnxruntime cannot load the model ("
    assert errors[0].startswith(expected)
    assert not list((tmp_path / "o").glob("part-*"))
