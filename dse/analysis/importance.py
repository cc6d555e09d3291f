"""Which design choices matter (pure numpy/scipy/pandas, no I/O): a functional ANOVA of a
population's errors over its parameters, with bootstrap intervals, a permutation null that
keeps the sampled design, pairwise interactions and the noise ceiling.

A parameter P's effect is modelled by columns of its own (dse.analysis.fanova.basis): one
per level when it takes at most k values (text values are levels, a missing value is one),
else a linear spline with knots at quantiles of P (of log P for positive values spanning
over a decade); k = clip(round(n^⅓), 2, MAX_BINS) for n models, smaller while all
parameters' columns number over n/3 (k = 2: a level each for two values, else a line). With
y the errors (points):

- `first`: the share of the error variance P's columns explain alone, less its chance
  expectation: (SS_P − df_P·RSS_P/(n − df_P − 1))/SS_total (about 0 for a parameter that does
  not matter, so it can be slightly negative);
- `total`: the share only P explains: what its columns add to an additive model of every
  other parameter, less its chance expectation (df_P·MSE of the full additive model), plus
  the shares of its interactions that were found (`pairs`). Under dependent sampling (a
  flops window ties d to w) `first` counts what P shares with the parameters it moves with
  and `total` only what no other parameter can stand in for; how much P drives the error
  lies between them;
- a pair's share: what the cells of P × Q (quantile bins, at most `PAIR_BINS` each) add to
  the additive model of all parameters, adjusted the same way;
- intervals: percentile bootstrap over models, centred on the estimate (a resample's
  duplicated models look like less noise and bias its shares up, so the resamples' median
  bias is taken off); `n_boot` resamples; populations over `fanova.CHUNKS` models are
  resampled as that many random groups of models, each fit from the groups' summed
  cross-products;
- "matters": the Freedman–Lane permutation test of P's columns beyond the other parameters
  (the residuals of the model without P permuted over models and added to its fit, so every
  model keeps its parameter values as sampled; the statistic is the F ratio of P's columns,
  which stays pivotal when the model has many columns), `n_perm` permutations, Holm over
  the parameters at `alpha`; pairs: the permuted residuals of the additive model, one set
  for all pairs, with the single-step min-p adjustment over pairs. Above `EXACT_MAX` models
  the permutation distribution is replaced by its large-sample limit, the F distribution
  (Holm over pairs);
- `ceiling`: the share of the error variance that is the models' and not the seeds':
  1 − mean(σ_seed²/n_i)/Var(y), with σ_seed pooled from reruns (dse.analysis.reruns.noise)
  and n_i the seeds averaged into model i's error.

The same seed gives the same numbers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.analysis import fanova, select
from dse.analysis.ceiling import Ceiling
from dse.analysis.reruns import Interval
from dse.errors import ArgumentError, DseError

ALPHA = 0.05
MIN_MODELS = 10
MAX_BINS = 8
PAIR_BINS = 4
EXACT_MAX = 5_000
EXTRA = ("block", "activation", "resolution", "epochs", "lrwd")
RECIPE = ("lr", "wd", "lrwd", "epochs")


@dataclass(frozen=True)
class Share:
    """One parameter: the degrees of freedom of its effect, its first-order and total
    shares with intervals, the Holm-adjusted permutation p-value (and the raw one), whether
    it matters at alpha."""

    param: str
    df: int
    first: Interval
    total: Interval
    p: float
    matters: bool
    p_raw: float  # before Holm: P's own test, for a claim that names P alone

    def to_json(self) -> dict:
        return dict(param=self.param, df=self.df, first=self.first.to_json(),
                    total=self.total.to_json(), p=self.p, matters=self.matters,
                    p_raw=self.p_raw)


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
    if pd.api.types.is_numeric_dtype(v):
        return v.to_numpy(dtype=float)
    return v.astype(object).where(v.notna(), None).to_numpy(dtype=object)


def _defaults(pop: pd.DataFrame, cols: dict) -> list[str]:
    """The parameters drawn: RegNet d w0 wa wm g b; AnyNet per stage d_i w_i, b and g (per
    stage where they differ within a model); then block, activation, resolution, the
    recipe's lr, wd and epochs."""
    if (pop["kind"] == "regnet").all():
        own = ["d", "w0", "wa", "wm", "g", "b"]
    else:
        stages = [c for c in cols if c[0] in "dw" and c[1:].isdigit() and c[1:] != "0"]
        own = sorted(stages, key=lambda c: (c[0], int(c[1:])))
        for sym in "bg":
            per = [c for c in cols if c[0] == sym and c[1:].isdigit()]
            vals = np.column_stack([cols[c] for c in per]) if per else np.zeros((len(pop), 0))
            same = np.all(np.isnan(vals) | (vals == np.nanmax(vals, 1, keepdims=True)))
            own += [sym] if same else per
    # not lr·wd: beside lr and wd it is their sum in logs, so it could add nothing of its own;
    # the lr × wd pair (pairs=True) measures what it would
    return own + ["block", "activation", "resolution", "lr", "wd", "epochs"]


