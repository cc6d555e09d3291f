"""Population analysis: error EDFs, KS tests, complexity normalization, bootstrap good ranges,
random-search efficiency and the quantized linear fit of widths (DDS §3, NDS). Pure
numpy/pandas/scipy: every function takes arrays or DataFrames and returns numbers, so a
notebook can use it directly; dse.plots draws the results and the CLI prints them.

Conventions: errors are top-1 test errors in percent; the EDF is F(e) = Σ_i w_i·1[e_i < e]
with w_i = 1/n unless a population is complexity-normalized; only finished models
(status "done" with a finite error) enter an error distribution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dse import regnet
from dse import store as dstore
from dse.errors import DseError

COMPLEXITY = ("flops", "params", "acts")

# ---- loading -------------------------------------------------------------------------------


def load_population(store=None, spaces=None) -> pd.DataFrame:
    """Models of the named spaces (default: every space in the store) left-joined with their
    training results: one row per sampled model; untrained models have a null status.
    The sampling seed stays `seed`; the training seed becomes `train_seed`."""
    root = existing_store(store)
    names = [resolve_space(root, s) for s in spaces] if spaces else dstore.spaces_in(root)
    if not names:
        raise DseError(f"store {root} holds no sampled models; run `dse sample --store {root}`")
    return dstore.load(root, names)


def existing_store(store=None) -> Path:
    """The store directory (argument, $DSE_STORE or ./runs); a clear error if it is missing."""
    root = dstore.root(store)
    if not root.is_dir():
        raise DseError(f"store {root} does not exist; pass --store DIR or set $DSE_STORE "
                       "(models are put there by `dse sample`)")
    return root


def resolve_space(root: Path, name: str) -> str:
    """A space's directory name in the store, from its name, alias or YAML path."""
    have = dstore.spaces_in(root)
    if name in have:
        return name
    from dse import spaces

    held = ", ".join(have) or "no spaces"
    try:
        resolved = spaces.load(name).name
    except DseError:
        raise DseError(f"unknown space {name!r}: not in store {root} (which holds {held}) "
                       f"and not a built-in space ({', '.join(spaces.valid_names())})") from None
    if resolved not in have:
        raise DseError(f"no {resolved} models in store {root} (it holds {held}); "
                       f"run `dse sample --space {resolved}` first")
    return resolved


def finished(df: pd.DataFrame) -> pd.Series:
    """Rows that enter an error distribution: status done and a finite error."""
    err = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    return pd.Series((df["status"] == "done").to_numpy(dtype=bool) & np.isfinite(err),
                     index=df.index)


def counts(df: pd.DataFrame, space: str) -> dict:
    """How many models of a space were sampled, trained, finished, diverged or failed."""
    sub = df[df["space"] == space]
    st = sub["status"]
    done = int((st == "done").sum())
    ok = int(finished(sub).sum())
    return dict(sampled=len(sub), trained=int(st.notna().sum()), finished=ok,
                diverged=int((st == "diverged").sum()), failed=int((st == "failed").sum()),
                no_error=done - ok)


def population(df: pd.DataFrame, space: str) -> pd.DataFrame:
    """The finished models of one space; a one-line error saying why if there are none."""
    sub = df[df["space"] == space]
    ok = sub[finished(sub)]
    if len(ok) == 0:
        c = counts(df, space)
        if c["sampled"] == 0:
            raise DseError(f"no models of space {space} are loaded")
        if c["trained"] == 0:
            raise DseError(f"{space} has {c['sampled']} sampled models but no results yet; "
                           f"train them with `dse train --space {space}`")
        raise DseError(f"{space} has no finished models with an error: {c['diverged']} "
                       f"diverged, {c['failed']} failed, {c['no_error']} done without an error "
                       "value")
    return ok


# ---- error distributions -------------------------------------------------------------------


def _weights(e: np.ndarray, w) -> np.ndarray:
    if w is None:
        return np.full(len(e), 1.0 / len(e)) if len(e) else np.zeros(0)
    w = np.asarray(w, dtype=float)
    if w.shape != e.shape:
        raise ValueError(f"weights of shape {w.shape} for errors of shape {e.shape}")
    return w / w.sum()


