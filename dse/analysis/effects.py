"""Effect sizes and the tests that verdicts need (pure numpy/scipy, no I/O).

- the shift in error between two populations in points (A − B; negative: A has lower
  errors): the Hodges–Lehmann shift (the median of all differences a_i − b_j; of the Walsh
  averages of the pair differences when paired), or the shift of the weighted medians for
  complexity-normalized populations, each with a bootstrap percentile interval;
- tests of the shift against a value δ: one-sided Mann–Whitney tests of A − δ against B
  (Wilcoxon signed-rank tests of the pair differences − δ when paired), valid under a shift
  model, so two of them make an equivalence test (TOST) and one a non-inferiority test;
- the smallest KS distance a sample size can detect (exact critical values);
- family-wise corrections of several p-values (Holm, Benjamini–Hochberg);
- the good range of a parameter against its permutation null (errors shuffled among models).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from dse.analysis.stats import weighted_quantile, weights
from dse.errors import ArgumentError

CORRECTIONS = ("none", "holm", "bh")
BOOT_CELLS = 40_000_000  # pairwise differences held at once by the HL bootstrap (~320 MB)
BOOT_BUDGET = 50_000_000  # pairwise differences of all HL resamples together (about a second)

# ---- the shift between two populations -----------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """An effect with its bootstrap percentile interval at `level` from `repeats` resamples:
    a shift of error in points (A − B; negative: A has lower errors), or (unit "") the value
    of a parameter, such as the best model's in a good range."""

    name: str
    estimate: float
    lo: float
    hi: float
    level: float
    repeats: int
    unit: str = "points"

    def text(self) -> str:
        """'shift +1.45 points (95% interval −0.15 to +3.15)'."""
        if self.unit != "points":
            return (f"{self.name} {self.estimate:.4g} ({self.level:.0%} interval "
                    f"{self.lo:.4g} to {self.hi:.4g})")
        return (f"shift {self.estimate:+.2f} points ({self.level:.0%} interval "
                f"{self.lo:+.2f} to {self.hi:+.2f})")


