"""Trends across flop regimes (DDS §4, Figs. 11–12), pure numpy: per regime the good range of
each design parameter, the slope of its centre against log flops with a bootstrap interval
(stable / increasing / decreasing), and how params, acts and time grow with flops over each
regime's top models.

The good range of DDS footnote 4 is the spread of the best model's value over resamples of
25% of the models. Its distribution is known exactly: in a resample of m models drawn with
replacement from n, the model of error rank k (1 = best) is the best with probability
((n − k + 1)/n)^m − ((n − k)/n)^m. Here ranges come from that distribution, so they are the
numbers the resampling of `dse trends` estimates, without its noise; the centre of a range is
its median (the most likely best value).

A flops window moves what is sampled: a bigger regime holds deeper or wider models, and the
good range's centre follows what was drawn even when the errors say nothing. A trend is
therefore the excess of the centres' slope over the slope of the sampled medians (what the
centre is when the errors are blind to the parameter: with errors shuffled within a regime
the best model is any model). Its interval and its one-sided p of a rise and of a fall
resample each regime's models (with replacement) and recompute in each resample both the
centres and the sampled medians, so the design's own sampling noise is in them. Errors
permuted within each regime, the slope recomputed, give a second, exact but less powerful
check (`shuffled`): it keeps each regime's design as drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.analysis import stats
from dse.errors import DseError
from dse.space import regimes as flop_regimes

FRAC = 0.25          # the share of models in each good-range resample (DDS footnote 4)
MIN_MODELS = 8       # fewer finished models in a regime: its good range says nothing
PERMUTATIONS = 999   # within-regime shuffles of the errors: the null of a trend
STABLE, UP, DOWN = "stable", "increasing", "decreasing"
KEYS = ("regimes", "slope", "excess", "shuffled", "trend")  # a trend row as reported


# ---- exact good ranges -----------------------------------------------------------------------

def best_weights(e: np.ndarray, frac: float = FRAC) -> np.ndarray:
    """P(model i is the lowest-error model of a resample of max(1, ⌊n·frac⌋) models drawn
    with replacement); along the last axis, so a (B, n) array gives B such rows."""
    e = np.asarray(e, dtype=float)
    n = e.shape[-1]
    m = max(1, int(n * frac))
    k = np.arange(n)
    p_rank = ((n - k) / n) ** m - ((n - k - 1) / n) ** m  # rank 0 is the best
    order = np.argsort(e, axis=-1, kind="stable")
    w = np.empty(e.shape)
    np.put_along_axis(w, order, np.broadcast_to(p_rank, e.shape), axis=-1)
    return w


def weighted_quantiles(x: np.ndarray, w: np.ndarray, qs) -> np.ndarray:
    """The smallest x whose cumulative weight reaches each q, along the last axis; shape
    (..., len(qs))."""
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(w, order, axis=-1), axis=-1)
    cw /= cw[..., -1:]
    idx = np.stack([(cw >= q - 1e-12).argmax(axis=-1) for q in qs], axis=-1)
    return np.take_along_axis(xs, idx, axis=-1)


def good_range(x, e, level: float = 0.95, frac: float = FRAC) -> dict:
    """lo, median and hi of the best model's value over resamples (exact), and the value of
    the lowest-error model itself."""
    x, e = np.asarray(x, dtype=float), np.asarray(e, dtype=float)
    lo, med, hi = weighted_quantiles(x, best_weights(e, frac),
                                     [(1 - level) / 2, 0.5, (1 + level) / 2])
    return dict(lo=float(lo), median=float(med), hi=float(hi), best=float(x[np.argmin(e)]))


# ---- regimes of a population -----------------------------------------------------------------

@dataclass(frozen=True)
class RegimePop:
    """One regime's finished models: its name, median flops and the frame."""

    name: str
    flops: float
    pop: pd.DataFrame


