"""The power of dse's two-population tests, by simulation of the tests themselves (pure numpy
and scipy, no I/O), and the number of models per space that reaches a stated power.

The tests are those a claim's verdict rests on (dse.method.claims), vectorized over many
simulated experiments at once:

- "A better than B": the one-sided two-sample KS test of A's EDF lying above B's, with
  scipy's exact p (`ks_plus`, `ks_p`: the Gnedenko–Korolyuk count for equal sizes, the exact
  critical distance of dse.analysis.effects otherwise);
- "A at least as good as B within M" and "A same as B within M": one-sided Mann–Whitney
  tests of A − δ against B (`mw_p`: scipy's normal approximation with the continuity
  correction, which scipy itself uses from 8 models on);
- "A ranks alike at P and T above R": the lower end of Spearman ρ's percentile bootstrap
  interval (dse.analysis.reruns.fidelity's) against R, the proxy's and the target's errors
  joined by a Gaussian copula of the planned ρ (`rank_power`).

A simulated population is drawn from a `Spread`: a pilot's errors (each population centred
on its median, pooled, resampled with a Gaussian kernel: a smoothed bootstrap, so that the
errors' skew is kept and no two errors tie), or a normal law of a given standard deviation;
A's errors are B's law shifted by the planted shift. Power is the share of `reps` simulated
experiments in which the claim holds at `level`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from dse.analysis.effects import ks_critical
from dse.analysis.reruns import spearman_rows
from dse.errors import ArgumentError, DseError

PAIR_KINDS = ("better", "at_least", "same")
MAX_N = 5000          # the largest n per space the search tries
MIN_N = 3             # the smallest


# ---- the law the simulated errors follow ---------------------------------------------------

@dataclass(frozen=True, eq=False)
class Spread:
    """How a population's errors scatter around its centre, in points: `residuals` (a
    pilot's errors less their population's median, pooled) resampled with a Gaussian kernel,
    or (residuals None) a normal law of standard deviation `sd`; `scale` multiplies either
    (seed-averaged errors scatter less). `source` says where it comes from."""

    sd: float
    residuals: np.ndarray | None = None
    scale: float = 1.0
    source: str = ""

    @classmethod
    def normal(cls, sd: float, source: str = "") -> Spread:
        if not (np.isfinite(sd) and sd > 0):
            raise ArgumentError("sd", f"must be a positive number of points (got {sd!r})")
        return cls(float(sd), None, 1.0, source or f"normal, sd {sd:g} points")

    @classmethod
    def pilot(cls, errors: list, source: str = "") -> Spread:
        """The pooled residuals of the pilot's populations (each a list of errors)."""
        parts = [np.asarray(e, dtype=float) for e in errors]
        parts = [e[np.isfinite(e)] for e in parts]
        if any(len(e) < 2 for e in parts) or not parts:
            raise DseError("a pilot population needs at least 2 finished models")
        r = np.concatenate([e - np.median(e) for e in parts])
        sd = float(np.sqrt(sum(((e - e.mean()) ** 2).sum() for e in parts)
                           / (len(r) - len(parts))))
        if not sd > 0:
            raise DseError("the pilot's errors do not vary: no spread to plan with")
        return cls(sd, r, 1.0, source or f"pilot, {len(r)} models")

    def scaled(self, factor: float, source: str) -> Spread:
        return Spread(self.sd, self.residuals, self.scale * factor, source)

    @property
    def sd_now(self) -> float:
        """The standard deviation of the errors drawn, in points."""
        return self.sd * self.scale

    def draw(self, rng, shape) -> np.ndarray:
        """Errors of `shape`, centred near 0 (the law's median)."""
        if self.residuals is None:
            return self.scale * self.sd * rng.standard_normal(shape)
        r = self.residuals
        iqr = np.subtract(*np.percentile(r, [75, 25]))
        h = 0.9 * min(self.sd, iqr / 1.34 if iqr > 0 else self.sd) * len(r) ** -0.2
        return self.scale * (rng.choice(r, size=shape) + h * rng.standard_normal(shape))