def edf(e, w=None):
    """The EDF as a step function: sorted distinct errors x and F just after each, i.e.
    y_k = Σ_i w_i·1[e_i ≤ x_k] (uniform weights 1/n unless given; weights are normalized)."""
    e = np.asarray(e, dtype=float)
    w = _weights(e, w)
    order = np.argsort(e, kind="stable")
    x, cw = e[order], np.cumsum(w[order])
    last = np.r_[x[1:] != x[:-1], True]  # the last of each run of ties carries its total
    return x[last], np.minimum(cw[last], 1.0)


def edf_at(e, at, w=None) -> np.ndarray:
    """F(at) = Σ_i w_i·1[e_i < at]: the fraction of models (weighted) with error below `at`."""
    e = np.asarray(e, dtype=float)
    w = _weights(e, w)
    order = np.argsort(e, kind="stable")
    cw = np.r_[0.0, np.cumsum(w[order])]
    return np.minimum(cw[np.searchsorted(e[order], np.asarray(at, dtype=float), "left")], 1.0)


def effective_n(w) -> float:
    """Kish's effective sample size (Σw)²/Σw²; n for uniform weights."""
    w = np.asarray(w, dtype=float)
    return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0


def dkw_band(n: float, level: float = 0.95) -> float:
    """Half-width ε of the Dvoretzky–Kiefer–Wolfowitz band: P(sup|F_n − F| > ε) ≤ 1 − level."""
    return float(np.sqrt(np.log(2 / (1 - level)) / (2 * max(n, 1e-12))))


def ks(a, b, wa=None, wb=None) -> tuple[float, float]:
    """Two-sample KS statistic D = sup_e |F_a(e) − F_b(e)| and its p-value.

    Without weights this is scipy.stats.ks_2samp (exact p for n ≤ 10^4, else asymptotic).
    With weights (complexity-normalized EDFs) D is computed from the weighted EDFs and p from
    the asymptotic distribution with Kish's effective sample sizes (an approximation)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise DseError("a KS test needs at least one model on each side")
    if wa is None and wb is None:
        r = stats.ks_2samp(a, b)
        return float(r.statistic), float(r.pvalue)
    d = ks_statistic(a, b, wa, wb)
    na, nb = effective_n(_weights(a, wa)), effective_n(_weights(b, wb))
    en = na * nb / (na + nb)
    return d, float(np.clip(stats.kstwo.sf(d, max(1, int(round(en)))), 0, 1))


def ks_statistic(a, b, wa=None, wb=None) -> float:
    """D = sup_e |F_a(e) − F_b(e)| over all observed errors, with optional weights."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pts = np.concatenate([a, b])
    fa = _cdf_right(a, _weights(a, wa), pts)
    fb = _cdf_right(b, _weights(b, wb), pts)
    return float(np.abs(fa - fb).max())


def _cdf_right(e, w, at):
    order = np.argsort(e, kind="stable")
    cw = np.r_[0.0, np.cumsum(w[order])]
    return cw[np.searchsorted(e[order], at, "right")]


def weighted_quantile(e, q, w=None) -> float:
    """The smallest error x with F(x+) ≥ q (the median for q = 0.5)."""
    x, y = edf(e, w)
    return float(x[min(np.searchsorted(y, q - 1e-12, "left"), len(x) - 1)])


def common_range(cs) -> tuple[float, float]:
    """The complexity range every population covers: [max of minima, min of maxima]."""
    lo = max(float(np.min(c)) for c in cs)
    hi = min(float(np.max(c)) for c in cs)
    return lo, hi


def bin_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """K log-spaced bins over [lo, hi] (complexity spans orders of magnitude)."""
    if lo > 0 and hi > lo:
        return np.geomspace(lo, hi, bins + 1)
    return np.linspace(lo, hi, bins + 1)


