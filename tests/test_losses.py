"""EMD loss against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from nima_rt.train.losses import emd_loss, emd_per_sample  # noqa: E402


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
