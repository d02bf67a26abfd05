"""EMD loss against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from nima_rt.train.fit.losses import emd_loss, emd_per_sample, nima_loss, within_group_margin_loss  # noqa: E402


def onehot(k: int) -> list[float]:
    row = [0.0] * 10
    row[k - 1] = 1.0
    return row


def test_neighbouring_point_masses() -> None:
    # CDFs differ by 1 only at k = 1: sqrt(1/10).
    value = emd_per_sample(torch.tensor([onehot(1)]), torch.tensor([onehot(2)]))
    assert value.item() == pytest.approx(math.sqrt(0.1), abs=1e-6)


def test_opposite_point_masses() -> None:
    # CDFs differ by 1 at k = 1..9: sqrt(9/10); with r = 1 the mean absolute difference 0.9.
    pred, target = torch.tensor([onehot(1)]), torch.tensor([onehot(10)])
    assert emd_per_sample(pred, target).item() == pytest.approx(math.sqrt(0.9), abs=1e-6)
    assert emd_per_sample(pred, target, r=1).item() == pytest.approx(0.9, abs=1e-6)


def test_spread_distribution_and_batch_mean() -> None:
    # uniform vs point mass at 5: CDF differences 0.1, 0.2, 0.3, 0.4, -0.5, -0.4, -0.3, -0.2, -0.1, 0
    uniform = [0.1] * 10
    squares = [0.01, 0.04, 0.09, 0.16, 0.25, 0.16, 0.09, 0.04, 0.01, 0.0]
    expected = math.sqrt(sum(squares) / 10)
    pred = torch.tensor([uniform, onehot(3)])
    target = torch.tensor([onehot(5), onehot(3)])
    per = emd_per_sample(pred, target)
    assert per[0].item() == pytest.approx(expected, abs=1e-6)
    assert per[1].item() == pytest.approx(0.0, abs=2e-6)  # the 1e-12 floor gives 1e-6
    assert emd_loss(pred, target).item() == pytest.approx(expected / 2, abs=2e-6)


def test_gradient_is_finite_at_a_perfect_prediction() -> None:
    logits = torch.zeros(1, 10, requires_grad=True)
    loss = emd_loss(torch.softmax(logits, dim=1), torch.full((1, 10), 0.1))
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pred and target must both be \[N, bins\], got \[2, 10\] and \[2, 9\]"):
        emd_loss(torch.zeros(2, 10), torch.zeros(2, 9))


def test_within_group_margin_loss_by_hand() -> None:
    # Group 0 has three images: labels 9 > 5 > 4, predicted 5.0, 4.9, 3.0. Its pairs (better first):
    # (0, 1) gap 0.1 -> 0.25 - 0.1 = 0.15; (0, 2) gap 2.0 -> 0; (1, 2) gap 1.9 -> 0. Image 3 is alone
    # in group 1 (photos are never compared with each other). Mean over 3 pairs: 0.05.
    pred = torch.tensor([5.0, 4.9, 3.0, 6.0])
    target = torch.tensor([9.0, 5.0, 4.0, 8.0])
    groups = torch.tensor([0, 0, 0, 1])
    assert within_group_margin_loss(pred, target, groups, margin=0.25).item() == pytest.approx(0.05)
    # A wrong order costs margin + the gap: labels say 1 > 0, prediction has 0 ahead by 1.
    wrong = within_group_margin_loss(torch.tensor([6.0, 5.0]), torch.tensor([3.0, 7.0]), torch.tensor([2, 2]), 0.5)
    assert wrong.item() == pytest.approx(1.5)
    # Equal labels make no pair; no pair gives 0 with a gradient path.
    none = within_group_margin_loss(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([5.0, 5.0]),
                                    torch.tensor([0, 0]))
    assert none.item() == 0.0 and none.requires_grad


def test_nima_loss_adds_the_weighted_ranking_term() -> None:
    pred = torch.tensor([onehot(5), onehot(6)])
    target = torch.tensor([onehot(9), onehot(4)])
    groups = torch.tensor([0, 0])
    emd = emd_loss(pred, target).item()
    # Labels 9 > 4, predictions 5 < 6: 0.25 - (5 - 6) = 1.25.
    assert nima_loss(pred, target, groups, rank_weight=0.5, rank_margin=0.25).item() == pytest.approx(emd + 0.625)
    assert nima_loss(pred, target, groups, rank_weight=0.0).item() == pytest.approx(emd)
    assert nima_loss(pred, target, None, rank_weight=1.0).item() == pytest.approx(emd)


def test_grouped_order_is_a_permutation_of_runs_of_one_group() -> None:
    from nima_rt.train.data.sampling import group_ids, grouped_order

    ids = group_ids(["a", "a", "a", "a", "b", "b", "b", "c"])
    assert ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    order = grouped_order(ids, 2, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(8))
    # Runs: a in two runs of 2, b in one of 2 and one of 1, c in one of 1 -> 5 runs; reading the
    # order, the group changes at most 4 times and every run of 2 stays together.
    groups = ids[order].tolist()
    changes = sum(1 for x, y in zip(groups, groups[1:], strict=False) if x != y)
    assert changes <= 4
    again = grouped_order(ids, 2, torch.Generator().manual_seed(0))
    assert again.tolist() == order.tolist()
    with pytest.raises(ValueError, match="per_group must be >= 1, got 0"):
        grouped_order(ids, 0, torch.Generator())


def test_branches_limit_the_pairs_to_one_type_and_the_clean_photo() -> None:
    # Same numbers as above with branches [clean, type 1, type 2, clean]: (0, 1) and (0, 2) remain
    # (the clean image pairs with every type), (1, 2) compares two types and is dropped: 0.15 / 2.
    pred = torch.tensor([5.0, 4.9, 3.0, 6.0])
    target = torch.tensor([9.0, 5.0, 4.0, 8.0])
    groups = torch.tensor([0, 0, 0, 1])
    branches = torch.tensor([0, 1, 2, 0])
    assert within_group_margin_loss(pred, target, groups, 0.25, branches).item() == pytest.approx(0.075)
    with pytest.raises(ValueError, match="branches must be \\[N\\] like groups, got \\[2\\]"):
        within_group_margin_loss(pred, target, groups, 0.25, torch.tensor([0, 1]))


def test_ranking_options_are_validated() -> None:
    from nima_rt.train.fit.config import ConfigError, StageConfig

    with pytest.raises(ConfigError, match="head.per_group needs cache_views > 0"):
        StageConfig(per_group=8).validate("head")
    with pytest.raises(ConfigError, match="head.rank_weight, head.rank_margin and head.cross_weight must be >= 0"):
        StageConfig(rank_weight=-1.0).validate("head")
    StageConfig(cache_views=2, per_group=8, rank_weight=0.3).validate("head")


def test_cross_photo_term_only_pairs_with_a_large_label_gap() -> None:
    pred = torch.tensor([onehot(5), onehot(6)])
    target = torch.tensor([onehot(9), onehot(4)])
    emd = emd_loss(pred, target).item()
    # Different photos (no groups needed): labels 9 vs 4 differ by 5 > 2, predictions 5 < 6 -> 1.25.
    assert nima_loss(pred, target, cross_weight=1.0, cross_gap=2.0).item() == pytest.approx(emd + 1.25)
    assert nima_loss(pred, target, cross_weight=1.0, cross_gap=6.0).item() == pytest.approx(emd)


def test_type_weights_weigh_each_pair_by_its_type() -> None:
    # The by-hand case above with branches [clean, type 1, type 2, clean] leaves pairs (0, 1) with hinge
    # 0.15 and (0, 2) with hinge 0: a pair weighs the larger of its images' weights (the clean image's is 0),
    # so with type 1 weighted 3 and type 2 weighted 1: (3 * 0.15 + 1 * 0) / 4.
    pred = torch.tensor([5.0, 4.9, 3.0, 6.0])
    target = torch.tensor([9.0, 5.0, 4.0, 8.0])
    groups = torch.tensor([0, 0, 0, 1])
    branches = torch.tensor([0, 1, 2, 0])
    weights = torch.tensor([0.0, 3.0, 1.0, 0.0])
    assert within_group_margin_loss(pred, target, groups, 0.25, branches, weights=weights).item() == \
        pytest.approx(0.1125)
    # Equal weights are the unweighted mean; all-zero weights switch the term off.
    assert within_group_margin_loss(pred, target, groups, 0.25, branches, weights=torch.tensor([0.0, 1, 1, 0])) \
        .item() == pytest.approx(0.075)
    assert within_group_margin_loss(pred, target, groups, 0.25, branches, weights=torch.zeros(4)).item() == 0.0


def test_rank_type_weights_are_validated() -> None:
    from nima_rt.train.fit.config import ConfigError, StageConfig

    with pytest.raises(ConfigError, match=r"head.rank_type_weights must map distortion type names to numbers >= 0"):
        StageConfig(rank_weight=1.0, rank_type_weights={"underexposure": -1}).validate("head")
    with pytest.raises(ConfigError, match="head.rank_type_weights needs rank_weight > 0"):
        StageConfig(rank_type_weights={"underexposure": 20.0}).validate("head")
    StageConfig(rank_weight=1.0, rank_type_weights={"underexposure": 20.0}).validate("head")