def complexity_weights(c, lo: float, hi: float, bins: int = 10, name: str = "population"):
    """Normalization weights (NDS): models outside [lo, hi] get 0; a model in bin j that
    holds m_j models gets 1/(K·m_j), so the weights sum to 1 and every bin weighs 1/K.
    Raises DseError naming the bin when one is empty."""
    c = np.asarray(c, dtype=float)
    if bins < 1:
        raise DseError(f"--bins must be at least 1 (got {bins})")
    edges = bin_edges(lo, hi, bins)
    inside = (c >= lo) & (c <= hi)
    j = np.clip(np.searchsorted(edges, c, "right") - 1, 0, bins - 1)
    m = np.bincount(j[inside], minlength=bins)
    empty = np.flatnonzero(m == 0)
    if len(empty):
        k = int(empty[0])
        raise DseError(f"complexity bin {k + 1} of {bins} [{edges[k]:.4g}, {edges[k + 1]:.4g}] "
                       f"holds no {name} models ({len(empty)} empty bin(s)); use fewer --bins "
                       "or more models")
    w = np.where(inside, 1.0 / (bins * m[j]), 0.0)
    return w


def summarize(e, w=None) -> dict:
    """n, min, mean and median error of a population (weighted mean/median if w is given)."""
    e = np.asarray(e, dtype=float)
    ww = _weights(e, w)
    return dict(n=int(len(e)), min=float(e.min()), mean=float((ww * e).sum()),
                median=float(np.median(e)) if w is None else weighted_quantile(e, 0.5, ww))


def compare(df: pd.DataFrame, spaces, normalize: str | None = None, bins: int = 10) -> dict:
    """EDF comparison of spaces: per-space summaries, errors (and weights when normalized by
    flops, params or acts over the common range), and pairwise KS tests.

    Returns {"spaces": {name: {n, min, mean, median, dropped}}, "pairs": [{a, b, D, p}],
    "curves": {name: (errors, weights or None)}, "normalize", "range"}."""
    if normalize in (None, "none"):
        normalize = None
    elif normalize not in COMPLEXITY:
        raise DseError(f"--normalize must be none, flops, params or acts (got {normalize!r})")
    pops = {s: population(df, s) for s in dict.fromkeys(spaces)}
    curves, out, rng = {}, {}, None
    if normalize:
        cs = {s: p[normalize].to_numpy(dtype=float) for s, p in pops.items()}
        rng = common_range(cs.values())
        if rng[0] > rng[1]:
            raise DseError(f"the {normalize} ranges of {', '.join(pops)} do not overlap; "
                           "nothing to normalize over")
    for s, p in pops.items():
        e = p["error"].to_numpy(dtype=float)
        w, dropped = None, 0
        if normalize:
            w = complexity_weights(cs[s], *rng, bins=bins, name=s)
            keep = w > 0
            dropped = int((~keep).sum())
            e, w = e[keep], w[keep]
        curves[s] = (e, w)
        out[s] = {**summarize(e, w), "dropped": dropped}
    names = list(pops)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d, pv = ks(curves[a][0], curves[b][0], curves[a][1], curves[b][1])
            pairs.append(dict(a=a, b=b, D=d, p=pv))
    return dict(spaces=out, pairs=pairs, curves=curves, normalize=normalize or "none",
                range=rng, bins=bins if normalize else None)


# ---- good ranges: empirical bootstrap (DDS footnote 4) -------------------------------------


