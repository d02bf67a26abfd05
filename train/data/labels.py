"""Labels -> 10-bin distributions over the scores 1..10 (the one place this happens).

- Vote histograms (AVA, the labelling app, generic CSV) are normalised to sum to 1.
- A mean (optionally with a standard deviation) becomes the maximum-entropy distribution on 1..10
  with those moments: ``p_k ∝ exp(a·k)`` for a mean alone, ``p_k ∝ exp(a·k + b·k²)`` for mean and
  std (:func:`distribution_from_moments`).
- Scores on other scales are mapped linearly onto 1..10 first (:data:`SCALES`,
  :func:`to_ten_point_scale`): TID2013 MOS 0..9 -> +1 (what the seed did), KADID-10k DMOS 1..5 ->
  ``1 + (x - 1) * 9 / 4`` (std times 9/4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_BINS = 10
SCORES = np.arange(1, NUM_BINS + 1, dtype=np.float64)
# Scores rescaled to [-1, 1] keep the dual problem well conditioned.
_T = (SCORES - 5.5) / 4.5
_MAX_ITER = 200
_TOL = 1e-12
# Variance margin below which a (mean, std) pair is treated as lying on the feasible set's boundary.
_BOUNDARY_VAR = 1e-9


@dataclass(frozen=True)
class Scale:
    """A linear score scale ``low..high`` that maps onto 1..10."""

    low: float
    high: float

    def mean_to_ten(self, mean: np.ndarray) -> np.ndarray:
        return 1.0 + (np.asarray(mean, dtype=np.float64) - self.low) * 9.0 / (self.high - self.low)

    def std_to_ten(self, std: np.ndarray) -> np.ndarray:
        return np.asarray(std, dtype=np.float64) * 9.0 / (self.high - self.low)


SCALES: dict[str, Scale] = {
    "1-10": Scale(1.0, 10.0),  # AVA, the labelling app, generic CSV (identity)
    "0-9": Scale(0.0, 9.0),  # TID2013 MOS: +1, as the seed's labels
    "tid2013": Scale(0.0, 9.0),
    "1-5": Scale(1.0, 5.0),  # KADID-10k DMOS, KonIQ MOS
    "kadid10k": Scale(1.0, 5.0),
    "0-1": Scale(0.0, 1.0),
    "0-100": Scale(0.0, 100.0),
}


def parse_scale(text: str) -> Scale:
    """A scale by name (:data:`SCALES`) or as ``LOW:HIGH`` (e.g. ``0:100``)."""
    key = text.strip().lower()
    if key in SCALES:
        return SCALES[key]
    low, sep, high = key.partition(":")
    try:
        scale = Scale(float(low), float(high)) if sep else None
    except ValueError:
        scale = None
    if scale is None or not scale.high > scale.low:
        raise ValueError(f"score scale {text!r} is not one of {', '.join(SCALES)} nor LOW:HIGH with LOW < HIGH")
    return scale


def to_ten_point_scale(
    mean: np.ndarray, std: np.ndarray | None, scale: Scale
) -> tuple[np.ndarray, np.ndarray | None]:
    """Map means (and stds) on ``scale`` onto 1..10, clipping means into [1, 10]."""
    mapped = np.clip(scale.mean_to_ten(mean), 1.0, 10.0)
    return mapped, None if std is None else scale.std_to_ten(std)


def normalise_votes(votes: np.ndarray) -> np.ndarray:
    """Vote counts ``[N, 10]`` -> distributions; rows must be finite, non-negative, not all zero."""
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or votes.shape[1] != NUM_BINS:
        raise ValueError(f"vote histograms must have shape [N, {NUM_BINS}], got {list(votes.shape)}")
    bad = ~np.isfinite(votes).all(axis=1) | (votes < 0).any(axis=1) | (votes.sum(axis=1) <= 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} vote histogram row(s) are negative, non-finite or all zero "
                         f"(first at row {int(np.argmax(bad))})")
    return votes / votes.sum(axis=1, keepdims=True)


def variance_bounds(mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest variance any distribution on 1..10 with this mean can have.

    The smallest puts all mass on the two integers around the mean; the largest on 1 and 10.
    """
    mean = np.asarray(mean, dtype=np.float64)
    frac = mean - np.floor(mean)
    return frac * (1.0 - frac), (mean - 1.0) * (10.0 - mean)


