"""Good-range claims judged so that the models that pick a range do not also judge it.

"regnetx good d contains 20" asks whether the best models of RegNetX have d near 20. The
good range (DDS footnote 4: the central 95% of the best model's value over bootstrap
resamples of a quarter of the models) describes the best few models whatever the errors are:
with errors shuffled at random it is about as wide as the sampled values. So a range claim
holds only when
- the range is informative: narrower than the ranges of the same resamples with the errors
  shuffled among the models (a permutation test: under "error does not depend on the
  parameter" it is significant at most at alpha; in a population of several flop regimes
  the errors are shuffled within each regime, which keeps each window's sampled design
  beside its errors), and
- it contains the value (lies above / below it), and does not run into an end of the
  sampled values that the space could exceed (the best value could lie beyond it).
It is contradicted when the range is informative and lies away from the value. A value no
sampled model reaches (or that every model is above or below) is untestable, with the
sampled range in the reason. Pure: no torch, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.analysis import effects, stats
from dse.space import regimes as flop_regimes

MIN_FOR_RANGE = 8
NULL_REPEATS = 2000  # bootstrap resamples per shuffle of the permutation null


@dataclass(frozen=True)
class RangeEvidence:
    """What a population says about a range claim: untestable (`reason`), or the permutation
    p of its range, whether a significant p makes the claim hold or contradicts it, why it
    cannot hold otherwise, and the good range as the effect."""

    reason: str = ""
    p: float = np.nan
    may_hold: bool = False
    may_contradict: bool = False
    why_not: str = ""
    test: str = ""
    statistic: list | None = None
    effect: effects.Effect | None = None
    detail: str = ""


def judge_range(kind: str, param: str, value: float, space: str, pop, repeats: int = 10_000,
                permutations: int = 999, seed: int = 0, limits=None) -> RangeEvidence:
    """The evidence of `space good PARAM contains|above|below VALUE` in the finished models
    `pop`; `limits` (lo, hi): the values the space allows, when known."""
    if pop is None or len(pop) < MIN_FOR_RANGE:
        have = 0 if pop is None else len(pop)
        return RangeEvidence(reason=f"{space} has {have} finished models; a good range needs "
                                    f"at least {MIN_FOR_RANGE}")
    table = stats.param_table(pop["kind"].iloc[0], int(pop["ds"].map(len).max()))
    fn, _, log = table[param]
    x = np.asarray(fn(pop), dtype=float)
    e = pop["error"].to_numpy(dtype=float)
    why = _untestable(kind, value, x, param)
    if why:
        return RangeEvidence(reason=why)
    r = stats.bootstrap_range(x, e, repeats=repeats, rng=seed)
    lo, hi = r["lo"], r["hi"]
    t = effects.range_test(x, e, log, repeats=min(repeats, NULL_REPEATS),
                           permutations=permutations, seed=seed,
                           strata=flop_regimes.labels(pop))
    inside = {"contains": lo <= value <= hi, "above": lo > value, "below": hi < value}[kind]
    away = {"contains": value < lo or value > hi, "above": hi <= value,
            "below": lo >= value}[kind]
    cut = _cut(x, e, lo, hi, param, limits) if kind == "contains" and inside else ""
    scale = "log " if log and np.all(x > 0) else ""
    test = (f"95% good range of {param} [{lo:.4g}, {hi:.4g}] against its permutation null "
            f"(width in {scale}{param} {t.width:.3g}, shuffled errors {t.null_width:.3g}; "
            f"{permutations} shuffles)")
    eff = effects.Effect(f"best model's {param}", r["median"], lo, hi, 0.95, repeats, "")
    detail = (f"{eff.text()}; best model {r['best']:.4g}; sampled {param} "
              f"{_num(x.min())}–{_num(x.max())}")
    return RangeEvidence(p=t.p, may_hold=inside and not cut, may_contradict=away, why_not=cut,
                         test=test, statistic=[lo, hi], effect=eff, detail=detail)


def _untestable(kind: str, v: float, x: np.ndarray, param: str) -> str:
    """Why the sampled values cannot bear on the claim, or ''."""
    lo, hi = _num(x.min()), _num(x.max())
    where = f"sampled {param}: {lo}–{hi}"
    if kind == "contains" and not x.min() <= v <= x.max():
        return f"no sampled model reaches {param} = {_num(v)} ({where})"
    if kind == "above" and v >= x.max():
        return f"no sampled model has {param} above {_num(v)} ({where})"
    if kind == "below" and v <= x.min():
        return f"no sampled model has {param} below {_num(v)} ({where})"
    if kind == "above" and v < x.min():
        return f"every sampled model has {param} above {_num(v)} ({where})"
    if kind == "below" and v > x.max():
        return f"every sampled model has {param} below {_num(v)} ({where})"
    return ""


def _cut(x, e, lo: float, hi: float, param: str, limits) -> str:
    """Why a range that runs into an end of the sampled values cannot show what it contains
    ('' when it does not, or when the space allows nothing beyond that end)."""
    lim_lo, lim_hi = limits if limits is not None else (-np.inf, np.inf)
    ends = []
    if lo <= x.min() + 1e-9 and x.min() > lim_lo + 1e-9:
        ends.append(("minimum", x.min(), "below"))
    if hi >= x.max() - 1e-9 and x.max() < lim_hi - 1e-9:
        ends.append(("maximum", x.max(), "above"))
    if not ends:
        return ""
    rho = stats.rank_correlation(x, e)["rho"]
    trend = "" if rho is None else f"; Spearman ρ(error, {param}) = {rho:.2f}"
    end, at, side = ends[0]
    return (f"the range runs to the sampled {end} {_num(at)}: the best {param} may lie "
            f"{side} what was sampled{trend}")


def _num(v: float):
    v = float(v)
    return int(v) if v.is_integer() else float(f"{v:.4g}")