def bootstrap_best(e, frac: float = 0.25, repeats: int = 10_000, rng=None) -> np.ndarray:
    """Indices of the min-error model of `repeats` resamples (with replacement) of a fraction
    `frac` of the models (at least one)."""
    e = np.asarray(e, dtype=float)
    n = len(e)
    if n == 0:
        raise DseError("a bootstrap needs at least one model")
    m = max(1, int(n * frac))
    rng = np.random.default_rng(rng)
    best = np.empty(repeats, dtype=np.int64)
    chunk = max(1, 4_000_000 // m)  # bound memory at ~32 MB of indices
    for s in range(0, repeats, chunk):
        idx = rng.integers(n, size=(min(chunk, repeats - s), m))
        best[s:s + len(idx)] = idx[np.arange(len(idx)), e[idx].argmin(axis=1)]
    return best


def bootstrap_range(x, e, frac: float = 0.25, repeats: int = 10_000, level: float = 0.95,
                    rng=None, best=None) -> dict:
    """The good range of parameter x: the central `level` interval and the median of the
    x of the best model over bootstrap resamples (pass `best` to reuse resamples)."""
    x = np.asarray(x, dtype=float)
    best = bootstrap_best(e, frac, repeats, rng) if best is None else best
    lo, med, hi = np.percentile(x[best], [50 * (1 - level), 50, 100 - 50 * (1 - level)])
    return dict(lo=float(lo), median=float(med), hi=float(hi),
                best=float(x[int(np.argmin(np.asarray(e, dtype=float)))]))


# Parameters for trends: name -> (values from a DataFrame, label, log-scale axis).
def _stage(col, i):
    return lambda df: df[col].map(lambda v: v[i] if v is not None and len(v) > i else np.nan)


PARAMS = {
    "regnet": {
        "d": (lambda df: df["d"], "depth d (blocks)", False),
        "w0": (lambda df: df["w0"], "initial width w_0", True),
        "wa": (lambda df: df["wa"], "slope w_a", True),
        "wm": (lambda df: df["wm"], "width multiplier w_m", False),
        "g": (lambda df: df["group_w"], "group width g", True),
        "b": (lambda df: df["b"], "bottleneck ratio b", True),
    },
    "anynet": {
        "depth": (lambda df: df["ds"].map(sum), "total depth Σd_i (blocks)", False),
        "w_max": (lambda df: df["ws"].map(max), "max width max w_i", True),
        "b": (lambda df: df["bs"].map(max), "bottleneck ratio b (max over stages)", True),
        "g": (lambda df: df["gs"].map(max), "group width g (max over stages)", True),
    },
    "any": {
        "flops": (lambda df: df["flops"], "flops (multiply-adds)", True),
        "params": (lambda df: df["params"], "parameters", True),
        "acts": (lambda df: df["acts"], "activations", True),
    },
}


def param_table(kind: str, stages: int = 4) -> dict:
    """The parameters available for a space kind, per-stage ones included for AnyNet."""
    table = dict(PARAMS[kind])
    if kind == "anynet":
        for col, sym, log, what in (("ds", "d", False, "depth"), ("ws", "w", True, "width"),
                                    ("bs", "b", True, "bottleneck ratio"),
                                    ("gs", "g", True, "group width")):
            for i in range(stages):
                table[f"{sym}{i + 1}"] = (_stage(col, i), f"stage {i + 1} {what} {sym}_{i + 1}",
                                          log)
    return {**table, **PARAMS["any"]}


def default_params(kind: str, stages: int = 4) -> list[str]:
    if kind == "regnet":
        return ["d", "w0", "wa", "wm", "g", "b"]
    return (["depth"] + [f"d{i + 1}" for i in range(stages)]
            + [f"w{i + 1}" for i in range(stages)] + ["w_max", "b", "g"])


def trends(pop: pd.DataFrame, params=None, frac: float = 0.25, repeats: int = 10_000,
           level: float = 0.95, seed: int = 0) -> list[dict]:
    """Error against each design parameter of one space's finished models, with the bootstrap
    good range of each. Parameters that take a single value are skipped unless named.
    Returns [{param, label, log, x, e, lo, median, hi, best}]."""
    kind = pop["kind"].iloc[0]
    stages = int(pop["ds"].map(len).max())
    table = param_table(kind, stages)
    named = params is not None and len(params) > 0
    names = list(params) if named else default_params(kind, stages)
    unknown = [p for p in names if p not in table]
    if unknown:
        raise DseError(f"unknown parameter(s) {', '.join(unknown)} for a {kind} space; "
                       f"choose from {', '.join(table)}")
    e = pop["error"].to_numpy(dtype=float)
    best = bootstrap_best(e, frac, repeats, rng=seed)
    out = []
    for p in names:
        fn, label, log = table[p]
        x = pd.to_numeric(fn(pop), errors="coerce").to_numpy(dtype=float)
        if not named and np.unique(x[np.isfinite(x)]).size <= 1:
            continue
        if not np.isfinite(x).all():
            raise DseError(f"parameter {p} is undefined for some {pop['space'].iloc[0]} models")
        out.append(dict(param=p, label=label, log=log, x=x, e=e,
                        **bootstrap_range(x, e, frac, repeats, level, best=best)))
    return out


# ---- random search efficiency (NDS; DDS Fig. 9) --------------------------------------------


def search_sizes(n: int) -> list[int]:
    """k = 1, 2, 4, … up to n, and n itself."""
    ks = [1 << i for i in range(int(np.log2(max(n, 1))) + 1)]
    return ks + ([n] if ks[-1] != n else [])


def search_efficiency(e, w=None, rounds: int = 10, rng=None) -> pd.DataFrame:
    """Expected min error of k random models, k = 1, 2, 4, …, n: per k, `rounds` random
    partitions of the n models into n//k groups of k (without replacement), or with weights
    rounds·(n//k) weighted draws of k (with replacement). Columns k, mean, std, trials."""
    e = np.asarray(e, dtype=float)
    n = len(e)
    if n == 0:
        raise DseError("search efficiency needs at least one finished model")
    rng = np.random.default_rng(rng)
    p = None if w is None else _weights(e, w)
    rows = []
    for k in search_sizes(n):
        groups = n // k
        if p is None:
            idx = np.stack([rng.permutation(n)[:groups * k] for _ in range(rounds)])
            mins = e[idx.reshape(-1, k)].min(axis=1)
        else:
            mins = e[rng.choice(n, size=(rounds * groups, k), p=p)].min(axis=1)
        rows.append(dict(k=k, mean=float(mins.mean()), std=float(mins.std()), trials=len(mins)))
    return pd.DataFrame(rows)


# ---- quantized linear fit of per-block widths (DDS §3.3) -----------------------------------

# Search ranges: a = w_a / w_0 (the exponent pattern depends on a and w_m only) and w_m.
# 1.5 ≤ w_m ≤ 3 is the paper's RegNet range; a spans the sampler's w_a/w_0 ∈ [1/32, 32].
FIT_A = (1 / 64, 64.0)
FIT_WM = (1.5, 3.0)


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
    Returns e_fit (n, M) and a (n, M), a in the middle of its best interval."""
    n, D = logobs.shape
    k = np.arange(K + 1)
    T = np.log(regnet.quantize(w0[..., None], wm[..., None], k, q))  # (n, M, K+1)
    C = np.abs(T[:, :, None, :] - logobs[:, None, :, None]) * mask[:, None, :, None]
    e0 = C[..., 0].sum(axis=-1)  # every block at exponent 0
    delta = (C[:, :, 1:, 1:] - C[:, :, 1:, :-1]).reshape(n, C.shape[1], -1)
    j = np.arange(1, D)[:, None]
    beta = (wm[..., None, None] ** (k[None, 1:] - 0.5) - 1) / j  # (n|1, M, D-1, K)
    beta = beta.reshape(beta.shape[0], beta.shape[1], -1)
    order = np.argsort(beta, axis=-1, kind="stable")
    beta = np.take_along_axis(beta, order, -1)
    cum = e0[..., None] + np.cumsum(np.take_along_axis(delta, order, -1), axis=-1)
    e = np.concatenate([e0[..., None], cum], axis=-1)  # (n, M, N+1) per interval
    lo = np.concatenate([np.zeros(beta.shape[:-1] + (1,)), beta], axis=-1)
    hi = np.concatenate([beta, np.full(beta.shape[:-1] + (1,), np.inf)], axis=-1)
    a_cap = (wm ** (K + 0.5) - 1) / np.maximum(d[:, None] - 1, 1)  # (n, M)
    a_hi = np.minimum(a_range[1], a_cap)[..., None]
    lo, hi = np.maximum(lo, a_range[0]), np.minimum(hi, a_hi)
    e = np.where(hi > lo, e, np.inf)
    best = np.argmin(e, axis=-1)[..., None]
    a = np.sqrt(np.take_along_axis(np.broadcast_to(lo, e.shape), best, -1)
                * np.take_along_axis(np.broadcast_to(hi, e.shape), best, -1))[..., 0]
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

    def search(self, rows, w0s, seeds, shared=None, keep=3, levels=4):
        """Best (e_fit, w_0, a, w_m) of each model over w_0 candidates w0s (n, C) crossed
        with w_m seeds (n, M) [and the first w_0 with shared w_m (1, G)]: the `keep` best
        pairs each move `levels` times along w_m to the best point of a local grid spanning
        ± one step, the step halving every time."""
        n = len(rows)
        es, w0c, wmc = [], [], []
        for c in range(w0s.shape[1]):  # the shared grid with the first w_0 only (cost)
            for wm in ([] if shared is None or c else [shared]) + [seeds]:
                es.append(self.best(rows, w0s[:, c], wm)[0])
                w0c.append(np.broadcast_to(w0s[:, c:c + 1], es[-1].shape))
                wmc.append(np.broadcast_to(wm, es[-1].shape))
        e, w0c, wmc = (np.concatenate(x, axis=1) for x in (es, w0c, wmc))
        top = np.argsort(e, axis=1, kind="stable")[:, :keep]
        pe, p0 = np.take_along_axis(e, top, 1), np.take_along_axis(w0c, top, 1)
        pm = np.log(np.take_along_axis(wmc, top, 1))
        k, st = pe.shape[1], self.step
        w0g = np.repeat(p0, 4, axis=1)
        for _ in range(levels):
            c = np.clip(pm[:, :, None] + np.array([-1, -0.5, 0.5, 1]) * st, *self.lm)
            e = self.best(rows, w0g, np.exp(c.reshape(n, -1)))[0].reshape(n, k, 4)
            b = np.argmin(e, axis=2)[..., None]
            eb = np.take_along_axis(e, b, 2)[..., 0]
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


def fit_linear(W, d, q: int = regnet.Q, a_range=FIT_A, wm_range=FIT_WM, grid: int = 48,
               keep: int = 3, levels: int = 4, chunk: int = 4_000_000) -> pd.DataFrame:
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
    order = np.argsort(d, kind="stable")  # chunks of similar depth pad little
    per = max(1, chunk // ((grid + wmc.shape[1]) * int(d.max()) * (K + 1)))
    for s in range(0, B, per):
        idx = order[s:s + per]
        D = int(d[idx].max())
        mask = mask_all[idx, :D]
        ch = _Chunk(np.where(mask, np.log(np.maximum(W[idx, :D], 1)), 0.0), mask, d[idx], K,
                    tuple(a_range), lm, (lm[1] - lm[0]) / (grid - 1), q)
        rows = np.arange(len(idx))
        seeds = np.where(np.isfinite(wmc[idx]), wmc[idx], wm_range[0])
        e, w0, a, wm = ch.search(rows, w0s[idx], seeds, shared=gwm, keep=keep, levels=levels)
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
    e_fit = np.where(gen.mask, np.abs(np.log(np.maximum(gen.w, 1)) - obs), 0).sum(1) / d
    return pd.DataFrame(dict(d=d, w0=w0, wa=wa, wm=wm, e_fit=e_fit))


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


def rank_correlation(x, y) -> dict:
    """Spearman's rank correlation with its p-value; nulls when undefined (n < 3 or a
    constant input)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return dict(rho=None, p=None, n=int(len(x)))
    r = stats.spearmanr(x, y)
    return dict(rho=float(r.statistic), p=float(r.pvalue), n=int(len(x)))