def distribution_from_moments(mean: np.ndarray | float, std: np.ndarray | float | None = None) -> np.ndarray:
    """The maximum-entropy distribution on 1..10 with the given mean (and std); ``[N, 10]``.

    ``mean`` must lie in [1, 10]. With ``std`` the result is ``p_k ∝ exp(a·k + b·k²)``, otherwise
    ``p_k ∝ exp(a·k)``; moments are matched to ~1e-10. A std outside what is possible for its
    mean (e.g. 0 for a mean of 5.5, or 4.5 for a mean of 3) is clipped to the nearest possible
    value, whose distribution is then the unique two-point one (mass on the neighbouring integers,
    or on 1 and 10). A mean of exactly 1 or 10 gives the point mass there.
    """
    means = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    if means.ndim != 1:
        raise ValueError(f"mean must be a scalar or a 1-D array, got shape {list(means.shape)}")
    if not np.isfinite(means).all() or (means < 1.0).any() or (means > 10.0).any():
        raise ValueError("every mean must be finite and within [1, 10] (map other scales first)")
    if std is None:
        return _max_entropy((means[:, None] - 5.5) / 4.5, _T[:, None])
    stds = np.broadcast_to(np.atleast_1d(np.asarray(std, dtype=np.float64)), means.shape)
    if not np.isfinite(stds).all() or (stds < 0).any():
        raise ValueError("every std must be finite and >= 0")
    var_lo, var_hi = variance_bounds(means)
    var = np.clip(stds**2, var_lo, var_hi)
    out = np.empty((means.size, NUM_BINS))
    low_edge = var <= var_lo + _BOUNDARY_VAR
    high_edge = (var >= var_hi - _BOUNDARY_VAR) & ~low_edge
    interior = ~(low_edge | high_edge)
    out[low_edge] = _two_point(means[low_edge])
    hm = means[high_edge]
    out[high_edge] = 0.0
    out[high_edge, 0] = (10.0 - hm) / 9.0
    out[high_edge, -1] = (hm - 1.0) / 9.0
    if interior.any():
        m, v = means[interior], var[interior]
        # Targets for the features t and t² (t = (k - 5.5) / 4.5).
        t_mean = (m - 5.5) / 4.5
        t_sq = (v + (m - 5.5) ** 2) / 4.5**2
        features = np.stack([_T, _T**2], axis=1)
        out[interior] = _max_entropy(np.stack([t_mean, t_sq], axis=1), features)
    return out


def _two_point(means: np.ndarray) -> np.ndarray:
    """Mass on floor(mean) and ceil(mean) (the minimal-variance distribution)."""
    out = np.zeros((means.size, NUM_BINS))
    lower = np.clip(np.floor(means).astype(int), 1, NUM_BINS)
    frac = means - lower
    rows = np.arange(means.size)
    out[rows, lower - 1] = 1.0 - frac
    upper = np.minimum(lower + 1, NUM_BINS)
    out[rows, upper - 1] += frac
    return out


def _max_entropy(targets: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Solve ``max H(p) s.t. E_p[features] = targets`` for each row by Newton on the convex dual.

    targets ``[N, d]``, features ``[10, d]``. Rows whose mean sits at 1 or 10 (mean-only case)
    are point masses, handled before the solver.
    """
    n, d = targets.shape
    out = np.empty((n, NUM_BINS))
    theta = np.zeros((n, d))
    # Point masses (mean exactly 1 or 10) have no finite dual solution.
    t0 = targets[:, 0]
    at_low, at_high = t0 <= -1.0, t0 >= 1.0
    active = ~(at_low | at_high)
    out[at_low] = np.eye(NUM_BINS)[0]
    out[at_high] = np.eye(NUM_BINS)[-1]
    idx = np.flatnonzero(active)
    th, tg = theta[idx], targets[idx]

    def dual(th_: np.ndarray, tg_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = th_ @ features.T
        top = logits.max(axis=1, keepdims=True)
        weights = np.exp(logits - top)
        z = weights.sum(axis=1, keepdims=True)
        p = weights / z
        value = (np.log(z) + top)[:, 0] - np.einsum("nd,nd->n", th_, tg_)
        return value, p

    live = np.arange(idx.size)  # rows of th/tg still being solved
    for _ in range(_MAX_ITER):
        if live.size == 0:
            break
        th_live, tg_live = th[live], tg[live]
        value, p = dual(th_live, tg_live)
        expect = p @ features
        grad = expect - tg_live
        unsolved = np.abs(grad).max(axis=1) >= _TOL
        live, th_live, tg_live = live[unsolved], th_live[unsolved], tg_live[unsolved]
        value, p, expect, grad = value[unsolved], p[unsolved], expect[unsolved], grad[unsolved]
        if live.size == 0:
            break
        centred = features[None, :, :] - expect[:, None, :]
        hess = np.einsum("nk,nkd,nke->nde", p, centred, centred) + 1e-12 * np.eye(d)[None]
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        # Backtracking line search on the (convex) dual: halve until it does not increase.
        scale = np.ones(live.size)
        pending = np.ones(live.size, dtype=bool)
        for _ in range(40):
            trial = th_live[pending] - scale[pending, None] * step[pending]
            trial_value, _p = dual(trial, tg_live[pending])
            ok = trial_value <= value[pending] + 1e-14 * np.abs(value[pending])
            rows = np.flatnonzero(pending)
            pending[rows[ok]] = False
            if not pending.any():
                break
            scale[pending] *= 0.5
        moved = ~pending  # rows whose line search failed have reached machine precision
        th[live[moved]] = th_live[moved] - scale[moved, None] * step[moved]
        live = live[moved]
    _value, p = dual(th, tg)
    out[idx] = p
    return out
