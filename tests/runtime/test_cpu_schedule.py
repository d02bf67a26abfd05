"""CPU scheduling: the core split, parallel streams, and the same rows in the same order either way."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.photos import photo_like
from PIL import Image

from nima_rt import Scorer, ScorerConfig
from nima_rt.io.model_file import load_model_file
from nima_rt.runtime.backends import BackendChoice, BackendOptions, BackendOutput, onnxruntime_backend
from nima_rt.runtime.backends.base import concurrent_runs
from nima_rt.runtime.cpu_plan import CpuPlan, plan_cpu

# -- the split -------------------------------------------------------------------------------------

def test_default_plan_is_one_single_thread_stream_per_core_and_a_decoder_per_core() -> None:
    assert plan_cpu(2) == CpuPlan(decode_workers=2, streams=2, threads_per_stream=1)
    assert plan_cpu(8) == CpuPlan(8, 8, 1)
    assert plan_cpu(2).summary == "cpu: 2 decode thread(s), 2 inference stream(s) x 1 thread"


def test_overrides() -> None:
    assert plan_cpu(2, workers=1) == CpuPlan(1, 2, 1)
    assert plan_cpu(2, threads=1) == CpuPlan(2, 1, 1)  # --threads 1: one batch at a time on one thread
    assert plan_cpu(4, threads=3) == CpuPlan(4, 3, 1)
    assert plan_cpu(2, streams=1) == CpuPlan(2, 1, 2)  # the schedule before streams: one batch on all cores
    assert plan_cpu(8, streams=3) == CpuPlan(8, 3, 2)
    assert plan_cpu(8, threads=6, streams=2) == CpuPlan(8, 2, 3)
    assert plan_cpu(8, streams=2).summary == "cpu: 8 decode thread(s), 2 inference stream(s) x 4 threads"


def test_bad_splits_name_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^threads \(1\) must be >= streams \(2\): each stream needs a thread$"):
        plan_cpu(2, threads=1, streams=2)
    with pytest.raises(ValueError, match=r"^streams must be >= 1, got 0$"):
        plan_cpu(2, streams=0)
    with pytest.raises(ValueError, match=r"^threads \(2\) must be >= streams \(3\)"):
        ScorerConfig(threads=2, streams=3)


# -- the backend -----------------------------------------------------------------------------------

def test_one_session_runs_batches_from_several_threads_at_once(tiny_model: Path) -> None:
    backend = onnxruntime_backend.create(load_model_file(tiny_model), BackendOptions(threads=1, streams=2))
    assert concurrent_runs(backend) == 2
    assert backend.session.get_session_options().intra_op_num_threads == 1
    batch = np.stack([photo_like(seed, 32, 32) for seed in range(5)])
    first = backend.run(batch)
    started = threading.Barrier(2, timeout=30)
    outputs: list[BackendOutput] = []

    def overlapping() -> None:
        started.wait()
        outputs.append(backend.run(batch))

    threads = [threading.Thread(target=overlapping) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outputs) == 2
    for output in outputs:
        np.testing.assert_array_equal(output.mean, first.mean)
        np.testing.assert_array_equal(output.dist, first.dist)
    backend.close()
    with pytest.raises(RuntimeError, match="^onnxruntime-cpu: backend is closed$"):
        backend.run(batch)


# -- the scorer ------------------------------------------------------------------------------------

def _folder(tmp_path: Path, count: int) -> list[str]:
    names = []
    for index in range(count):
        path = tmp_path / f"{index:03d}.jpg" if index % 3 else tmp_path / f"{index:03d}.png"
        Image.fromarray(photo_like(index, 60 + index % 17, 48)).save(path)
        names.append(str(path))
    (tmp_path / "010_bad.jpg").write_bytes(b"not a jpeg")
    names.insert(11, str(tmp_path / "010_bad.jpg"))
    return names


def test_parallel_streams_give_the_single_stream_rows(tiny_model: Path, tmp_path: Path) -> None:
    names = _folder(tmp_path, 45)
    schedules = {
        "one batch at a time, 2 threads (the old path)": ScorerConfig(batch_size=4, threads=2, streams=1),
        "two 1-thread streams": ScorerConfig(batch_size=4, threads=2, streams=2),
        "three streams, 1 decoder": ScorerConfig(batch_size=3, workers=1, threads=3),
    }
    rows = {}
    for label, config in schedules.items():
        with Scorer([tiny_model], config) as scorer:
            assert scorer.streams == scorer.cpu_plan.streams
            rows[label] = list(scorer.score_paths(names))
    reference = rows.pop("one batch at a time, 2 threads (the old path)")
    assert [r.path for r in reference] == names
    assert reference[11].error == f"{names[11]}: not an image file Pillow can read"
    for label, got in rows.items():
        assert [r.path for r in got] == names, label
        assert [r.error for r in got] == [r.error for r in reference], label
        for a, b in zip(got, reference, strict=True):
            if a.ok:
                assert a.scores["tiny"].mean == pytest.approx(b.scores["tiny"].mean, abs=1e-6)
                np.testing.assert_allclose(a.scores["tiny"].dist, b.scores["tiny"].dist, atol=1e-7)


class _OutOfOrderBackend:
    """Takes two batches at once; the first batch finishes only after the second one has."""

    name = "fake-cpu"
    concurrent_runs = 2

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()
        self.second_done = threading.Event()
        self.threads: set[str] = set()

    def run(self, images: np.ndarray) -> BackendOutput:
        with self.lock:
            call = self.calls
            self.calls += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.threads.add(threading.current_thread().name.split("_")[0])
        if call == 0 and not self.second_done.wait(timeout=30):
            raise RuntimeError("the second batch never ran beside the first")
        means = 1 + images.astype(np.float32).mean(axis=(1, 2, 3)) / 32  # 1..8.5: a valid mean naming the image
        dist = np.full((len(images), 10), 0.1, np.float32)
        with self.lock:
            self.active -= 1
        if call == 1:
            self.second_done.set()
        return BackendOutput(dist, means, np.zeros(len(images), np.float32))

    def close(self) -> None:
        pass


def test_rows_keep_input_order_when_a_later_batch_finishes_first(tiny_model: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _OutOfOrderBackend()
    monkeypatch.setattr("nima_rt.runtime.scorer.choose_backend", lambda *args: BackendChoice(fake, []))
    arrays = [np.full((32, 32, 3), value, np.uint8) for value in range(0, 250, 10)]
    with Scorer([tiny_model], ScorerConfig(batch_size=4)) as scorer:
        assert scorer.streams == 2
        results = list(scorer.score_images(arrays))
    assert [r.scores["tiny"].mean for r in results] == [1 + v / 32 for v in range(0, 250, 10)]
    assert fake.calls == 7  # 25 images in batches of 4
    assert fake.most_active == 2  # never more batches inside the backend than it takes at once
    assert fake.threads == {"nima-infer"}


def test_a_backend_without_concurrent_runs_is_called_from_one_thread(tiny_model: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    class OneAtATime(_OutOfOrderBackend):
        concurrent_runs = 1

        def run(self, images: np.ndarray) -> BackendOutput:
            self.second_done.set()  # no waiting: there is no second stream
            return super().run(images)

    fake = OneAtATime()
    monkeypatch.setattr("nima_rt.runtime.scorer.choose_backend", lambda *args: BackendChoice(fake, []))
    with Scorer([tiny_model], ScorerConfig(batch_size=4)) as scorer:
        assert scorer.streams == 1
        results = list(scorer.score_images([np.zeros((32, 32, 3), np.uint8)] * 9))
    assert len(results) == 9 and all(r.ok for r in results)
    assert fake.most_active == 1
    assert fake.threads == {"MainThread"}


# -- the CLI ---------------------------------------------------------------------------------------

def test_cli_streams_and_threads_reach_the_plan_and_say_so(tiny_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nima_rt.cli import app

    names = _folder(tmp_path, 9)
    runner = CliRunner()
    one = runner.invoke(app, ["score", *names, "--model", str(tiny_model), "--threads", "2", "--streams", "1",
                              "-b", "4", "-w", "1"])
    assert one.exit_code == 0, one.output
    assert one.stderr.splitlines()[1] == "cpu: 1 decode thread(s), 1 inference stream(s) x 2 threads, batch 4"
    two = runner.invoke(app, ["score", *names, "--model", str(tiny_model), "--threads", "2", "-b", "4"])
    assert two.exit_code == 0, two.output
    assert two.stderr.splitlines()[1].startswith("cpu: ") and "2 inference stream(s) x 1 thread, batch 4" in two.stderr
    assert two.stdout == one.stdout  # the same rows, byte for byte, in the same order
    bad = runner.invoke(app, ["score", *names, "--model", str(tiny_model), "--threads", "1", "--streams", "2"])
    assert bad.exit_code == 2
    words = " ".join(bad.stderr.replace("│", " ").split())  # typer draws usage errors in a wrapped box
    assert "threads (1) must be >= streams (2): each stream needs a thread" in words


def test_cli_precision_int8_refuses_a_model_file_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nima_rt.cli import app

    result = CliRunner().invoke(app, ["score", str(tmp_path), "--model", str(tiny_model), "--precision", "int8"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tiny_model}: --precision int8 picks a bundled model's INT8 variant; for this model export one "
        f"(`nima-rt export {tiny_model} --precision int8 --calibration-images PHOTOS/`) and pass that file with "
        "--model\n")


def test_a_failed_batch_among_parallel_batches_marks_only_its_rows(tiny_model: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    class FailsOnOneBatch(_OutOfOrderBackend):
        def run(self, images: np.ndarray) -> BackendOutput:
            self.second_done.set()  # no pairing needed here
            if int(images[0, 0, 0, 0]) == 40:  # the batch that starts with the fifth image
                raise RuntimeError("device lost")
            return super().run(images)

    fake = FailsOnOneBatch()
    monkeypatch.setattr("nima_rt.runtime.scorer.choose_backend", lambda *args: BackendChoice(fake, []))
    arrays = [np.full((32, 32, 3), value, np.uint8) for value in range(0, 120, 10)]
    with Scorer([tiny_model], ScorerConfig(batch_size=4)) as scorer:
        results = list(scorer.score_images(arrays))
    assert [r.ok for r in results] == [True] * 4 + [False] * 4 + [True] * 4
    assert results[4].error == "<image 4>: inference failed (RuntimeError: device lost)"
    assert [r.scores["tiny"].mean for r in results if r.ok] == [1 + v / 32 for v in (0, 10, 20, 30, 80, 90, 100, 110)]


def test_the_bundled_model_scores_the_same_under_both_schedules() -> None:
    from nima_rt.io.model_file import bundled_models

    if "technical" not in bundled_models():
        pytest.skip("no bundled technical model")
    images = [photo_like(seed, 160, 120) for seed in range(12)]
    rows = {}
    for label, config in {"one batch at a time, 2 threads": ScorerConfig(batch_size=4, threads=2, streams=1),
                          "two 1-thread streams": ScorerConfig(batch_size=4)}.items():
        with Scorer("technical", config) as scorer:
            rows[label] = [r.scores["technical"] for r in scorer.score_images(images)]
    for a, b in zip(rows["one batch at a time, 2 threads"], rows["two 1-thread streams"], strict=True):
        assert a.mean == pytest.approx(b.mean, abs=1e-5)
        np.testing.assert_allclose(a.dist, b.dist, atol=1e-6)