def split_regimes(pop: pd.DataFrame, min_models: int = MIN_MODELS) -> list[RegimePop]:
    """A space's finished models by regime, in order of flops; a DseError unless there are
    at least two regimes of at least `min_models` models."""
    label = flop_regimes.labels(pop)
    parts = [RegimePop(r, float(np.median(pop["flops"][label == r])), pop[label == r])
             for r in dict.fromkeys(label)]
    parts.sort(key=lambda p: p.flops)
    space = pop["space"].iloc[0] if len(pop) else "the space"
    few = [f"{p.name} ({len(p.pop)})" for p in parts if len(p.pop) < min_models]
    if few:
        raise DseError(f"{space}: regime(s) {', '.join(few)} have fewer than {min_models} "
                       "finished models; a good range needs more (or pick regimes with "
                       "--where)")
    if len(parts) < 2:
        raise DseError(f"{space} has one regime ({', '.join(p.name for p in parts)}); trends "
                       "across regimes need two or more: sample another flops window (dse "
                       "sample --flops LO:HI, or `regimes:` in an experiment)")
    return parts


def _slope(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least-squares slopes of rows of y (..., R) against t (R,)."""
    tc = t - t.mean()
    return ((y - y.mean(axis=-1, keepdims=True)) * tc).sum(axis=-1) / (tc * tc).sum()


def trend_call(p_up: float, p_down: float, level: float = 0.95) -> str:
    """increasing when the p of a rise beyond the sampling-induced slope is at most
    (1 − level)/2, decreasing likewise for a fall, else stable."""
    cut = (1 - level) / 2
    return UP if p_up <= cut else DOWN if p_down <= cut else STABLE


def _centres(x: np.ndarray, w: np.ndarray, f) -> np.ndarray:
    """f of the weighted median of x under each row of weights w."""
    return f(weighted_quantiles(np.broadcast_to(x, w.shape), w, [0.5])[..., 0])


def _null(xs, perms, f, t) -> np.ndarray:
    """The slopes under errors permuted within each regime (`perms`: each regime's weights
    of the shuffled errors)."""
    return _slope(np.stack([_centres(x, w, f) for x, w in zip(xs, perms)], axis=-1), t)


def _tail(null: np.ndarray, value: float, sign: int) -> float:
    """The permutation p of a slope at least `value` (sign 1) or at most (sign −1)."""
    return float((1 + (sign * (null - value) >= -1e-9).sum()) / (len(null) + 1))


def by_regime(pop: pd.DataFrame, params=None, level: float = 0.95, repeats: int = 2000,
              seed: int = 0, frac: float = FRAC,
              permutations: int = PERMUTATIONS) -> list[dict]:
    """Per parameter: each regime's good range, best value and sampled median at its flops;
    the slope of the range's centre against log2 flops (per doubling; log-scale parameters
    such as g and w_a in doublings) with its bootstrap interval; its excess over the slope
    of the sampled medians with its interval and the bootstrap p of a rise and of a fall;
    the permutation p of the slope under errors shuffled within regimes; and the trend the
    excess reads as. Returns [{param, label, log, regimes: [{name, flops, n, lo, median,
    hi, best, sampled}], slope: {value, lo, hi, unit}, excess: {value, lo, hi, p_up, p_down,
    sampled_slope}, shuffled: {p_up, p_down, permutations}, excess_reps, trend}]
    (excess_reps: the resamples' excesses, for tests of a margin)."""
    parts = split_regimes(pop)
    table = stats.param_table(pop["kind"].iloc[0], int(pop["ds"].map(len).max()))
    names = list(params) if params else [  # the recipe's lr, wd, lr·wd where drawn per model
        p for p in stats.default_params(pop["kind"].iloc[0]) if p not in ("lr", "wd", "lrwd")
        or pd.to_numeric(table[p][0](pop), errors="coerce").nunique() > 1]
    unknown = [p for p in names if p not in table]
    if unknown:
        raise DseError(f"unknown parameter(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(table)}")
    t = np.log2([p.flops for p in parts])
    rng = np.random.default_rng(seed)
    boot = [rng.integers(len(p.pop), size=(repeats, len(p.pop))) for p in parts]
    errs = [p.pop["error"].to_numpy(dtype=float) for p in parts]
    weights = [best_weights(e[b], frac) for e, b in zip(errs, boot)]
    perms = [best_weights(e[rng.permuted(np.broadcast_to(np.arange(len(e)),
                                                       (permutations, len(e))), axis=1)], frac)
             for e in errs]
    out = []
    for name in names:
        fn, label, log = table[name]
        xs = [pd.to_numeric(fn(p.pop), errors="coerce").to_numpy(dtype=float) for p in parts]
        if not all(np.isfinite(x).all() for x in xs):
            raise DseError(f"parameter {name} is undefined for some models")
        rows = [dict(name=p.name, flops=p.flops, n=len(p.pop), **good_range(x, e, level, frac))
                for p, x, e in zip(parts, xs, errs)]
        f = np.log2 if log and all((x > 0).all() for x in xs) else (lambda v: v)
        centre = np.array([f(r["median"]) for r in rows])
        resampled = np.stack([f(weighted_quantiles(x[b], w, [0.5])[:, 0])
                              for x, b, w in zip(xs, boot, weights)], axis=-1)
        slopes = _slope(resampled, t)
        q = [50 * (1 - level), 50 + 50 * level]
        lo, hi = np.percentile(slopes, q)
        design = np.stack([f(np.median(x[b], axis=-1)) for x, b in zip(xs, boot)], axis=-1)
        reps = slopes - _slope(design, t)   # the excess in each resample
        sampled = np.array([f(np.median(x)) for x in xs])
        for r, c in zip(rows, sampled):
            r["sampled"] = float(2 ** c if f is np.log2 else c)
        value, base = float(_slope(centre, t)), float(_slope(sampled, t))
        null = _null(xs, perms, f, t)
        e_lo, e_hi = np.percentile(reps, q)
        p_up, p_down = float(np.mean(reps <= 0)), float(np.mean(reps >= 0))
        out.append(dict(param=name, label=label, log=log, regimes=rows,
                        slope=dict(value=value, lo=float(lo), hi=float(hi),
                                   unit="doublings per doubling of flops" if f is np.log2
                                   else "per doubling of flops"),
                        excess=dict(value=value - base, lo=float(e_lo), hi=float(e_hi),
                                    p_up=p_up, p_down=p_down, sampled_slope=base),
                        shuffled=dict(p_up=_tail(null, value, 1), p_down=_tail(null, value, -1),
                                      permutations=permutations),
                        excess_reps=reps, trend=trend_call(p_up, p_down, level)))
    return out


# ---- complexity of the top models (DDS Fig. 12) ----------------------------------------------

def loglog_fit(x, y) -> dict:
    """log y ≈ a + exponent·log x by least squares: exponent, intercept a, R², n; nulls
    when fewer than 3 points or x is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if ok.sum() < 3 or np.ptp(lx) == 0:
        return dict(exponent=None, intercept=None, r2=None, n=int(ok.sum()))
    b, a = np.polyfit(lx, ly, 1)
    res = ly - (a + b * lx)
    ss = ((ly - ly.mean()) ** 2).sum()
    return dict(exponent=float(b), intercept=float(a),
                r2=float(1 - (res ** 2).sum() / ss) if ss > 0 else None, n=int(ok.sum()))


def top_models(pop: pd.DataFrame, top: int) -> pd.DataFrame:
    """The `top` lowest-error finished models of each regime."""
    label = flop_regimes.labels(pop)
    return pd.concat([pop[label == r].nsmallest(top, "error") for r in dict.fromkeys(label)])


def complexity(pop: pd.DataFrame, top: int = 5) -> dict:
    """Over the top models of each regime: exponents (with R²) of params, acts and, where
    the results measured it, training time per image against flops. DDS Fig. 12 finds
    params ∝ flops and acts ∝ √flops for the best RegNets."""
    best = top_models(pop, top)
    out = dict(top=top, n=len(best),
               params=loglog_fit(best["flops"], best["params"]),
               acts=loglog_fit(best["flops"], best["acts"]))
    ips = pd.to_numeric(best["images_per_second"], errors="coerce").to_numpy(dtype=float) \
        if "images_per_second" in best else np.full(len(best), np.nan)
    out["time"] = loglog_fit(best["flops"], 1 / ips) if np.isfinite(ips).sum() >= 3 else None
    return out


# ---- claims about trends (dse.method.claims) -------------------------------------------------

def judge_trend(pop: pd.DataFrame, param: str, kind: str, level: float = 0.95,
                repeats: int = 2000, seed: int = 0,
                permutations: int = PERMUTATIONS) -> tuple[bool, dict]:
    """Whether a trend claim (stable | increases | decreases) reads so for a parameter
    (uncorrected: dse.method.claims corrects it with the experiment's other claims), and
    the trend row it rests on."""
    row = by_regime(pop, [param], level, repeats, seed, permutations=permutations)[0]
    want = {"stable": STABLE, "increases": UP, "decreases": DOWN}[kind]
    return row["trend"] == want, row
