"""The quantized linear fit of per-block widths (DDS §3.3), beside dse.space.regnet whose
quantizer it inverts (pure numpy).

For each model, fit_linear finds the w_0, w_a, w_m whose quantized linear widths best match
the model's per-block widths: e_fit = mean_j |log(pred_j / obs_j)|, pred_j from
regnet.quantized_widths at the model's depth. joint_linear_fit is the paper's plain linear
fit w_j ≈ w_0 + w_a·j over the blocks of the best models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.analysis.stats import parametric, rank_correlation
from dse.errors import DseError
from dse.space import regnet

# Search ranges: a = w_a / w_0 (the exponent pattern depends on a and w_m only) and w_m.
# 1.5 ≤ w_m ≤ 3 is the paper's RegNet range; a spans the sampler's w_a/w_0 ∈ [1/32, 32].
FIT_A = (1 / 64, 64.0)
FIT_WM = (1.5, 3.0)
GRID, KEEP, LEVELS = 48, 3, 4  # the search's defaults: w_m grid, pairs refined, refinements
SHARED = 12  # a shared w_m grid is searched this many values at a time (see _best_a)


def block_widths(ds, ws) -> tuple[np.ndarray, np.ndarray]:
    """Per-block widths (B, D), zero-padded, and depths (B,) from per-stage ds and ws."""
    ds = [np.asarray(x, dtype=np.int64) for x in ds]
    ws = [np.asarray(x, dtype=np.int64) for x in ws]
    d = np.array([x.sum() for x in ds], dtype=np.int64)
    W = np.zeros((len(ds), int(d.max()) if len(d) else 0), dtype=np.int64)
    mask = np.arange(W.shape[1])[None, :] < d[:, None]
    if len(ds):
        W[mask] = np.repeat(np.concatenate(ws), np.concatenate(ds))  # row-major fill
    return W, d


def _patterns(depth, a, wm):
    """Block exponents round(log(1 + a·j)/log w_m), j < depth, of the RegNet quantizer."""
    a, wm = np.ravel(a), np.ravel(wm)
    return regnet.quantized_widths(np.full(len(a), depth), np.ones(len(a)), a, wm).ks


def _best_a(logobs, mask, d, w0, wm, a_range, K, q):
    """For each model and candidate (w_0, w_m), the a = w_a/w_0 in a_range minimizing e_fit,
    exactly. As a grows, block j's exponent round(log(1 + a·j)/log w_m) steps from k−1 to k
    at a = (w_m^(k−1/2) − 1)/j; sorting these breakpoints and summing the cost changes gives
    e_fit on every interval between them. Exponents are followed up to K; a is capped where
    the last block would pass K. logobs, mask: (n, D); d: (n,); w0: (n, M); wm: (n|1, M).
    Returns e_fit (n, M) and a (n, M), a in the middle of its best interval (of the model's
    own blocks: padding past depth d splits no interval, so a model's a does not depend on
    the models fitted beside it)."""
    n, D = logobs.shape
    M = w0.shape[1]
    if wm.shape[0] == 1 and M > SHARED:  # a shared w_m grid: in parts, each with its own Kc
        parts = [_best_a(logobs, mask, d, w0[:, s:s + SHARED], wm[:, s:s + SHARED], a_range,
                         K, q) for s in range(0, M, SHARED)]
        return tuple(np.concatenate(x, axis=1) for x in zip(*parts))
    # exponents whose breakpoints all lie past the largest a (≥ a_range[1] at every block and
    # candidate) change nothing: follow exponents up to Kc ≤ K; a is still capped at K
    with np.errstate(divide="ignore"):
        top = np.log(a_range[1] * max(D - 1, 1) + 1) / np.log(np.min(wm)) + 0.5
    Kc = int(min(K, np.ceil(top))) if np.isfinite(top) else K
    k = np.arange(Kc + 1)
    T = np.log(regnet.quantize(w0[..., None], wm[..., None], k, q))  # (n, M, Kc+1)
    C = T[:, :, None, :] - logobs[:, None, :, None]  # (n, M, D, Kc+1): cost of block j at k
    np.abs(C, out=C)
    C *= mask[:, None, :, None]
    # every block at exponent 0, summed in order (a pairwise sum would round differently
    # with more padding, and ties between candidates would then depend on the other models)
    e0 = np.cumsum(C[..., 0], axis=-1)[..., -1]
    delta = C[:, :, 1:, 1:] - C[:, :, 1:, :-1]  # (n, M, D-1, Kc), contiguous
    del C
    N = delta.shape[2] * Kc
    c = wm[..., None] ** (k[1:] - 0.5) - 1  # (n|1, M, Kc), > 0
    if wm.shape[0] == n:  # per-model w_m: padded blocks' breakpoints (c/0 = ∞) go past any a
        jj = np.where(mask[:, 1:], np.arange(1, D), 0.0)[:, None, :, None]
    else:
        jj = np.arange(1, D, dtype=float)[:, None]
    with np.errstate(divide="ignore"):
        beta = (c[..., None, :] / jj).reshape(-1, M, N)  # (n|1, M, (D-1)·Kc): (j, k) order
    base = (np.arange(beta.shape[0] * M) * N).reshape(beta.shape[0], M, 1)
    flat = np.argsort(beta, axis=-1) + base
    sb = np.take(beta, flat)  # sorted (n|1, M, N)
    a_cap = (wm ** (K + 0.5) - 1) / np.maximum(d[:, None] - 1, 1)  # (n, M)
    a_lo, a_hi = a_range[0], np.minimum(a_range[1], a_cap)  # a_hi: (n, M)
    # intervals [b_(i-1), b_i] (b_-1 = 0, b_N = ∞) meet (a_lo, a_hi) for i0 ≤ i ≤ i1, where
    # i0 = #(b ≤ a_lo) and i1 = #(b < a_hi), unless they are empty (b_(i-1) = b_i)
    if sb.shape[0] == n:
        i1 = (sb < a_hi[..., None]).sum(axis=-1)
    else:
        i1 = np.stack([np.searchsorted(sb[0, m], a_hi[:, m]) for m in range(M)], axis=1)
    cut = min(N, int(i1.max()) + 1)  # intervals past it are empty for every model
    i0 = (sb[..., :cut] <= a_lo).sum(axis=-1)
    head = sb[..., :cut]
    tied = ((head[..., 1:] == head[..., :-1]) & (head[..., :-1] < a_range[1])).any(axis=-1)
    if tied.any():  # (e.g. w_m^1.5 = 3: (3^3 − 1)/13 = (3 − 1)/1): the order of tied
        # breakpoints sets the sums' rounding, so keep it the order of (j, k) (stable)
        at = np.nonzero(tied)
        flat[at] = np.argsort(beta[at], axis=-1, kind="stable") + base[at]
        sb[at] = np.take(beta, flat[at])
    beta = sb
    if flat.shape[0] == n:
        sel = np.take(delta, flat[..., :cut])
    else:  # one order for every model
        sel = np.take(delta.reshape(n, M * N), flat[0, :, :cut].ravel(), axis=1)
        sel = sel.reshape(n, M, cut)
    e = np.empty((n, M, cut + 1))
    e[..., 0] = e0
    np.cumsum(sel, axis=-1, out=e[..., 1:])
    e[..., 1:] += e0[..., None]  # e on interval i
    i = np.arange(cut + 1)
    empty = (i < i0[..., None]) | (i > np.where(a_hi > a_lo, i1, -1)[..., None])
    if tied.any():
        empty[..., 1:cut] |= (beta[..., 1:cut] == beta[..., :cut - 1])
    np.copyto(e, np.inf, where=empty)
    best = np.argmin(e, axis=-1)[..., None]
    if N:
        b = np.broadcast_to(beta, (n, M, N))
        lo = np.where(best > 0, np.take_along_axis(b, np.maximum(best - 1, 0), -1), 0.0)
        hi = np.where(best < N, np.take_along_axis(b, np.minimum(best, N - 1), -1), np.inf)
    else:  # one block: one interval
        lo, hi = np.zeros(best.shape), np.full(best.shape, np.inf)
    a = np.sqrt(np.maximum(lo, a_lo) * np.minimum(hi, a_hi[..., None]))[..., 0]
    return np.take_along_axis(e, best, -1)[..., 0] / d[:, None], a


def _wm_candidates(W, d, wm_range, q: int = regnet.Q, kmax: int = 3) -> np.ndarray:
    """Per-model w_m guesses from the observed stage widths u_0 < ... (NaN-padded, (B, M)):
    c = (u_s/u_0)^(1/k) and (u_{s+1}/u_s)^(1/k) for k ≤ kmax, and for each c the middle of
    the w_m interval where round_q(u_0·w_m^k_s) = u_s for every stage, k_s inferred from c
    (this interval holds the true w_m of quantized-linear widths; it can be narrow)."""
    out = []
    for row, n in zip(W, d):
        u = row[:n][np.r_[True, row[1:n] != row[:n - 1]]].astype(float)  # stage widths
        r = np.r_[u[1:] / u[0], u[1:] / u[:-1]]
        c = np.unique((r[r > 1][:, None] ** (1.0 / np.arange(1, kmax + 1))).ravel())
        if len(c) and len(u) > 1:
            ks = np.round(np.log(u[1:] / u[0])[None, :] / np.log(c)[:, None])  # (C, S-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                lo = ((u[1:] - q / 2) / u[0]) ** (1 / ks)
                hi = ((u[1:] + q / 2) / u[0]) ** (1 / ks)
            ok = (ks > 0).all(axis=1)
            lo, hi = lo.max(axis=1), hi.min(axis=1)
            ok &= lo < hi
            c = np.unique(np.r_[c, np.sqrt(lo[ok] * hi[ok])])
        out.append(c[(c >= wm_range[0]) & (c <= wm_range[1])])
    m = max([len(c) for c in out] + [1])
    return np.array([np.r_[c, np.full(m - len(c), np.nan)] for c in out])


@dataclass(frozen=True)
class _Chunk:
    """Models fitted together: log widths and mask (n, D), depths (n,), and the search
    settings (largest exponent K followed, a range, log w_m range, w_m grid step, q)."""

    logobs: np.ndarray
    mask: np.ndarray
    d: np.ndarray
    K: int
    a_range: tuple
    lm: np.ndarray
    step: float
    q: int

    def best(self, rows, w0, wm):
        """e_fit and best a (n, M) of models `rows` for w_0 (n,) or (n, M) and candidate
        w_m (n|1, M)."""
        w0 = np.asarray(w0, dtype=float)
        w0 = np.broadcast_to(w0[:, None] if w0.ndim == 1 else w0, (len(rows), wm.shape[1]))
        return _best_a(self.logobs[rows], self.mask[rows], self.d[rows], w0, wm,
                       self.a_range, self.K, self.q)

    def search(self, rows, w0s, seeds, shared=None, keep=3, levels=4, width=0):
        """Best (e_fit, w_0, a, w_m) of each model over w_0 candidates w0s (n, C) crossed
        with w_m seeds (n, M) [and the first w_0 with shared w_m (1, G)]: the `keep` best
        pairs each move `levels` times along w_m to the best point of a local grid spanning
        ± one step, the step halving every time. Seeds padded to `width` columns repeat
        their last column (computed once)."""
        n = len(rows)
        es, w0c, wmc = [], [], []
        more = max(0, width - seeds.shape[1])
        padded = np.concatenate([seeds, np.repeat(seeds[:, -1:], more, 1)], 1)
        for c in range(w0s.shape[1]):  # the shared grid with the first w_0 only (cost)
            for wm in ([] if shared is None or c else [shared]) + [padded]:
                e = self.best(rows, w0s[:, c], wm[:, :wm.shape[1] - more] if wm is padded
                              else wm)[0]
                es.append(np.concatenate([e, np.repeat(e[:, -1:], more, 1)], 1)
                          if wm is padded else e)
                w0c.append(np.broadcast_to(w0s[:, c:c + 1], es[-1].shape))
                wmc.append(np.broadcast_to(wm, es[-1].shape))
        e, w0c, wmc = (np.concatenate(x, axis=1) for x in (es, w0c, wmc))
        top = np.argsort(e, axis=1, kind="stable")[:, :keep]
        pe, p0 = np.take_along_axis(e, top, 1), np.take_along_axis(w0c, top, 1)
        pm = np.log(np.take_along_axis(wmc, top, 1))
        k, st = pe.shape[1], self.step
        stay = last = None  # the pairs that did not move at the last level, and its e
        for _ in range(levels):
            c = np.clip(pm[:, :, None] + np.array([-1, -0.5, 0.5, 1]) * st, *self.lm)
            if last is None:
                e = self.best(rows, np.repeat(p0, 4, axis=1),
                              np.exp(c.reshape(n, -1)))[0].reshape(n, k, 4)
            else:  # a pair that stayed has its ± st points (exactly) at the last ± st/2
                e = np.empty((n, k, 4))
                e[:, :, 1:3] = self.best(rows, np.repeat(p0, 2, axis=1),
                                         np.exp(c[:, :, 1:3].reshape(n, -1)))[0].reshape(n, k, 2)
                e[:, :, 0], e[:, :, 3] = last[:, :, 1], last[:, :, 2]
                r, p = np.nonzero(~stay)
                if len(r):  # the pairs that moved, each as a row of its own
                    e[r, p, 0::3] = self.best(rows[r], p0[r, p], np.exp(c[r, p][:, 0::3]))[0]
            b = np.argmin(e, axis=2)[..., None]
            eb = np.take_along_axis(e, b, 2)[..., 0]
            stay, last = ~(eb < pe), e
            pm = np.where(eb < pe, np.take_along_axis(c, b, 2)[..., 0], pm)
            pe = np.minimum(pe, eb)
            st /= 2
        b = np.argmin(pe, axis=1)[:, None]
        w0, wm = np.take_along_axis(p0, b, 1)[:, 0], np.exp(np.take_along_axis(pm, b, 1))
        e, a = self.best(rows, w0, wm)
        return e[:, 0], w0, a[:, 0], wm[:, 0]


def _stage_widths(W, d, count: int) -> np.ndarray:
    """The first `count` distinct widths of each model in order of depth, padded with the
    first width (n, count)."""
    out = np.repeat(W[:, :1], count, axis=1).astype(float)
    for i, (row, n) in enumerate(zip(W, d)):
        u = row[:n][np.r_[True, row[1:n] != row[:n - 1]]][:count]
        out[i, :len(u)] = u
    return out


def fit_linear(W, d, q: int = regnet.Q, a_range=FIT_A, wm_range=FIT_WM, grid: int = GRID,
               keep: int = KEEP, levels: int = LEVELS, chunk: int = 4_000_000) -> pd.DataFrame:
    """Quantized linear fit of each model's per-block widths (DDS §3.3).

    For every model (row of W, depth d) find w_0, w_a, w_m minimizing
    e_fit = mean_j |log(pred_j / obs_j)|, pred_j from the RegNet quantizer with this d.
    The exponents depend on a = w_a/w_0 and w_m only; for a given (w_0, w_m) the best a is
    found exactly (_best_a). Candidates: w_0 among the model's first four stage widths (the
    first is exact for quantized-linear widths) crossed with w_m guesses from the model's own
    width ratios, and the first width with a log grid of `grid` w_m values; the `keep` best
    pairs are refined along w_m `levels` times; finally the L1-optimal w_0 of the best
    pattern (a multiple of q) is tried. Vectorized over models in chunks of about `chunk`
    array elements. Returns columns d, w0, wa, wm, e_fit, with e_fit recomputed from these
    parameters by regnet.quantized_widths."""
    W = np.asarray(W, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    B = len(d)
    if not B:
        return pd.DataFrame(dict(d=d, w0=[], wa=[], wm=[], e_fit=[]), dtype=float)
    mask_all = np.arange(W.shape[1])[None, :] < d[:, None]
    if (W[mask_all] <= 0).any() or (d < 1).any():
        raise DseError("fit-linear needs positive depths and widths")
    lm = np.log(wm_range)
    gwm = np.geomspace(*wm_range, grid)[None, :]
    wmc = _wm_candidates(W, d, wm_range, q)
    w0s = _stage_widths(W, d, 4)
    # follow exponents until predictions reach twice the widest block (at the smallest w_m)
    ratio = np.where(mask_all, W, 0).max(axis=1) / w0s.min(axis=1)
    K = int(np.ceil(np.log(2 * ratio.max()) / np.log(wm_range[0]))) + 1
    out = np.zeros((B, 3))
    found = np.isfinite(wmc).sum(axis=1)  # w_m seeds of each model
    order = np.lexsort((found, d))  # chunks of similar depth (and seed count) pad little
    per = max(1, chunk // ((grid + wmc.shape[1]) * int(d.max()) * (K + 1)))
    for s in range(0, B, per):
        idx = order[s:s + per]
        D = int(d[idx].max())
        mask = mask_all[idx, :D]
        ch = _Chunk(np.where(mask, np.log(np.maximum(W[idx, :D], 1)), 0.0), mask, d[idx], K,
                    tuple(a_range), lm, (lm[1] - lm[0]) / (grid - 1), q)
        rows = np.arange(len(idx))
        # past the chunk's most seeds + 1, every column is the padding w_m = wm_range[0]
        used = min(wmc.shape[1], int(found[idx].max()) + 1)
        seeds = np.where(np.isfinite(wmc[idx, :used]), wmc[idx, :used], wm_range[0])
        e, w0, a, wm = ch.search(rows, w0s[idx], seeds, shared=gwm, keep=keep, levels=levels,
                                 width=wmc.shape[1])
        # the L1-optimal w_0 of that pattern: the median of log(obs_j) − k_j·log(w_m)
        ks = _patterns(D, a, wm)
        r = np.where(mask, ch.logobs - np.maximum(ks, 0) * np.log(wm)[:, None], np.nan)
        w0b = np.maximum(q, np.round(np.exp(np.nanmedian(r, axis=1)) / q) * q)
        redo = np.flatnonzero((w0b != w0) & (e > 0))
        if len(redo):
            e2, _, a2, wm2 = ch.search(redo, w0b[redo, None], wm[redo, None], keep=1,
                                       levels=levels)
            two = e2 < e[redo]
            w0[redo] = np.where(two, w0b[redo], w0[redo])
            a[redo] = np.where(two, a2, a[redo])
            wm[redo] = np.where(two, wm2, wm[redo])
        out[idx] = np.stack([w0, a * w0, wm], axis=1)
    w0, wa = out[:, 0], out[:, 1]
    wm = np.clip(out[:, 2], *wm_range)  # exp(log(x)) may leave the range by an ulp
    gen = regnet.quantized_widths(d, w0, wa, wm, q)
    obs = np.log(np.maximum(W[:, :gen.w.shape[1]], 1))
    err = np.where(gen.mask, np.abs(np.log(np.maximum(gen.w, 1)) - obs), 0)
    # summed in block order: the padding of deeper models beside it leaves a sum unchanged
    e_fit = (np.cumsum(err, axis=1)[:, -1] if err.shape[1] else np.zeros(B)) / d
    return pd.DataFrame(dict(d=d, w0=w0, wa=wa, wm=wm, e_fit=e_fit))


# What a cached fit was computed by: bump REVISION whenever fit_linear's search changes.
REVISION = 1
VERSION = (f"fit_linear r{REVISION} q={regnet.Q} a={FIT_A[0]!r}:{FIT_A[1]!r} "
           f"wm={FIT_WM[0]!r}:{FIT_WM[1]!r} grid={GRID} keep={KEEP} levels={LEVELS}")
FIT_COLUMNS = ["w0", "wa", "wm", "e_fit"]  # what a cache keeps of a fit (d: from the key)


def architecture_keys(W, d) -> list[bytes]:
    """One 16-byte key per model for its per-block widths (what fit_linear reads of it)."""
    W = np.asarray(W, dtype=np.int64)
    return [hashlib.blake2b(np.ascontiguousarray(row[:n]).tobytes(), digest_size=16).digest()
            for row, n in zip(W, np.asarray(d, dtype=np.int64))]


def fit_linear_cached(W, d, cache=None) -> pd.DataFrame:
    """fit_linear with the default search, reading the fits of architectures already fitted
    from `cache` and adding the others to it. `cache` has read(version) -> DataFrame (a
    bytes column `key` and FIT_COLUMNS; empty when it holds no fits of this version) and
    write(version, frame); None fits every model. A model's fit depends on its own widths
    only, so the rows equal fit_linear's."""
    if cache is None:
        return fit_linear(W, d)
    W = np.asarray(W, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    keys = architecture_keys(W, d)
    known = cache.read(VERSION)
    where = dict(zip(known["key"], range(len(known)))) if len(known) else {}
    at = np.array([where.get(k, -1) for k in keys], dtype=np.int64)
    miss = np.flatnonzero(at < 0)
    fits = np.zeros((len(d), len(FIT_COLUMNS)))
    hit = np.flatnonzero(at >= 0)
    if len(hit):
        fits[hit] = known[FIT_COLUMNS].to_numpy(dtype=float)[at[hit]]
    if len(miss):
        new = fit_linear(W[miss][:, :int(d[miss].max())], d[miss])
        fits[miss] = new[FIT_COLUMNS].to_numpy(dtype=float)
        first: dict[bytes, int] = {}  # one row per architecture new to the cache
        for pos, i in enumerate(miss):
            first.setdefault(keys[i], pos)
        add = new[FIT_COLUMNS].iloc[list(first.values())].reset_index(drop=True)
        add.insert(0, "key", list(first))
        cache.write(VERSION, pd.concat([known, add], ignore_index=True) if len(known) else add)
    return pd.DataFrame({"d": d, **dict(zip(FIT_COLUMNS, fits.T))})


def joint_linear_fit(W, d) -> dict:
    """Least-squares w_j ≈ w_0 + w_a·j over every block of the given models (DDS found
    w_j ≈ 48·(j + 1) for the best 20 AnyNetX_E models)."""
    W = np.asarray(W)
    d = np.asarray(d)
    mask = np.arange(W.shape[1])[None, :] < d[:, None]
    j = np.broadcast_to(np.arange(W.shape[1]), W.shape)[mask].astype(float)
    w = W[mask].astype(float)
    if len(np.unique(j)) < 2:
        return dict(w0=float(w.mean()) if len(w) else float("nan"), wa=0.0, models=len(d))
    wa, w0 = np.polyfit(j, w, 1)
    return dict(w0=float(w0), wa=float(wa), models=int(len(d)))


def fit_linear_population(pop: pd.DataFrame, top: int = 20, cache=None) -> dict:
    """fit-linear for one space's finished models: per-model rows (model_id, error, e_fit,
    d, w0, wa, wm, rank), the joint fit over the top-K by error, and the rank correlation of
    e_fit with error. `cache`: see fit_linear_cached."""
    parametric(pop, "linear fits of widths")
    pop = pop.sort_values("error", kind="stable").reset_index(drop=True)
    W, d = block_widths(pop["ds"], pop["ws"])
    fit = fit_linear_cached(W, d, cache)
    rows = pd.concat([pop[["model_id", "space", "error"]], fit], axis=1)
    rows.insert(3, "rank", np.arange(1, len(rows) + 1))
    k = min(top, len(rows))
    return dict(rows=rows, joint=dict(**joint_linear_fit(W[:k], d[:k]), top=k),
                spearman=rank_correlation(rows["e_fit"], rows["error"]), W=W, d=d)