def parameters(pop: pd.DataFrame, params=None) -> tuple[dict[str, np.ndarray], list[str]]:
    """name → values of the population's parameters (default: those drawn; see _defaults),
    and the named or drawn parameters that take a single value (left out)."""
    known = [c for c in select.column_names(pop) if c not in select.TEXT
             and c not in ("flops", "params", "acts", "error", "n_seeds")] + list(EXTRA)
    names = list(params or ())
    unknown = [p for p in names if p not in known]
    if unknown:
        raise ArgumentError("params", f"names an unknown parameter {unknown[0]!r}; choose "
                            f"from {', '.join(known)}")
    cols = select.model_columns(pop, [c for c in known if c not in EXTRA])
    cols.update({c: _extra(pop, c) for c in EXTRA})
    out, constant = {}, []
    for name in dict.fromkeys(names or _defaults(pop, cols)):
        v = cols[name]
        if len(pd.unique(pd.Series(v, dtype=object).fillna("∅"))) > 1:  # NaN: one value
            out[name] = v
        elif names or name not in RECIPE:
            constant.append(name)
    return out, constant


# ---- importance ------------------------------------------------------------------------------

def importance(columns: dict, error, *, pairs: bool = False, top: int = 5,
               bins: int | None = None, alpha: float = ALPHA, level: float = 0.95,
               n_boot: int = 200, n_perm: int = 999, seed: int = 0,
               ceiling: Ceiling | None = None, constant=(),
               pair_of: tuple[str, str] | None = None) -> Importance:
    """The shares of the error variance of the models (`error`, one per model) that the
    parameters (`columns`: name → values per model) explain; see the module's docstring.
    `pair_of` (P, Q): test that pair alone (pairs=True)."""
    y = _check(columns, error, constant, alpha, level, n_boot, n_perm, top, bins)
    n, names = len(y), list(columns)
    rng = np.random.default_rng(seed)
    k = bins or _auto_bins(columns, n)
    x, sl = [np.ones((n, 1))], {}
    for p in names:
        at = sum(m.shape[1] for m in x)
        x.append(fanova.basis(columns[p], k))
        sl[p] = list(range(at, at + x[-1].shape[1]))
    xm = np.hstack(x)
    exact = n <= EXACT_MAX
    perms = fanova.batches(n, n_perm, rng) if exact else None
    p_raw, df = _main_tests(xm, y, sl, perms)
    p_adj = fanova.holm(p_raw)
    cells, shown, pair_p = (_pair_tests(columns, xm, y, min(PAIR_BINS, k), perms, df, pair_of)
                            if pairs and len(names) > 1 else ({}, [], {}))
    shown = _shown(shown, pair_p, alpha, top)
    found = [ab for ab in shown if pair_p[ab] <= alpha]

    # the shares and their intervals, from summed cross-products of [X cells y]
    xa = np.hstack([xm, *(cells[ab] for ab in shown), y[:, None]])
    pos, at = {}, xm.shape[1]
    for ab in shown:
        pos[ab] = list(range(at, at + cells[ab].shape[1]))
        at += cells[ab].shape[1]
    main = list(range(xm.shape[1]))
    spec = (names, sl, main, main + [j for ab in found for j in pos[ab]], shown, found, pos,
            df)
    every = _shares(np.concatenate([(xa.T @ xa)[None], fanova.resampled(xa, n_boot, rng)]),
                    spec)  # the estimate first, then the resamples

    def interval(key) -> Interval:
        point, v = float(every[key][0]), every[key][1:]
        shift = float(np.median(v)) - point  # the resamples' own bias (duplicated models)
        lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2]) - shift
        return Interval(point, float(lo), float(hi))

    shares = tuple(Share(p, len(sl[p]), interval(("first", p)), interval(("total", p)),
                         float(p_adj[i]), bool(p_adj[i] <= alpha), float(p_raw[i]))
                   for i, p in enumerate(names))
    pair_rows = tuple(Pair(a, b, interval(("pair", (a, b))), float(pair_p[a, b]),
                           bool(pair_p[a, b] <= alpha)) for a, b in shown) if pairs else None
    return Importance(n, shares, pair_rows, interval(("explained", None)), ceiling,
                      tuple(constant), float(alpha), float(level), int(n_boot), int(n_perm),
                      "permutation" if exact else "F", int(seed))