def hl_shift(a, b) -> float:
    """The Hodges–Lehmann shift of A against B: the median of all differences a_i − b_j."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.median(np.subtract.outer(a, b)))


def hl_paired(d) -> float:
    """The Hodges–Lehmann shift of pair differences d: the median of the Walsh averages
    (d_i + d_j)/2 over i ≤ j."""
    d = np.asarray(d, dtype=float)
    i, j = np.triu_indices(len(d))
    return float(np.median((d[i] + d[j]) / 2))


def shift(a, b, wa=None, wb=None, repeats: int = 10_000, level: float = 0.95,
          seed=0) -> Effect:
    """The shift of A's errors against B's with a bootstrap interval (each population
    resampled on its own): Hodges–Lehmann, or the weighted-median shift when weighted. Large
    populations get fewer Hodges–Lehmann resamples (BOOT_BUDGET differences, at least 1,000)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    if wa is None and wb is None:
        est = hl_shift(a, b)
        repeats = min(repeats, max(1000, BOOT_BUDGET // (len(a) * len(b))))
        reps = _hl_boot(a, b, repeats, rng)
        name = "Hodges–Lehmann shift"
    else:
        est = weighted_quantile(a, 0.5, wa) - weighted_quantile(b, 0.5, wb)
        reps = weighted_shift_reps(a, b, wa, wb, repeats, rng)
        name = "weighted-median shift"
    return _effect(name, est, reps, level)


def paired_shift(d, repeats: int = 10_000, level: float = 0.95, seed=0) -> Effect:
    """The Hodges–Lehmann shift of pair differences d = a − b with a bootstrap interval
    (pairs resampled)."""
    d = np.asarray(d, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(d)
    i, j = np.triu_indices(n)
    repeats = min(repeats, max(1000, BOOT_BUDGET // len(i)))
    reps = np.empty(repeats)
    step = max(1, BOOT_CELLS // max(1, len(i)))
    for s in range(0, repeats, step):
        idx = rng.integers(n, size=(min(step, repeats - s), n))
        x = d[idx]
        reps[s:s + len(idx)] = np.median((x[:, i] + x[:, j]) / 2, axis=1)
    return _effect("paired Hodges–Lehmann shift", hl_paired(d), reps, level)


def _hl_boot(a, b, repeats: int, rng) -> np.ndarray:
    """Hodges–Lehmann shifts of `repeats` bootstrap resamples, in chunks of bounded memory."""
    na, nb = len(a), len(b)
    reps = np.empty(repeats)
    step = max(1, BOOT_CELLS // (na * nb))
    for s in range(0, repeats, step):
        k = min(step, repeats - s)
        xa = a[rng.integers(na, size=(k, na))]
        xb = b[rng.integers(nb, size=(k, nb))]
        reps[s:s + k] = np.median((xa[:, :, None] - xb[:, None, :]).reshape(k, -1), axis=1)
    return reps


def _effect(name: str, est: float, reps: np.ndarray, level: float) -> Effect:
    lo, hi = np.percentile(reps, [50 * (1 - level), 100 - 50 * (1 - level)])
    return Effect(name, float(est), float(lo), float(hi), level, len(reps))


# ---- tests of the shift against a value ----------------------------------------------------


def shift_p(a, b, delta: float, side: str, paired: bool = False) -> float:
    """The p-value for "the shift A − B lies below δ" (side 'below') or "above δ" (side
    'above') against the opposite: a one-sided Mann–Whitney test of A − δ against B, or the
    Wilcoxon signed-rank test of the pair differences a − b − δ when `paired`."""
    if side not in ("below", "above"):
        raise ArgumentError("side", f"must be below or above (got {side!r})")
    alt = "less" if side == "below" else "greater"
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        d = a - b - delta
        if not np.any(d != 0):
            return 1.0
        return float(stats.wilcoxon(d, alternative=alt, zero_method="pratt").pvalue)
    return float(stats.mannwhitneyu(a - delta, b, alternative=alt).pvalue)


def boot_p(reps: np.ndarray, delta: float, side: str) -> float:
    """The bootstrap p-value for "the shift lies below δ" (or above): the share of resampled
    shifts on the other side of δ (for weighted populations, where no rank test applies)."""
    reps = np.asarray(reps, dtype=float)
    against = reps >= delta if side == "below" else reps <= delta
    return float((1 + against.sum()) / (len(reps) + 1))


def weighted_shift_reps(a, b, wa, wb, repeats: int = 10_000, seed=0) -> np.ndarray:
    """Bootstrap replicates of the weighted-median shift: each population resampled with
    probabilities its weights (the replicates `shift` summarizes, for the same seed)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ia = rng.choice(len(a), size=(repeats, len(a)), p=weights(a, wa))
    ib = rng.choice(len(b), size=(repeats, len(b)), p=weights(b, wb))
    return np.median(a[ia], axis=1) - np.median(b[ib], axis=1)


def rank_interval(a, b, alpha: float = 0.05, paired: bool = False) -> tuple[float, float]:
    """The distribution-free interval of the Hodges–Lehmann shift that the rank tests above
    invert (Moses; Tukey's Walsh averages when paired), from the normal approximation of the
    rank statistic: its ends are the largest δ that "above δ" and the smallest that "below
    δ" reject at `alpha` each, so [lo, hi] is a (1 − 2·alpha) interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    z = stats.norm.isf(alpha)
    if paired:
        d, n = a - b, len(a)
        i, j = np.triu_indices(n)
        diffs = np.sort((d[i] + d[j]) / 2)
        sd = np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    else:
        n, m = len(a), len(b)
        diffs = np.sort(np.subtract.outer(a, b).ravel())
        sd = np.sqrt(n * m * (n + m + 1) / 12)
    k = int(np.floor(len(diffs) / 2 - z * sd - 0.5))  # differences cut from each end
    if k < 0:
        return -np.inf, np.inf
    return float(diffs[k]), float(diffs[len(diffs) - k - 1])


# ---- what a sample size can see -----------------------------------------------------------


@lru_cache(maxsize=256)
def ks_critical(na: int, nb: int, alpha: float = 0.05, two_sided: bool = True) -> float:
    """The smallest two-sample KS distance significant at `alpha` for samples of na and nb
    (scipy's exact p): the resolution of a comparison of this size."""
    a = (np.arange(na) + 0.5) / na

    def p(s):
        b = (np.arange(nb) + 0.5) / nb + s
        r = stats.ks_2samp(a, b, alternative="two-sided" if two_sided else "greater")
        return float(r.statistic), float(r.pvalue)

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if p(mid)[1] < alpha else (mid, hi)
    return p(hi)[0]


# ---- several claims at once ---------------------------------------------------------------


def adjust(p, method: str = "holm") -> np.ndarray:
    """p-values adjusted for their number: Holm's step-down (family-wise error), Benjamini–
    Hochberg (false discovery rate) or none. NaN entries are not tested and stay NaN."""
    if method not in CORRECTIONS:
        raise ArgumentError("correction", f"must be {', '.join(CORRECTIONS)} (got {method!r})")
    p = np.asarray(p, dtype=float)
    out = p.copy()
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if method == "none" or m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps))
    else:
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ps)[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    out[order] = adj
    return out


# ---- good ranges against chance -----------------------------------------------------------


@dataclass(frozen=True)
class RangeTest:
    """The good range of a parameter (DDS footnote 4: the central interval of the best
    model's value over bootstrap resamples) and how it compares with the ranges of the same
    resamples when errors are shuffled among models: `p` is the share of shuffles whose range
    is at most as wide (the observed counted as one), `null_width` their median width.
    Widths are measured in log x when `log`."""

    lo: float
    median: float
    hi: float
    width: float
    null_width: float
    p: float
    permutations: int
    repeats: int


def _shuffled_ranks(r0: np.ndarray, rng, permutations: int, strata) -> np.ndarray:
    """Ranks of the errors shuffled `permutations` times, within each stratum if given."""
    n = len(r0)
    if strata is None or len(set(strata)) < 2:
        return np.argsort(rng.random((permutations, n)), axis=1)
    g = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1]
    order = np.argsort(rng.random((permutations, n)) + g, axis=1)  # by stratum, shuffled
    perm = np.empty_like(order)
    perm[:, np.argsort(g, kind="stable")] = order   # each model gets one of its stratum's
    return r0[perm]


def range_test(x, e, log: bool = False, frac: float = 0.25, repeats: int = 2000,
               permutations: int = 999, level: float = 0.95, seed=0,
               strata=None) -> RangeTest:
    """Is the good range of x narrower than chance? The bootstrap resamples are drawn once;
    each shuffle of the errors reuses them, so the observed range is one of the shuffles.
    `strata` (a label per model, e.g. its flop regime): the errors are shuffled within each
    stratum only, which keeps each stratum's sampled design beside its errors."""
    x, e = np.asarray(x, dtype=float), np.asarray(e, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(e)
    m = max(1, int(n * frac))
    idx = rng.integers(n, size=(repeats, m))
    scale = np.log(x) if log and np.all(x > 0) else x
    q = [50 * (1 - level), 50, 100 - 50 * (1 - level)]
    # ranks[k, i]: the place of model i's error in shuffle k (k = 0: the errors as observed);
    # the best model of a resample is the one of lowest rank
    ranks = np.empty((permutations + 1, n), dtype=np.int64)
    ranks[0] = np.argsort(np.argsort(e, kind="stable"), kind="stable")
    ranks[1:] = _shuffled_ranks(ranks[0], rng, permutations, strata)
    widths = np.empty(permutations + 1)
    rows = np.arange(repeats)
    step = max(1, 4_000_000 // (repeats * m))  # ~32 MB of ranks at a time
    for s in range(0, permutations + 1, step):
        best = idx[rows, ranks[s:s + step][:, idx].argmin(axis=2)]  # (shuffles, repeats)
        lo, hi = np.percentile(scale[best], [q[0], q[2]], axis=1)
        widths[s:s + len(best)] = hi - lo
    best = idx[rows, ranks[0][idx].argmin(axis=1)]
    lo, med, hi = np.percentile(x[best], q)
    null = widths[1:]
    p = float((1 + (null <= widths[0] + 1e-12).sum()) / (permutations + 1))
    return RangeTest(float(lo), float(med), float(hi), float(widths[0]),
                     float(np.median(null)), p, permutations, repeats)
