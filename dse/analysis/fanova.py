"""The numerical core of dse.analysis.importance (pure numpy/scipy): the columns that model
a parameter's effect, least squares from cross-products, residual projections, the
Freedman–Lane permutation statistics, Holm and min-p adjustments, and bootstrap
cross-products over models or random groups of models."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CHUNKS = 200

# ---- bins and designs ------------------------------------------------------------------------

def codes(x: np.ndarray, k: int) -> np.ndarray:
    """Bin codes 0..K−1 of values x: its distinct values when at most k, else k quantile
    bins; text values are levels and a missing value is a level of its own."""
    x = np.asarray(x)
    if x.dtype == object:
        return pd.factorize(pd.Series(x).fillna("∅"), sort=True)[0]
    x = x.astype(float)
    ok = np.isfinite(x)
    u = np.unique(x[ok])
    if len(u) > k:
        edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, k + 1)[1:-1]))
        c = np.searchsorted(edges, x, side="right")
    else:
        c = np.searchsorted(u, x)
    c = np.where(ok, c, c.max(initial=0) + 1)
    return np.unique(c, return_inverse=True)[1].astype(np.int64)


def basis(x: np.ndarray, k: int) -> np.ndarray:
    """The columns that model a parameter's effect: one indicator per level but the first
    when it takes at most k values (or text), else a linear spline with knots at k − 2
    inner quantiles (k − 1 columns; of log x for positive values over more than a decade),
    with an indicator of missing values."""
    x = np.asarray(x)
    if x.dtype == object:
        return onehot(codes(x, k))
    x = x.astype(float)
    ok = np.isfinite(x)
    if len(np.unique(x[ok])) <= k:
        return onehot(codes(x, k))
    if x[ok].min() > 0 and x[ok].max() > 10 * x[ok].min():
        x = np.where(ok, np.log(np.where(ok, x, 1.0)), np.nan)
    t = np.where(ok, x, np.median(x[ok]))
    t = (t - t.mean()) / t.std()
    knots = np.unique(np.quantile(t[ok], np.linspace(0, 1, k)[1:-1]))
    cols = [t, *(np.maximum(t - kn, 0) for kn in knots)]
    if not ok.all():
        cols.append((~ok).astype(float))
    return np.column_stack(cols)


def onehot(c: np.ndarray, drop: bool = True) -> np.ndarray:
    k = int(c.max()) + 1
    out = np.zeros((len(c), k), dtype=float)
    out[np.arange(len(c)), c] = 1.0
    return out[:, 1:] if drop else out


def rss(a: np.ndarray, cols) -> np.ndarray:
    """Residual sums of squares of y on the columns `cols` from cross-products a = [X y]'W
    [X y], one per matrix of a stack (..., M, M); a tiny ridge keeps aliased columns
    harmless."""
    cols = np.asarray(cols)
    g = a[..., cols[:, None], cols[None, :]]
    c = a[..., cols, -1]
    ridge = 1e-9 * np.maximum(1.0, np.trace(g, axis1=-2, axis2=-1))
    b = np.linalg.solve(g + np.eye(len(cols)) * ridge[..., None, None], c[..., None])[..., 0]
    return a[..., -1, -1] - (c * b).sum(axis=-1)


def span(x: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the space x's columns span (aliased columns add nothing)."""
    lam, v = np.linalg.eigh(x.T @ x)
    keep = lam > lam.max(initial=0) * 1e-10
    return (x @ v[:, keep]) / np.sqrt(lam[keep])


def rank(g: np.ndarray) -> int:
    """The rank of the columns whose cross-products are g (the tolerance of `span`)."""
    lam = np.linalg.eigvalsh(g)
    return int((lam > lam.max(initial=0) * 1e-10).sum())


