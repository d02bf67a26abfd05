"""Head experiments on cached features, the ranking keys of a build-dataset split, and a trainer run
with the ranking term and grouped batches (tiny backbone, generated photos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.photos import photo_like
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("scipy")
pytest.importorskip("skimage")
pytest.importorskip("nima_rt.train.datasets.kadid")

from nima_rt.train.data.label_sets import load_label_set  # noqa: E402
from nima_rt.train.data.sampling import ranking_keys, ranking_weights  # noqa: E402
from nima_rt.train.datasets.build_dataset import BuildConfig, Reference, build_dataset  # noqa: E402
from nima_rt.train.fit.config import resolve_config  # noqa: E402
from nima_rt.train.fit.head_sweep import HeadOption, cache_features, load_cache, run_sweep  # noqa: E402
from nima_rt.train.fit.train_run import train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("graded")
    refs = []
    for index, split in enumerate(("train", "train", "val")):
        path = root / "photos" / f"p{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(index, 96, 72)).save(path)
        refs.append(Reference(path, f"p{index}", split))
    config = BuildConfig(short_side=72, crops={"train": 1, "val": 0, "test": 0},
                         distortions=("gaussian_blur", "underexposure"), levels=(1, 3, 5))
    build_dataset(refs, root / "ds", config)
    return root / "ds"


def _config(dataset: Path, out: Path, **head: object) -> object:
    return resolve_config("default", overrides={
        "name": "tiny", "out": str(out), "batch_size": 8, "pretrained": "none", "seed": 0, "threads": 1,
        "model": {"backbone": "test_efficientnet", "image_size": 64, "head": "multilevel"},
        "head": {"epochs": 2, "cache_views": 1, **head}, "full": {"epochs": 0},
        "data": {"labels": str(dataset / "train.csv"), "val_labels": str(dataset / "val.csv"), "workers": 0},
    })


def test_ranking_keys_group_by_photo_view_and_branch_by_type(graded: Path) -> None:
    labels = load_label_set(graded / "train.csv")
    groups, branches = ranking_keys(labels)
    # 2 photos x 2 views (full, crop0) = 4 groups of 7 images (clean + 2 types x 3 levels).
    assert len(labels) == 28 and sorted(torch.bincount(groups).tolist()) == [7, 7, 7, 7]
    assert branches is not None and sorted(set(branches.tolist())) == [0, 1, 2]
    assert int((branches == 0).sum()) == 4  # one clean image per group


def test_ranking_weights_follow_the_distortion_column(graded: Path) -> None:
    labels = load_label_set(graded / "train.csv")
    weights = ranking_weights(labels, {"underexposure": 20.0})
    _groups, branches = ranking_keys(labels)
    assert weights is not None and weights.shape == (28,)
    # clean images weigh 0, under-exposure 20, the unnamed type (blur) 1.
    assert sorted(set(weights.tolist())) == [0.0, 1.0, 20.0] and int((weights == 20.0).sum()) == 12
    assert bool((weights[branches == 0] == 0).all())
    assert ranking_weights(labels, {}) is None
    with pytest.raises(ValueError, match="no images of distortion type\\(s\\) halo named in rank_type_weights"):
        ranking_weights(labels, {"halo": 2.0})


def test_sweep_on_cached_features_is_deterministic(graded: Path, tmp_path: Path) -> None:
    config = _config(graded, tmp_path / "runs")
    cache = cache_features(config, tmp_path / "cache" / "features.pt", views=2)
    saved = load_cache(cache)
    assert tuple(saved["train"].shape[:2]) == (2, 28) and tuple(saved["val"].shape[:1]) == (7,)
    options = [HeadOption("plain", epochs=3, weight_decay=0.0),
               HeadOption("ranked", epochs=3, weight_decay=0.0, rank_weight=1.0, per_group=4)]
    first = run_sweep(config, cache, options, tmp_path / "sweep")
    again = run_sweep(config, cache, options[:1], tmp_path / "sweep2")
    assert first[0]["val_emd"] == again[0]["val_emd"]  # seeded: the same option, the same numbers
    for record in first:
        assert 1 <= record["epoch"] <= 3 and 0.0 < record["val_emd"] < 1.0
        assert set(record["val_spearman"]) == {"gaussian_blur", "underexposure"}
        assert -1.0 <= record["val_spearman_mean_all"] <= 1.0
        assert 0.0 <= record["val_photo_variance"] <= 1.0  # one validation photo: 0
    lines = (tmp_path / "sweep" / "sweep.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["option"]["name"] for line in lines] == ["plain", "ranked"]
    # The last epoch instead of the lowest validation EMD, and type-weighted ranking pairs.
    last, weighted = run_sweep(config, cache, [
        HeadOption("last", epochs=3, weight_decay=0.0, select="last"),
        HeadOption("weighted", epochs=3, weight_decay=0.0, rank_weight=1.0, per_group=4, select="last",
                   rank_type_weights={"underexposure": 20.0})], tmp_path / "sweep3")
    assert last["epoch"] == weighted["epoch"] == 3
    assert weighted["option"]["rank_type_weights"] == {"underexposure": 20.0}
    assert weighted["val_emd"] != last["val_emd"]
    with pytest.raises(ValueError, match="select must be 'best' or 'last', got 'median'"):
        run_sweep(config, cache, [HeadOption("bad", select="median")], tmp_path / "sweep4")


def test_trainer_runs_with_the_ranking_term_and_grouped_batches(graded: Path, tmp_path: Path) -> None:
    plain = train(_config(graded, tmp_path / "a"), echo=False, progress=False)
    ranked = train(_config(graded, tmp_path / "b", rank_weight=1.0, per_group=4), echo=False, progress=False)
    weighted = train(_config(graded, tmp_path / "c", rank_weight=1.0, per_group=4,
                             rank_type_weights={"underexposure": 20.0}), echo=False, progress=False)
    assert weighted.history[1]["train_emd"] != ranked.history[1]["train_emd"]
    for result in (plain, ranked):
        assert result.best.is_file() and len(result.history) == 3  # epoch 0 + 2 head epochs
    # The ranking term is part of the training loss: the runs differ from the first epoch on.
    assert plain.history[1]["train_emd"] != ranked.history[1]["train_emd"]


class _Planted:
    """Unpickling this calls ``Path.touch``: what a hostile cache file could do with any callable."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.target,))


def test_a_cache_that_would_run_code_is_refused_unrun(graded: Path, tmp_path: Path) -> None:
    planted = tmp_path / "ran"
    cache = tmp_path / "features.pt"
    torch.save({"train": torch.zeros(1, 2, 3), "hook": _Planted(planted)}, cache)
    refused = r"features.pt: not a feature cache of cache_features \(.*Weights only load failed"
    with pytest.raises(ValueError, match=refused):
        run_sweep(_config(graded, tmp_path / "runs"), cache, [HeadOption("plain", epochs=1)], tmp_path / "sweep")
    assert not planted.exists()  # weights_only=False would have created it while loading
    torch.save({"train": torch.zeros(1, 2, 3)}, cache)
    with pytest.raises(ValueError, match=r"features.pt: not a feature cache of cache_features \(missing train_ok, "):
        load_cache(cache)
