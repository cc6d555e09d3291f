"""Which design choices matter (pure numpy/scipy/pandas, no I/O): a functional ANOVA of a
population's errors over its quantile-binned parameters, with bootstrap intervals, a
permutation null that keeps the sampled design, pairwise interactions and the noise ceiling.

For n models with error y (points) and a parameter P cut into K_P bins (its values when it
takes at most `bins` values, else quantile bins; text values are levels; a missing value is
a level of its own):

- `first`: the share of the error variance P explains alone, the between-bin sum of squares
  less its chance expectation, ε² = (SS_P − (K_P−1)·MS_within)/SS_total (about 0 for a
  parameter that does not matter, so it can be slightly negative);
- `total`: the share only P explains: the sum of squares its bins add to an additive model
  of every other parameter's bins, less its chance expectation ((K_P−1)·MSE of the full
  model), plus the shares of its interactions that were found (`pairs`). Under dependent
  sampling (a flops window ties d to w) `first` counts what P shares with the parameters it
  moves with, `total` only what no other parameter can stand in for; the truth of "how much
  P drives the error" lies between them;
- a pair's share: what the cells of P × Q (coarser bins, at most `PAIR_BINS` each) add to
  the additive model of all parameters, adjusted the same way;
- intervals: percentile bootstrap over models, centred on the estimate (a resample's
  duplicated models look like less noise and bias its shares up; the resamples' median
  bias is taken off) (`n_boot` resamples; populations over
  `CHUNKS` models are resampled as `CHUNKS` random groups of models, each fit from the
  groups' summed cross-products);
- "matters": the Freedman–Lane permutation test of P's bins beyond the other parameters
  (residuals of the model without P permuted over models, so every model keeps its own
  parameter values as sampled), `n_perm` permutations, Holm over the parameters at `alpha`;
  pairs: the permuted residuals of the additive model, one set for all pairs, the
  single-step min-p adjustment over pairs. Above `EXACT_MAX` models the permutation
  distribution is replaced by its large-sample limit (SS/σ̂² ~ χ² with the bins' degrees
  of freedom);
- `ceiling`: the share of the error variance that is the models' and not the seeds':
  1 − mean(σ_seed²/n_i)/Var(y), with σ_seed pooled from reruns (dse.analysis.trials.noise)
  and n_i the seeds in model i's error.

The same seed gives the same numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dse.analysis import select
from dse.analysis.trials import Interval, Noise
from dse.errors import DseError

ALPHA = 0.05
MIN_MODELS = 10
MAX_BINS = 8
PAIR_BINS = 4
CHUNKS = 200
EXACT_MAX = 20_000
EXTRA = ("block", "activation", "resolution", "epochs", "lrwd")
RECIPE = ("lr", "wd", "lrwd", "epochs")


@dataclass(frozen=True)
class Share:
    """One parameter: the degrees of freedom of its effect, first-order and total shares with intervals, the adjusted
    permutation p-value and whether it matters at alpha."""

    param: str
    df: int
    first: Interval
    total: Interval
    p: float
    matters: bool

    def to_json(self) -> dict:
        return dict(param=self.param, df=self.df, first=self.first.to_json(),
                    total=self.total.to_json(), p=self.p, matters=self.matters)


@dataclass(frozen=True)
class Pair:
    """An interaction of two parameters: its share with an interval, its adjusted p-value
    and whether it is found at alpha."""

    a: str
    b: str
    share: Interval
    p: float
    interact: bool

    def to_json(self) -> dict:
        return dict(a=self.a, b=self.b, share=self.share.to_json(), p=self.p,
                    interact=self.interact)


@dataclass(frozen=True)
class Ceiling:
    """The share of the error variance that is the models' (not the seeds'), from the
    pooled seed noise of `models` models with reruns; `seeds`: the mean seeds per error."""

    value: float
    sigma_seed: float
    models: int
    seeds: float
    icc: Interval

    def to_json(self) -> dict:
        return dict(value=self.value, sigma_seed=self.sigma_seed, models=self.models,
                    seeds=self.seeds, icc=self.icc.to_json())


@dataclass(frozen=True, eq=False)
class Importance:
    """Shares of `n` models' error variance (see the module's docstring); `explained`: the
    adjusted R² of the additive model with the interactions found; `constant`: parameters
    named or drawn that take one value here (untestable)."""

    n: int
    shares: tuple[Share, ...]
    pairs: tuple[Pair, ...] | None
    explained: Interval
    ceiling: Ceiling | None
    constant: tuple[str, ...]
    alpha: float
    level: float
    n_boot: int
    n_perm: int
    test: str
    seed: int

    def share(self, param: str) -> Share | None:
        return next((s for s in self.shares if s.param == param), None)

    def pair(self, a: str, b: str) -> Pair | None:
        return next((p for p in self.pairs or () if {p.a, p.b} == {a, b}), None)

    def to_json(self) -> dict:
        return dict(n=self.n, shares=[s.to_json() for s in self.shares],
                    pairs=None if self.pairs is None else [p.to_json() for p in self.pairs],
                    explained=self.explained.to_json(),
                    first_sum=float(sum(s.first.value for s in self.shares)),
                    ceiling=None if self.ceiling is None else self.ceiling.to_json(),
                    constant=list(self.constant), alpha=self.alpha, level=self.level,
                    n_boot=self.n_boot, n_perm=self.n_perm, test=self.test, seed=self.seed)


# ---- the parameters of a population ----------------------------------------------------------

def _extra(pop: pd.DataFrame, name: str) -> np.ndarray:
    if name == "lrwd":
        c = select.model_columns(pop, ["lr", "wd"])
        return c["lr"] * c["wd"]
    if name not in pop:
        return np.full(len(pop), np.nan)
    v = pop[name]
    return v.to_numpy(dtype=object) if v.dtype == object else pd.to_numeric(
        v, errors="coerce").to_numpy(dtype=float)


def _defaults(pop: pd.DataFrame, cols: dict) -> list[str]:
    """The parameters drawn: RegNet d w0 wa wm g b; AnyNet per stage d_i w_i, b and g (per
    stage where they differ within a model); then block, activation, resolution, the
    recipe's."""
    if (pop["kind"] == "regnet").all():
        own = ["d", "w0", "wa", "wm", "g", "b"]
    else:
        stages = [c for c in cols if c[0] in "dw" and c[1:].isdigit()]
        own = sorted(stages, key=lambda c: (c[0], int(c[1:])))
        for sym in "bg":
            per = [c for c in cols if c[0] == sym and c[1:].isdigit()]
            vals = np.column_stack([cols[c] for c in per]) if per else np.zeros((len(pop), 0))
            same = np.all(np.isnan(vals) | (vals == np.nanmax(vals, 1, keepdims=True)))
            own += [sym] if same else per
    return own + ["block", "activation", "resolution", "lr", "wd", "lrwd", "epochs"]