def _auto_bins(columns: dict, n: int) -> int:
    """k = clip(round(n^⅓), 2, MAX_BINS), smaller while the parameters' columns number more
    than n/3 (so the residual keeps most of its degrees of freedom)."""
    k = int(np.clip(round(n ** (1 / 3)), 2, MAX_BINS))
    while k > 2 and sum(fanova.basis(v, k).shape[1] for v in columns.values()) > n / 3:
        k -= 1
    return k


def _check(columns, error, constant, alpha, level, n_boot, n_perm, top, bins) -> np.ndarray:
    """The errors as an array, once every argument is checked."""
    y = np.asarray(error, dtype=float)
    n = len(y)
    if n < MIN_MODELS:
        raise DseError(f"importance needs at least {MIN_MODELS} finished models; found {n}")
    if not np.isfinite(y).all():
        raise DseError("importance needs a finite error for every model")
    if not columns:
        raise DseError(f"no parameter varies among the {n} models ({', '.join(constant)} "
                       "take one value each); name others with --params")
    if any(len(v) != n for v in columns.values()):
        raise DseError(f"every parameter needs one value per model ({n})")
    if np.ptp(y) == 0:
        raise DseError(f"all {n} errors are equal; importance needs errors that differ")
    for name, v, ok in (("alpha", alpha, 0 < alpha < 1), ("level", level, 0 < level < 1),
                        ("n_boot", n_boot, isinstance(n_boot, int) and n_boot >= 20),
                        ("n_perm", n_perm, isinstance(n_perm, int) and n_perm >= 19),
                        ("top", top, isinstance(top, int) and top >= 0),
                        ("bins", bins, bins is None or (isinstance(bins, int) and bins >= 2))):
        if not ok:
            raise ArgumentError(name, f"must be {_ALLOWED[name]} (got {v!r})")
    least = math.ceil(len(columns) / alpha) - 1
    if n <= EXACT_MAX and n_perm < least:
        raise ArgumentError("n_perm", f"{n_perm} is too few: the smallest p-value, "
                            f"1/(n_perm + 1), could not reach α/{len(columns)} (Holm over "
                            f"{len(columns)} parameters); use at least {least}")
    return y


_ALLOWED = dict(alpha="between 0 and 1, e.g. 0.05", level="between 0 and 1, e.g. 0.95",
                n_boot="an integer ≥ 20", n_perm="an integer ≥ 19", top="an integer ≥ 0",
                bins="an integer ≥ 2")