def residualize(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """z less its projection on the orthonormal columns u."""
    return z - u @ (u.T @ z)


def beyond(u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """An orthonormal basis of what z's columns add to the span of the orthonormal u."""
    rz = residualize(u, z)
    w, s, _ = np.linalg.svd(rz, full_matrices=False)
    scale = float(np.sqrt((z ** 2).sum(axis=0)).max(initial=0))
    return w[:, s > max(scale, 1.0) * 1e-6]


# ---- the tests -------------------------------------------------------------------------------

def holm(p) -> np.ndarray:
    """Holm-adjusted p-values."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adj, 1.0)
    return out


def f_ratio(ss, rest, df: int, dfe: int):
    """The F ratio of a sum of squares `ss` on df degrees of freedom against the residual
    sum of squares `rest` on dfe."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(ss) / df) / (np.maximum(np.asarray(rest), 0) / dfe)


def f_p(f, df: int, dfe: int):
    """The F distribution's upper tail (1 where it cannot be had)."""
    if df <= 0 or dfe <= 0:
        return np.ones_like(np.asarray(f, dtype=float))
    return np.where(np.isfinite(f), stats.f.sf(np.nan_to_num(f, nan=0.0), df, dfe), 0.0)


def beyond_p(u: np.ndarray, q: np.ndarray, r: np.ndarray, perms) -> float:
    """The p-value of the columns q beyond the model u (orthonormal, q ⟂ u) whose residuals
    are r: Freedman–Lane, r permuted over models and added to the fit, the F ratio of each
    permutation against the observed (perms None: the F distribution)."""
    n, df = len(r), q.shape[1]
    dfe = n - u.shape[1] - df
    if df == 0 or dfe <= 0:
        return 1.0
    ss = float(((q.T @ r) ** 2).sum())
    f = f_ratio(ss, float(r @ r) - ss, df, dfe)
    if perms is None:
        return float(f_p(f, df, dfe))
    hits = count = 0
    for idx in perms:
        pr = r[idx]  # ŷ + π(r) less its fit on u: π(r) less its projection on u
        ssp = ((pr @ q) ** 2).sum(axis=1)
        rest = (pr ** 2).sum(axis=1) - ((pr @ u) ** 2).sum(axis=1) - ssp
        hits += int((f_ratio(ssp, rest, df, dfe) >= f * (1 - 1e-9)).sum())
        count += len(idx)
    return (1 + hits) / (1 + count)


def batches(n: int, n_perm: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n_perm permutations of range(n), in batches of bounded memory."""
    size = max(1, min(n_perm, 2_000_000 // max(n, 1)))
    out, left = [], n_perm
    while left:
        b = min(size, left)
        out.append(rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1))
        left -= b
    return out


def pairs_p(u: np.ndarray, qs: dict, r: np.ndarray, perms) -> dict:
    """Adjusted p-values of the pairs' cells beyond the additive model u with residuals r:
    the single-step min-p over pairs of the Freedman–Lane F ratios (perms None: the F
    distribution with Holm)."""
    n, keys = len(r), list(qs)
    dfs = np.array([qs[k].shape[1] for k in keys])
    dfe = n - u.shape[1] - dfs
    ss = np.array([float(((qs[k].T @ r) ** 2).sum()) for k in keys])
    raw = np.array([f_p(f_ratio(s, float(r @ r) - s, d, e), d, e) if d and e > 0 else 1.0
                    for s, d, e in zip(ss, dfs, dfe)], dtype=float)
    if perms is None:
        return dict(zip(keys, holm(raw)))
    q_all = np.hstack([qs[k] for k in keys])
    cuts = np.cumsum([0, *dfs])
    mins = []
    for idx in perms:
        pr = r[idx]
        cum = np.cumsum((pr @ q_all) ** 2, axis=1)
        cum = np.hstack([np.zeros((len(cum), 1)), cum])
        ssp = cum[:, cuts[1:]] - cum[:, cuts[:-1]]  # each pair's sum of squares
        e2 = ((pr ** 2).sum(axis=1) - ((pr @ u) ** 2).sum(axis=1))[:, None]
        ps = np.column_stack([f_p(f_ratio(ssp[:, j], e2[:, 0] - ssp[:, j], d, e), d, e)
                              if d and e > 0 else np.ones(len(pr))
                              for j, (d, e) in enumerate(zip(dfs, dfe))])
        mins.append(ps.min(axis=1))
    mins = np.concatenate(mins)
    return {k: float((1 + (mins <= p * (1 + 1e-9)).sum()) / (len(mins) + 1))
            for k, p in zip(keys, raw)}


def resampled(xa: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap cross-products (n_boot, M, M): models (or, past CHUNKS models, random
    groups of models) drawn with replacement."""
    n = len(xa)
    g = min(n, CHUNKS)
    group = rng.permutation(n) % g
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(g))
    ends = np.append(starts[1:], n)
    grams = np.stack([xa[order[s:e]].T @ xa[order[s:e]] for s, e in zip(starts, ends)])
    w = rng.multinomial(g, np.full(g, 1 / g), size=n_boot).astype(float)
    return (w @ grams.reshape(g, -1)).reshape(n_boot, *grams.shape[1:])