def parameters(pop: pd.DataFrame, names=None) -> tuple[dict[str, np.ndarray], list[str]]:
    """name → values of the population's parameters (default: those drawn; see _defaults),
    and the named or drawn parameters that take a single value (left out)."""
    known = [c for c in select.column_names(pop) if c not in select.TEXT
             and c not in ("flops", "params", "acts", "error", "n_seeds")] + list(EXTRA)
    unknown = [p for p in names or () if p not in known]
    if unknown:
        raise DseError(f"--params: unknown parameter {unknown[0]!r}; choose from "
                       f"{', '.join(known)}")
    cols = select.model_columns(pop, [c for c in known if c not in EXTRA])
    cols.update({c: _extra(pop, c) for c in EXTRA})
    out, constant = {}, []
    for name in dict.fromkeys(names or _defaults(pop, cols)):
        v = cols[name]
        if len(pd.unique(pd.Series(v).fillna("∅"))) > 1:
            out[name] = v
        elif names or name not in RECIPE:
            constant.append(name)
    return out, constant


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
        return _onehot(codes(x, k))
    x = x.astype(float)
    ok = np.isfinite(x)
    if len(np.unique(x[ok])) <= k:
        return _onehot(codes(x, k))
    if x[ok].min() > 0 and x[ok].max() > 10 * x[ok].min():
        x = np.where(ok, np.log(np.where(ok, x, 1.0)), np.nan)
    t = np.where(ok, x, np.median(x[ok]))
    t = (t - t.mean()) / t.std()
    knots = np.unique(np.quantile(t[ok], np.linspace(0, 1, k)[1:-1]))
    cols = [t, *(np.maximum(t - kn, 0) for kn in knots)]
    if not ok.all():
        cols.append((~ok).astype(float))
    return np.column_stack(cols)


