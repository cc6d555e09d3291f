"""Tests that stay valid when an experiment looks at its data after every round and stops once
a claim is decided (pure numpy/scipy, no I/O).

The schedule is fixed before the first look: looks at n_1 < n_2 < ... < n_L models per space
(the experiment's n, then `size` more per round, up to `max_n`). The level α is spent over
the looks by the O'Brien–Fleming-shaped spending function of Lan and DeMets,
α(t) = 2 − 2Φ(z_{α/2}/√t) at the information fraction t = n_k/max_n (scaled so that the
last look ends at α): look k owns the share π_k = (α(t_k) − α(t_{k−1}))/α.

A claim's p at look k (its own test on the data of that look, as a fixed-n analysis
computes it) becomes a sequential p, P_k = min_{j ≤ k} p_j/π_j. By the union bound,
P(P_L ≤ u) ≤ Σ_j P(p_j ≤ u·π_j) ≤ u for every u, whatever the dependence between looks
(they share their models) and whatever the test (KS, Mann–Whitney, Wilcoxon, permutation,
bootstrap): P is a valid p-value at the planned last look, and it only falls from look to
look. Holm's step-down over the experiment's claims, applied to their P at each look,
therefore controls the chance that any true-null claim is ever called — stopping early
only leaves later looks untaken, so what it rejects the full schedule would have rejected
too. The price of the union bound against exact group-sequential boundaries is
conservatism: it ignores how strongly the looks agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from dse.errors import ArgumentError

SPENDING = "O'Brien–Fleming-shaped alpha spending (Lan–DeMets), union bound over looks"


def spent(t, alpha: float) -> np.ndarray:
    """α(t) = 2 − 2Φ(z_{α/2}/√t): the level spent by information fraction t (α at t = 1)."""
    t = np.clip(np.asarray(t, dtype=float), 1e-12, 1.0)
    return 2 * stats.norm.sf(stats.norm.isf(alpha / 2) / np.sqrt(t))


@dataclass(frozen=True)
class Schedule:
    """The looks of an experiment in rounds: models per space at each look (`looks`) and the
    share of α each owns (`shares`, summing to 1)."""

    looks: tuple
    shares: tuple
    alpha: float

    @classmethod
    def of(cls, first: int, size: int, max_n: int, alpha: float) -> Schedule:
        """Looks at first, first + size, ..., max_n (the last round may be smaller)."""
        for name, v, lo in (("first", first, 1), ("size", size, 1), ("max_n", max_n, first)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ArgumentError(name, f"must be a whole number ≥ {lo} (got {v!r})")
        looks = list(range(first, max_n, size)) + [max_n]
        cum = spent(np.array(looks) / max_n, alpha)
        cum = cum / cum[-1]
        return cls(tuple(int(n) for n in looks), tuple(float(s) for s in np.diff(np.r_[0, cum])),
                   float(alpha))

    def level(self, k: int) -> float:
        """α spent at look k (0-based): α·π_k."""
        return self.alpha * self.shares[k]

    def to_json(self) -> dict:
        return dict(looks=list(self.looks), shares=list(self.shares), alpha=self.alpha,
                    spending=SPENDING)


def sequential_p(p_by_look, shares) -> np.ndarray:
    """The sequential p after each look: the running minimum of p_k/π_k, capped at 1; an
    untested look (NaN) spends its share on nothing. Arrays of looks × claims (or looks)."""
    p = np.asarray(p_by_look, dtype=float)
    pi = np.asarray(shares, dtype=float)[:len(p)]
    ratio = np.where(np.isfinite(p), p / pi.reshape((-1,) + (1,) * (p.ndim - 1)), 1.0)
    return np.minimum(1.0, np.minimum.accumulate(ratio, axis=0))


def holm_boundaries(p, alpha: float) -> np.ndarray:
    """The level Holm's step-down holds each p (a vector over claims) to: α/(m − r + 1) at
    its rank r among them (1 for the smallest)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(np.where(np.isfinite(p), p, np.inf), kind="stable")
    out = np.empty(len(p))
    out[order] = alpha / (len(p) - np.arange(len(p)))
    return out