def fit_linear_population(pop: pd.DataFrame, top: int = 20) -> dict:
    """fit-linear for one space's finished models: per-model rows (model_id, error, e_fit,
    d, w0, wa, wm, rank), the joint fit over the top-K by error, and the rank correlation of
    e_fit with error."""
    pop = pop.sort_values("error", kind="stable").reset_index(drop=True)
    W, d = block_widths(pop["ds"], pop["ws"])
    fit = fit_linear(W, d)
    rows = pd.concat([pop[["model_id", "space", "error"]], fit], axis=1)
    rows.insert(3, "rank", np.arange(1, len(rows) + 1))
    k = min(top, len(rows))
    return dict(rows=rows, joint=dict(**joint_linear_fit(W[:k], d[:k]), top=k),
                spearman=rank_correlation(rows["e_fit"], rows["error"]), W=W, d=d)


def write_output(path, write) -> Path:
    """Write an analysis output (table, figure, report) atomically via write(tmp_path),
    creating its directory, with the permissions of a normal file (umask applies)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = os.umask(0)
        os.umask(mask)

        def _write(tmp):
            write(tmp)
            os.chmod(tmp, 0o666 & ~mask)

        dstore.write_atomic(path, _write)
    except OSError as e:
        raise DseError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def save_table(store, space: str, name: str, df: pd.DataFrame) -> Path:
    """Write an analysis table atomically to <store>/<space>/analysis/<name>.parquet."""
    path = dstore.space_dir(Path(store), space) / "analysis" / f"{name}.parquet"
    return write_output(path, lambda p: df.to_parquet(p, index=False))