def _onehot(c: np.ndarray, drop: bool = True) -> np.ndarray:
    k = int(c.max()) + 1
    out = np.zeros((len(c), k), dtype=float)
    out[np.arange(len(c)), c] = 1.0
    return out[:, 1:] if drop else out


def _rss(a: np.ndarray, cols) -> float:
    """Residual sum of squares of y on the columns `cols` from the cross-products a =
    [X y]'W[X y] (a tiny ridge keeps aliased columns harmless)."""
    cols = np.asarray(cols)
    g = a[np.ix_(cols, cols)]
    c = a[cols, -1]
    b = np.linalg.solve(g + np.eye(len(cols)) * 1e-9 * max(1.0, float(np.trace(g))), c)
    return float(a[-1, -1] - c @ b)


def _basis(z: np.ndarray) -> np.ndarray:
    """An orthonormal basis of z's columns (rank-revealing)."""
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    return u[:, s > s.max(initial=0) * 1e-8 * max(z.shape)] if s.size and s.max() > 0 else \
        np.zeros((len(z), 0))


def _residualize(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """z less its least-squares projection on x's columns."""
    g = x.T @ x
    b = np.linalg.solve(g + np.eye(len(g)) * 1e-9 * max(1.0, float(np.trace(g))), x.T @ z)
    return z - x @ b


# ---- the tests -------------------------------------------------------------------------------

def holm(p) -> np.ndarray:
    """Holm-adjusted p-values."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(adj, 1.0)
    return out


def _perm_stats(q: np.ndarray, r: np.ndarray, perms) -> np.ndarray:
    """||q'r[π]||² for each permutation π (rows of the index batches)."""
    return np.concatenate([((r[idx] @ q) ** 2).sum(axis=1) for idx in perms]) \
        if q.shape[1] else np.zeros(sum(len(i) for i in perms))


def _batches(n: int, n_perm: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n_perm permutations of range(n), in batches of bounded memory."""
    size = max(1, min(n_perm, 2_000_000 // max(n, 1)))
    out, left = [], n_perm
    while left:
        b = min(size, left)
        out.append(rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1))
        left -= b
    return out


def _chi2_p(ss: float, df: int, r: np.ndarray) -> float:
    v = float(((r - r.mean()) ** 2).sum() / (len(r) - 1))
    return float(stats.chi2.sf(ss / v, df)) if df and v > 0 else 1.0


# ---- importance ------------------------------------------------------------------------------

def importance(columns: dict, error, *, pairs: bool = False, top: int = 5,
               bins: int | None = None, alpha: float = ALPHA, level: float = 0.95,
               n_boot: int = 200, n_perm: int = 999, seed: int = 0,
               ceiling: Ceiling | None = None, constant=()) -> Importance:
    """The shares of the error variance of the models (`error`, one per model) that the
    parameters (`columns`: name → values per model) explain; see the module's docstring."""
    y = np.asarray(error, dtype=float)
    n = len(y)
    if n < MIN_MODELS:
        raise DseError(f"importance needs at least {MIN_MODELS} finished models; found {n}")
    if not np.isfinite(y).all():
        raise DseError("importance needs a finite error for every model")
    if not columns:
        raise DseError(f"no parameter varies among the {n} models ({', '.join(constant)} "
                       "take one value each); name others with --params")
    if np.ptp(y) == 0:
        raise DseError(f"all {n} errors are equal; importance needs errors that differ")
    rng = np.random.default_rng(seed)
    k = bins or int(np.clip(round(n ** (1 / 3)), 3, MAX_BINS))
    names = list(columns)
    x, sl = [np.ones((n, 1))], {}
    for p in names:
        h = basis(columns[p], k)
        sl[p] = list(range(sum(m.shape[1] for m in x), sum(m.shape[1] for m in x) + h.shape[1]))
        x.append(h)
    xm = np.hstack(x)
    main = list(range(xm.shape[1]))
    exact = n <= EXACT_MAX
    perms = _batches(n, n_perm, rng) if exact else None

    # each parameter beyond the others (Freedman–Lane)
    p_raw, df = [], {}
    for p in names:
        red = [j for j in main if j not in sl[p]]
        q = _basis(_residualize(xm[:, red], xm[:, sl[p]]))
        df[p] = q.shape[1]
        r = _residualize(xm[:, red], y[:, None])[:, 0]
        ss = float(((q.T @ y) ** 2).sum())
        p_raw.append((1 + (_perm_stats(q, r, perms) >= ss * (1 - 1e-12)).sum()) / (n_perm + 1)
                     if exact else _chi2_p(ss, df[p], r))
    p_adj = holm(p_raw)

    # pairs beyond the additive model, one permuted residual for all (min-p over pairs)
    cells, found, pair_p = {}, [], {}
    if pairs and len(names) > 1:
        kc = {p: codes(columns[p], min(PAIR_BINS, k)) for p in names}
        r = _residualize(xm, y[:, None])[:, 0]
        qs, ss = {}, {}
        for a, b in itertools.combinations(names, 2):
            cell = np.unique(kc[a] * (kc[b].max() + 1) + kc[b], return_inverse=True)[1]
            cells[a, b] = _onehot(cell, drop=False)
            qs[a, b] = _basis(_residualize(xm, cells[a, b]))
            ss[a, b] = float(((qs[a, b].T @ y) ** 2).sum())
        pair_p = _pair_p(qs, ss, r, perms, exact)
        ranked = sorted(cells, key=lambda ab: -(ss[ab] / max(qs[ab].shape[1], 1)))
        shown = [ab for ab in ranked if pair_p[ab] <= alpha][:max(top, 0)] or []
        shown += [ab for ab in ranked if ab not in shown][:max(0, top - len(shown))]
        found = [ab for ab in shown if pair_p[ab] <= alpha]
        df.update({ab: qs[ab].shape[1] for ab in cells})
    else:
        shown = []

    # the shares and their intervals, from summed cross-products of [X cells y]
    extra = [cells[ab] for ab in shown]
    xa = np.hstack([xm, *extra, y[:, None]])
    pos, at = {}, xm.shape[1]
    for ab, e in zip(shown, extra):
        pos[ab] = list(range(at, at + e.shape[1]))
        at += e.shape[1]
    full = main + [j for ab in found for j in pos[ab]]
    spec = (names, sl, main, full, shown, found, pos, df)
    point = _shares(xa.T @ xa, spec)
    boot = [_shares(a, spec) for a in _resampled(xa, n_boot, rng)]
    q = ((1 - level) / 2, (1 + level) / 2)

    def interval(key) -> Interval:
        v = np.array([b[key] for b in boot])
        if not len(v):
            return Interval(point[key], math.nan, math.nan)
        shift = float(np.median(v)) - point[key]  # the resamples' own bias (duplicated models)
        lo, hi = np.quantile(v, q) - shift
        return Interval(point[key], float(lo), float(hi))

    shares = tuple(Share(p, len(sl[p]), interval(("first", p)),
                         interval(("total", p)), float(p_adj[i]), bool(p_adj[i] <= alpha))
                   for i, p in enumerate(names))
    pair_rows = tuple(Pair(a, b, interval(("pair", (a, b))), float(pair_p[a, b]),
                           bool(pair_p[a, b] <= alpha)) for a, b in shown) \
        if pairs else None
    return Importance(n, shares, pair_rows, interval(("explained", None)), ceiling,
                      tuple(constant), float(alpha), float(level), int(n_boot), int(n_perm),
                      "permutation" if exact else "chi2 limit", int(seed))


def _pair_p(qs: dict, ss: dict, r: np.ndarray, perms, exact: bool) -> dict:
    """Adjusted p-values of the pairs: min-p over pairs of the permuted residuals (exact),
    else χ² with Holm."""
    v = float(((r - r.mean()) ** 2).sum() / (len(r) - 1))
    raw = {ab: _chi2_p(ss[ab], qs[ab].shape[1], r) for ab in qs}
    if not exact:
        return dict(zip(qs, holm(list(raw.values()))))
    q_all = np.hstack(list(qs.values()))
    cuts = np.cumsum([0] + [qs[ab].shape[1] for ab in qs])
    mins = []
    for idx in perms:
        proj = (r[idx] @ q_all) ** 2
        sums = np.add.reduceat(proj, cuts[:-1], axis=1) if len(cuts) > 1 else proj
        sums[:, np.diff(cuts) == 0] = 0.0
        dfs = np.diff(cuts)
        mins.append(np.min(np.where(dfs > 0, stats.chi2.sf(sums / v, np.maximum(dfs, 1)), 1.0),
                           axis=1))
    mins = np.concatenate(mins)
    return {ab: float((1 + (mins <= raw[ab] * (1 + 1e-9)).sum()) / (len(mins) + 1))
            for ab in qs}


def _shares(a: np.ndarray, spec) -> dict:
    """Every share from the cross-products a = [X cells y]'W[X cells y]."""
    names, sl, main, full, shown, found, pos, df = spec
    n = a[0, 0]
    sst = _rss(a, [0])
    out = {}
    rss_main = _rss(a, main)
    mse_main = rss_main / max(n - len(main), 1)
    rss_full = _rss(a, full) if len(full) > len(main) else rss_main
    mse_full = rss_full / max(n - len(full), 1)
    pair = {}
    for ab in shown:
        ss = rss_main - _rss(a, main + pos[ab])
        pair[ab] = (ss - df[ab] * mse_main) / sst
        out["pair", ab] = pair[ab]
    for p in names:
        within = _rss(a, [0, *sl[p]])
        kp = len(sl[p])
        out["first", p] = (sst - within - kp * within / max(n - kp - 1, 1)) / sst
        ss = _rss(a, [j for j in main if j not in sl[p]]) - rss_main
        out["total", p] = (ss - df[p] * mse_main) / sst + sum(pair[ab] for ab in found if p in ab)
    out["explained", None] = 1 - mse_full / (sst / max(n - 1, 1))
    return out


def _resampled(xa: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Bootstrap cross-products: models (or, past CHUNKS models, random groups of models)
    drawn with replacement."""
    n = len(xa)
    g = min(n, CHUNKS)
    group = rng.permutation(n) % g
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(g))
    ends = np.append(starts[1:], n)
    grams = np.stack([xa[order[s:e]].T @ xa[order[s:e]] for s, e in zip(starts, ends)])
    w = rng.multinomial(g, np.full(g, 1 / g), size=n_boot).astype(float)
    return list((w @ grams.reshape(g, -1)).reshape(n_boot, *grams.shape[1:]))


def ceiling(error, n_seeds, nz: Noise) -> Ceiling:
    """The noise ceiling of errors that are means of n_seeds runs each, from the seed noise
    of the reruns (dse.analysis.trials.noise)."""
    e = np.asarray(error, dtype=float)
    s = np.maximum(np.asarray(n_seeds, dtype=float), 1)
    var = float(e.var(ddof=1))
    value = 1 - float(np.mean(nz.sigma_seed ** 2 / s)) / var if var > 0 else math.nan
    return Ceiling(value, nz.sigma_seed, nz.models, float(s.mean()),
                   Interval(nz.icc, nz.icc_lo, nz.icc_hi))