def _main_tests(xm, y, sl, perms) -> tuple[np.ndarray, dict]:
    """Each parameter beyond the others (Freedman–Lane F; the F distribution past EXACT_MAX
    models): the raw p-values and the degrees of freedom its columns add."""
    if perms is None:
        return _main_f(xm, y, sl)
    p_raw, df = [], {}
    for p, cols in sl.items():
        u = fanova.span(xm[:, [j for j in range(xm.shape[1]) if j not in cols]])
        q = fanova.beyond(u, xm[:, cols])
        df[p] = q.shape[1]
        p_raw.append(fanova.beyond_p(u, q, fanova.residualize(u, y), perms))
    return np.array(p_raw), df


def _main_f(xm, y, sl) -> tuple[np.ndarray, dict]:
    """_main_tests from the cross-products alone, with the F distribution (many models)."""
    xa = np.hstack([xm, y[:, None]])
    a = xa.T @ xa
    every = list(range(xm.shape[1]))
    rss, rank = fanova.rss(a, every), fanova.rank(a[:-1, :-1])
    p_raw, df = [], {}
    for p, cols in sl.items():
        red = [j for j in every if j not in cols]
        df[p] = rank - fanova.rank(a[np.ix_(red, red)])
        f = fanova.f_ratio(fanova.rss(a, red) - rss, rss, max(df[p], 1), len(y) - rank)
        p_raw.append(float(fanova.f_p(f, df[p], len(y) - rank)))
    return np.array(p_raw), df


def _pair_tests(columns, xm, y, kc, perms, df, only=None) -> tuple[dict, list, dict]:
    """Every pair's cells beyond the additive model: the cells' columns, the pairs ranked by
    their sum of squares per degree of freedom, and their adjusted p-values."""
    c = {p: fanova.codes(v, kc) for p, v in columns.items()}
    u = fanova.span(xm)
    cells, qs, ss = {}, {}, {}
    for a, b in [tuple(only)] if only else itertools.combinations(columns, 2):
        cell = np.unique(c[a] * (c[b].max() + 1) + c[b], return_inverse=True)[1]
        cells[a, b] = fanova.onehot(cell, drop=False)
        qs[a, b] = fanova.beyond(u, cells[a, b])
        ss[a, b] = float(((qs[a, b].T @ y) ** 2).sum())
        df[a, b] = qs[a, b].shape[1]
    ranked = sorted(cells, key=lambda ab: -(ss[ab] / max(df[ab], 1)))
    return cells, ranked, fanova.pairs_p(u, qs, fanova.residualize(u, y), perms)


def _shown(ranked, pair_p, alpha, top) -> list:
    """The pairs reported: those found first, then the strongest others, `top` in all."""
    out = [ab for ab in ranked if pair_p[ab] <= alpha][:top]
    return out + [ab for ab in ranked if ab not in out][:top - len(out)]


def _shares(a: np.ndarray, spec) -> dict:
    """Every share from a stack of cross-products a = [X cells y]'W[X cells y], one value per
    matrix."""
    names, sl, main, full, shown, found, pos, df = spec
    n = a[:, 0, 0]
    sst = fanova.rss(a, [0])
    rss_main = fanova.rss(a, main)
    mse_main = rss_main / np.maximum(n - len(main), 1)
    rss_full = fanova.rss(a, full) if len(full) > len(main) else rss_main
    out = {("explained", None): 1 - (rss_full / np.maximum(n - len(full), 1))
           / (sst / np.maximum(n - 1, 1))}
    for ab in shown:
        out["pair", ab] = (rss_main - fanova.rss(a, main + pos[ab]) - df[ab] * mse_main) / sst
    for p in names:
        within, kp = fanova.rss(a, [0, *sl[p]]), len(sl[p])
        out["first", p] = (sst - within - kp * within / np.maximum(n - kp - 1, 1)) / sst
        ss = fanova.rss(a, [j for j in main if j not in sl[p]]) - rss_main
        out["total", p] = (ss - df[p] * mse_main) / sst + sum(
            (out["pair", ab] for ab in found if p in ab), np.zeros(len(a)))
    return out
