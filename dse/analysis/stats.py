"""Population statistics: error EDFs, KS tests, complexity normalization, bootstrap good
ranges, trends and random-search efficiency (DDS §3, NDS). Pure numpy/pandas/scipy without
I/O: every function takes arrays or DataFrames (dse.store.core.Store.load gives one) and returns
numbers, so a notebook can use it directly; dse.analysis.fitlinear fits widths, dse.analysis.plots
draws the
results, the CLI and dse.analysis.report print them.

Conventions: errors are top-1 test errors in percent; the EDF is F(e) = Σ_i w_i·1[e_i < e]
with w_i = 1/n unless a population is complexity-normalized; only finished models
(status "done" with a finite error) enter an error distribution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dse.errors import ArgumentError, DseError
from dse.store.status import Status

COMPLEXITY = ("flops", "params", "acts")

# ---- populations ---------------------------------------------------------------------------


def finished(df: pd.DataFrame) -> pd.Series:
    """Rows that enter an error distribution: status done and a finite error."""
    err = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    return pd.Series((df["status"] == Status.DONE).to_numpy(dtype=bool) & np.isfinite(err),
                     index=df.index)


def counts(df: pd.DataFrame, space: str) -> dict:
    """How many models of a space were sampled, trained, finished, diverged or failed."""
    sub = df[df["space"] == space]
    st = sub["status"]
    done = int((st == Status.DONE).sum())
    ok = int(finished(sub).sum())
    return dict(sampled=len(sub), trained=int(st.notna().sum()), finished=ok,
                diverged=int((st == Status.DIVERGED).sum()),
                failed=int((st == Status.FAILED).sum()),
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


def weights(e: np.ndarray, w) -> np.ndarray:
    """Weights of errors e summing to 1: uniform 1/n unless given."""
    e = np.asarray(e, dtype=float)
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
    w = weights(e, w)
    order = np.argsort(e, kind="stable")
    x, cw = e[order], np.cumsum(w[order])
    last = np.r_[x[1:] != x[:-1], True]  # the last of each run of ties carries its total
    return x[last], np.minimum(cw[last], 1.0)


def edf_at(e, at, w=None) -> np.ndarray:
    """F(at) = Σ_i w_i·1[e_i < at]: the fraction of models (weighted) with error below `at`."""
    return cdf(e, at, w, side="left")


def cdf(e, at, w=None, side: str = "right") -> np.ndarray:
    """The (weighted) EDF of errors e at the points `at`: Σ_i w_i·1[e_i ≤ at] (side right,
    the EDF itself) or Σ_i w_i·1[e_i < at] (side left, its limit from below)."""
    e = np.asarray(e, dtype=float)
    w = weights(e, w)
    order = np.argsort(e, kind="stable")
    cw = np.r_[0.0, np.cumsum(w[order])]
    return np.minimum(cw[np.searchsorted(e[order], np.asarray(at, dtype=float), side)], 1.0)


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
    na, nb = effective_n(weights(a, wa)), effective_n(weights(b, wb))
    en = na * nb / (na + nb)
    return d, float(np.clip(stats.kstwo.sf(d, max(1, int(round(en)))), 0, 1))


def ks_statistic(a, b, wa=None, wb=None) -> float:
    """D = sup_e |F_a(e) − F_b(e)| over all observed errors, with optional weights."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pts = np.concatenate([a, b])
    return float(np.abs(cdf(a, pts, wa) - cdf(b, pts, wb)).max())


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
        raise ArgumentError("bins", f"must be at least 1 (got {bins})")
    edges = bin_edges(lo, hi, bins)
    inside = (c >= lo) & (c <= hi)
    j = np.clip(np.searchsorted(edges, c, "right") - 1, 0, bins - 1)
    m = np.bincount(j[inside], minlength=bins)
    empty = np.flatnonzero(m == 0)
    if len(empty):
        k = int(empty[0])
        raise ArgumentError("bins", f"{bins} leave complexity bin {k + 1} [{edges[k]:.4g}, "
                            f"{edges[k + 1]:.4g}] holding no {name} models ({len(empty)} "
                            "empty bin(s)); use fewer bins or more models")
    w = np.where(inside, 1.0 / (bins * m[j]), 0.0)
    return w


def summarize(e, w=None) -> dict:
    """n, min, mean and median error of a population (weighted mean/median if w is given)."""
    e = np.asarray(e, dtype=float)
    ww = weights(e, w)
    return dict(n=int(len(e)), min=float(e.min()), mean=float((ww * e).sum()),
                median=float(np.median(e)) if w is None else weighted_quantile(e, 0.5, ww))