# ---- the tests, vectorized over simulated experiments --------------------------------------

def ks_plus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """D+ = sup_e (F_a(e) − F_b(e)) of each row of a (R × na) against b (R × nb); ties
    between draws are not handled (the simulated errors are continuous)."""
    na, nb = a.shape[-1], b.shape[-1]
    x = np.concatenate([a, b], axis=-1)
    step = np.concatenate([np.full(na, 1.0 / na), np.full(nb, -1.0 / nb)])
    walk = np.cumsum(step[np.argsort(x, axis=-1, kind="stable")], axis=-1)
    return np.maximum(walk.max(axis=-1), 0.0)


def ks_p(d: np.ndarray, n: int) -> np.ndarray:
    """The exact p of D+ ≥ d for two samples of n each: C(2n, n − j)/C(2n, n) with j = the
    smallest whole number with j/n ≥ d (Gnedenko and Korolyuk)."""
    j = np.ceil(np.asarray(d, dtype=float) * n - 1e-9)
    j = np.clip(j, 0, n)
    logp = 2 * special.gammaln(n + 1) - special.gammaln(n - j + 1) - special.gammaln(n + j + 1)
    return np.minimum(1.0, np.exp(logp))


def mw_p(a: np.ndarray, b: np.ndarray, side: str) -> np.ndarray:
    """One-sided Mann–Whitney p of each row of a against b: side 'less' for "A's values lie
    below B's", 'greater' for above; the normal approximation with the continuity correction
    (no ties)."""
    na, nb = a.shape[-1], b.shape[-1]
    x = np.concatenate([a, b], axis=-1)
    from_a = np.argsort(x, axis=-1, kind="stable") < na  # sorted positions holding A's
    u1 = (from_a * np.arange(1.0, na + nb + 1)).sum(axis=-1) - na * (na + 1) / 2
    u = u1 if side == "greater" else na * nb - u1
    mu, s = na * nb / 2, np.sqrt(na * nb * (na + nb + 1) / 12)
    return stats.norm.sf((u - mu - 0.5) / s)


def holds(kind: str, a: np.ndarray, b: np.ndarray, level: float, margin: float = 1.0
          ) -> np.ndarray:
    """Whether the claim of `kind` (better, at_least, same) holds at `level` in each
    simulated experiment (rows of A's and B's errors), by its own test."""
    if kind == "better":
        na, nb = a.shape[-1], b.shape[-1]
        return ks_plus(a, b) >= ks_critical(na, nb, level, two_sided=False) - 1e-9
    if kind == "at_least":
        return mw_p(a - margin, b, "less") < level
    if kind == "same":
        return np.maximum(mw_p(a - margin, b, "less"), mw_p(a + margin, b, "greater")) < level
    raise ArgumentError("kind", f"must be one of {', '.join(PAIR_KINDS)} (got {kind!r})")


# ---- power and the n that reaches it -------------------------------------------------------