@dataclass(frozen=True)
class KSPair:
    """The two-sample KS test of spaces a and b."""

    a: str
    b: str
    D: float
    p: float


@dataclass(frozen=True)
class Comparison:
    """An EDF comparison of spaces. spaces: name → {n, min, mean, median, dropped};
    curves: name → (errors, weights or None); pairs: the KS test of every pair; normalize:
    none | flops | params | acts, over `range` (lo, hi) in `bins` bins when normalized."""

    spaces: dict
    curves: dict
    pairs: list
    normalize: str = "none"
    range: tuple | None = None
    bins: int | None = None

    def to_json(self) -> dict:
        """The summaries and tests (not the curves), for --json output."""
        return dict(spaces={s: {k: v[k] for k in ("n", "min", "mean", "median")}
                            for s, v in self.spaces.items()},
                    pairs=[asdict(p) for p in self.pairs], normalize=self.normalize)


def compare(df: pd.DataFrame, spaces, normalize: str | None = None,
            bins: int = 10) -> Comparison:
    """EDF comparison of spaces: per-space summaries, errors (and weights when normalized by
    flops, params or acts over the common range), and pairwise KS tests."""
    if normalize in (None, "none"):
        normalize = None
    elif normalize not in COMPLEXITY:
        raise ArgumentError("normalize", f"must be none, flops, params or acts (got {normalize!r})")
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
            pairs.append(KSPair(a, b, d, pv))
    return Comparison(out, curves, pairs, normalize or "none", rng, bins if normalize else None)


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
        "resolution": (lambda df: df.get("resolution", pd.Series(np.nan, index=df.index)),
                       "input resolution (px)", False),
        "stages": (lambda df: df["ds"].map(len), "number of stages", False),
        "flops": (lambda df: df["flops"], "flops (multiply-adds)", True),
        "params": (lambda df: df["params"], "parameters", True),
        "acts": (lambda df: df["acts"], "activations", True),
        # the recipe's, where drawn per model (docs/trials.md): lr·wd is what NDS reads
        "lr": (lambda df: _recipe_col(df, "lr"), "learning rate lr", True),
        "wd": (lambda df: _recipe_col(df, "wd"), "weight decay wd", True),
        "lrwd": (lambda df: _recipe_col(df, "lr") * _recipe_col(df, "wd"), "lr · wd", True),
    },
}


def _recipe_col(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else \
        pd.Series(np.nan, index=df.index)


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


def parametric(pop: pd.DataFrame, what: str) -> str:
    """The space kind of a population whose models have parameters; a DseError for opaque
    models (imported networks dse cannot build, docs/interop.md)."""
    if (pop["kind"] == "opaque").any():
        raise DseError(f"{pop['space'].iloc[0]} holds opaque models (imported networks dse "
                       f"cannot build) with no widths or depths: {what} are untestable there")
    return pop["kind"].iloc[0]


def default_params(kind: str, stages: int = 4) -> list[str]:
    """The parameters trends shows by default (those with a single value are skipped)."""
    recipe = ["lr", "wd", "lrwd"]  # shown only where drawn per model
    if kind == "regnet":
        return ["d", "w0", "wa", "wm", "g", "b", "stages", "resolution", *recipe]
    return (["depth"] + [f"d{i + 1}" for i in range(stages)]
            + [f"w{i + 1}" for i in range(stages)] + ["w_max", "b", "g", "resolution", *recipe])


def trends(pop: pd.DataFrame, params=None, frac: float = 0.25, repeats: int = 10_000,
           level: float = 0.95, seed: int = 0) -> list[dict]:
    """Error against each design parameter of one space's finished models, with the bootstrap
    good range of each. Parameters that take a single value are skipped unless named.
    Returns [{param, label, log, x, e, lo, median, hi, best}]."""
    kind = parametric(pop, "parameter trends")
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


def rank_correlation(x, y) -> dict:
    """Spearman's rank correlation with its p-value; nulls when undefined (n < 3 or a
    constant input)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return dict(rho=None, p=None, n=int(len(x)))
    r = stats.spearmanr(x, y)
    return dict(rho=float(r.statistic), p=float(r.pvalue), n=int(len(x)))


# ---- tables shared by the CLI and the report -------------------------------------------------


def ks_rows(cmp: Comparison) -> list[dict]:
    """One row per compared pair of a compare() result: spaces, KS D and p, formatted."""
    return [{"space A": p.a, "space B": p.b, "KS D": f"{p.D:.3f}", "p-value": f"{p.p:.3g}"}
            for p in cmp.pairs]