def power(kind: str, n_a: int, n_b: int, shift: float, spread: Spread, level: float,
          margin: float = 1.0, reps: int = 2000, seed: int = 0) -> float:
    """The share of `reps` simulated experiments, n_a models of A and n_b of B, A's errors
    shifted by `shift` points from B's (negative: A lower), in which the claim holds at
    `level`."""
    rng = np.random.default_rng(seed)
    got, left = 0, reps
    chunk = max(1, 2_000_000 // (n_a + n_b))
    while left:
        k = min(chunk, left)
        b = spread.draw(rng, (k, n_b))
        a = spread.draw(rng, (k, n_a)) + shift
        got += int(holds(kind, a, b, level, margin).sum())
        left -= k
    return got / reps


def n_for_power(kind: str, target: float, shift: float, spread: Spread, level: float,
                margin: float = 1.0, reps: int = 2000, seed: int = 0, max_n: int = MAX_N
                ) -> int | None:
    """The smallest n (models per space, both spaces alike) whose power reaches `target`,
    to within 2% (and one model): from a normal approximation's guess, steps of 1.25× to a
    bracket, then bisection (power grows with n, up to the simulation's noise and the KS
    statistic's steps); None when even max_n falls short."""
    p = functools.cache(lambda n: power(kind, n, n, shift, spread, level, margin, reps, seed))
    n = min(max_n, max(MIN_N, _guess(kind, target, shift, spread.sd_now, level, margin)))
    if p(n) >= target:
        lo, hi = n, n
        while lo > MIN_N and p(lo) >= target:
            hi, lo = lo, max(MIN_N, int(lo / 1.25))
        if lo == MIN_N and p(lo) >= target:
            return lo
        return _bisect(p, lo, hi, target)
    return _upward(p, n, target, max_n, 1.25)


def _upward(p, n: int, target: float, max_n: int, step: float) -> int | None:
    """The smallest n' ≥ n (to within 2%) with p(n') ≥ target: steps of `step`× from n to a
    bracket, then bisection; None when even max_n falls short."""
    lo = hi = n
    while p(hi) < target:
        if hi >= max_n:
            return None
        lo, hi = hi, min(max_n, int(np.ceil(hi * step)))
    return _bisect(p, lo, hi, target)


def _bisect(p, lo: int, hi: int, target: float) -> int:
    """Bisection of [lo, hi] (p(hi) ≥ target) to within 2% of hi and one model."""
    while hi - lo > max(1, int(0.02 * hi)):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if p(mid) >= target else (mid, hi)
    return hi


def _guess(kind: str, target: float, shift: float, sd: float, level: float, margin: float
           ) -> int:
    """n from the normal approximation of a shift test (KS at about 0.64 of its efficiency)."""
    z = stats.norm.isf(level) + stats.norm.ppf(target)
    gap = {"better": -shift / 0.8, "at_least": margin - shift,
           "same": margin - abs(shift)}.get(kind, 0.0)
    if not gap > 0:
        return MAX_N
    return int(np.ceil(2 * (z * sd / gap) ** 2 * 1.05))


def rank_power(rho: float, threshold: float, n: int, level: float, reps: int = 400,
               boot: int = 500, seed: int = 0) -> float:
    """The power of "ranks alike above R": the share of `reps` simulated studies of n models
    in which the lower end of Spearman ρ's percentile bootstrap interval at 1 − level (`boot`
    resamples of the models, ties averaged: dse.analysis.reruns.fidelity's) lies above R,
    the proxy's and the target's errors joined by a Gaussian copula whose Spearman ρ is
    `rho` (ranks do not see the marginal laws)."""
    if n < 4:
        return 0.0
    r = 2 * np.sin(np.pi * rho / 6)  # the Pearson correlation whose Spearman ρ is rho
    rng = np.random.default_rng(seed)
    got, left = 0, reps
    chunk = max(1, 1_000_000 // (boot * n))
    while left:
        k = min(chunk, left)
        x = rng.standard_normal((k, n))
        y = r * x + np.sqrt(1 - r * r) * rng.standard_normal((k, n))
        idx = rng.integers(0, n, size=(k, boot, n))
        rows = np.arange(k)[:, None, None]
        rho_b = spearman_rows(x[rows, idx], y[rows, idx])
        got += int((np.nanquantile(rho_b, level / 2, axis=1) > threshold).sum())
        left -= k
    return got / reps


def rank_n(rho: float, threshold: float, target: float, level: float, reps: int = 400,
           seed: int = 0, max_n: int = MAX_N) -> int | None:
    """The smallest n (to within 2%) whose rank_power reaches `target`, from Fisher's z
    (variance 1.06/(n − 3), which is optimistic against the bootstrap: a lower bound) upward;
    None when rho ≤ threshold or even max_n falls short."""
    if rho <= threshold:
        return None
    gap = np.arctanh(min(rho, 0.9999)) - np.arctanh(threshold)
    z = stats.norm.isf(level / 2) + stats.norm.ppf(target)
    p = functools.cache(lambda n: rank_power(rho, threshold, n, level, reps, seed=seed))
    return _upward(p, min(max_n, max(4, int(np.ceil(3 + 1.06 * (z / gap) ** 2)))), target,
                   max_n, 1.2)
