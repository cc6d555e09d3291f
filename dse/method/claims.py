"""Claims about populations, checked with a test and reported, never enforced.

An experiment's `expect:` lists claims in words:

    anynetxe better than anynetxd        one-sided KS test: A's error EDF lies above B's
    anynetxd worse than anynetxe         the same test, the other way round
    anynetxb same as anynetxa            two-sided KS test finds no difference
    regnetx at least as good as anynetxe one-sided KS test finds A no worse than B
    regnetx good d contains 20           the bootstrap good range of d in A holds 20
    regnetx good g above 1               ... lies above 1 (below: under it)
    regnetx good d stable across regimes the good range's centre shows no trend with flops
    regnetx good g increases with flops  ... rises with flops (decreases: falls); the slope's
                                         bootstrap interval over the regimes (analysis.regimes)

Each is judged "holds", "does not hold" or "inconclusive" with its statistic and p-value (KS
D and p; the good range for ranges). Pure: no torch, no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import stats

from dse.analysis import regimes
from dse.analysis import stats as analysis
from dse.errors import DseError

HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
FORMS = ("A better than B", "A worse than B", "A same as B", "A at least as good as B",
         "A good PARAM contains|above|below VALUE",
         "A good PARAM stable across regimes|increases with flops|decreases with flops")
_PAIR = re.compile(r"^\s*(\S+)\s+(better than|worse than|same as|at least as good as)\s+(\S+)"
                   r"\s*$", re.I)
_RANGE = re.compile(r"^\s*(\S+)\s+good\s+(\S+)\s+(contains|above|below)\s+(\S+)\s*$", re.I)
_TREND = re.compile(r"^\s*(\S+)\s+good\s+(\S+)\s+(stable across regimes|increases with flops|"
                    r"decreases with flops)\s*$", re.I)
MIN_FOR_RANGE = 8  # fewer finished models than this: a good range says nothing
TRENDS = ("stable", "increases", "decreases")


@dataclass(frozen=True)
class Claim:
    text: str
    kind: str          # better | same | at_least | contains | above | below | stable | increases
    #                    | decreases
    a: str
    b: str | None = None
    param: str | None = None
    value: float | None = None


def parse_claim(text: str) -> Claim:
    """The Claim a sentence states; a DseError listing the forms otherwise."""
    m = _PAIR.match(text)
    if m:
        a, rel, b = m.group(1), m.group(2).lower(), m.group(3)
        if rel == "worse than":
            return Claim(text, "better", b, a)
        kind = {"better than": "better", "same as": "same", "at least as good as": "at_least"}
        return Claim(text, kind[rel], a, b)
    m = _TREND.match(text)
    if m:
        return Claim(text, m.group(3).split()[0].lower(), m.group(1), param=m.group(2))
    m = _RANGE.match(text)
    if m:
        try:
            value = float(m.group(4))
        except ValueError:
            raise DseError(f"{m.group(4)!r} in {text!r} is not a number") from None
        return Claim(text, m.group(3).lower(), m.group(1), param=m.group(2), value=value)
    raise DseError(f"cannot read the claim {text!r}; the forms are: {'; '.join(FORMS)}")


def one_sided(a, b, wa=None, wb=None, exact: bool = True) -> tuple[float, float]:
    """D+ = sup_e (F_a(e) − F_b(e)) and the p-value of "A's EDF lies above B's somewhere"
    (A has more low-error models) against "never above". Unweighted: scipy's ks_2samp
    (exact unless `exact` is False); weighted: the asymptotic law with Kish's effective
    sample sizes."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if wa is None and wb is None:
        r = stats.ks_2samp(a, b, alternative="greater", method="auto" if exact else "asymp")
        return float(r.statistic), float(r.pvalue)
    pts = np.concatenate([a, b])
    d = float(max(0.0, (analysis.cdf(a, pts, wa) - analysis.cdf(b, pts, wb)).max()))
    na = analysis.effective_n(analysis.weights(a, wa))
    nb = analysis.effective_n(analysis.weights(b, wb))
    en = na * nb / (na + nb)
    return d, float(min(1.0, np.exp(-2 * en * d * d)))


def detectable_d(na: float, nb: float, alpha: float = 0.05) -> float:
    """The smallest one-sided KS D significant at `alpha` for samples of na and nb
    (asymptotic): a yardstick of what a comparison of this size can see."""
    return float(np.sqrt(-np.log(alpha) * (na + nb) / (2 * na * nb)))


def judge(claim: Claim, curves: dict, pops: dict | None = None, alpha: float = 0.05,
          repeats: int = 10_000, seed: int = 0) -> dict:
    """Judge one claim. `curves` maps space → (errors, weights or None) as in
    analysis.compare; `pops` maps space → its finished models (for good-range claims)."""
    out = dict(claim=claim.text, kind=claim.kind, a=claim.a, b=claim.b, statistic=None,
               p=None, verdict=UNSURE, detail="")
    if claim.b is not None:
        for s in (claim.a, claim.b):
            if s not in curves or len(curves[s][0]) == 0:
                out["detail"] = f"{s} has no finished models"
                return out
        (ea, wa), (eb, wb) = curves[claim.a], curves[claim.b]
        na = len(ea) if wa is None else analysis.effective_n(wa)
        nb = len(eb) if wb is None else analysis.effective_n(wb)
        need = detectable_d(na, nb, alpha)
        d_better, p_better = one_sided(ea, eb, wa, wb)
        d_worse, p_worse = one_sided(eb, ea, wb, wa)
        if claim.kind == "same":
            d, p = analysis.ks(ea, eb, wa, wb)
            verdict = FAILS if p < alpha else HOLDS
            detail = (f"two-sided KS D = {d:.3f}, p = {p:.3g}; at this size only D ≥ "
                      f"{need:.2f} would be detected")
        elif claim.kind == "better":
            d, p = d_better, p_better
            verdict = HOLDS if p < alpha else FAILS if p_worse < alpha else UNSURE
            detail = (f"one-sided KS D+ = {d:.3f}, p = {p:.3g} ({claim.a} better); "
                      f"other way D+ = {d_worse:.3f}, p = {p_worse:.3g}")
        else:  # at least as good: not significantly worse
            d, p = d_worse, p_worse
            verdict = FAILS if p < alpha else HOLDS
            detail = (f"one-sided KS D+ = {d:.3f}, p = {p:.3g} ({claim.a} worse); "
                      f"{claim.a} better: D+ = {d_better:.3f}, p = {p_better:.3g}")
        out.update(statistic=d, p=p, verdict=verdict, detail=detail)
        return out
    pop = (pops or {}).get(claim.a)
    if claim.kind in TRENDS:
        return _judge_trend(claim, pop, out, alpha, seed)
    if pop is None or len(pop) < MIN_FOR_RANGE:
        out["detail"] = (f"{claim.a} has {0 if pop is None else len(pop)} finished models; a "
                         f"good range needs at least {MIN_FOR_RANGE}")
        return out
    fn = analysis.param_table(pop["kind"].iloc[0], int(pop["ds"].map(len).max()))[claim.param][0]
    x = np.asarray(fn(pop), dtype=float)
    r = analysis.bootstrap_range(x, pop["error"].to_numpy(dtype=float), repeats=repeats,
                                 rng=seed)
    lo, hi, v = r["lo"], r["hi"], claim.value
    ok = {"contains": lo <= v <= hi, "above": lo > v, "below": hi < v}[claim.kind]
    out.update(statistic=[lo, hi], verdict=HOLDS if ok else FAILS,
               detail=f"95% good range of {claim.param}: [{lo:.4g}, {hi:.4g}] "
                      f"(median {r['median']:.4g}, best model {r['best']:.4g})")
    return out


def _judge_trend(claim: Claim, pop, out: dict, alpha: float, seed: int) -> dict:
    """A trend claim: the slope of the good range's centre against log flops over the
    regimes, with its 1 − α bootstrap interval (dse.analysis.regimes). `stable` holds when
    no trend is detected; `increases` (`decreases`) holds when the interval lies above
    (below) 0, does not hold when it lies on the other side, and is inconclusive otherwise."""
    if pop is None or len(pop) == 0:
        out["detail"] = f"{claim.a} has no finished models"
        return out
    try:
        _, row = regimes.judge_trend(pop, claim.param, claim.kind, 1 - alpha, seed=seed)
    except DseError as e:
        out["detail"] = str(e)
        return out
    s, trend = row["slope"], row["trend"]
    if claim.kind == "stable":
        verdict = HOLDS if trend == regimes.STABLE else FAILS
    else:
        want = regimes.UP if claim.kind == "increases" else regimes.DOWN
        verdict = HOLDS if trend == want else UNSURE if trend == regimes.STABLE else FAILS
    centres = ", ".join(f"{r['name']}: {r['median']:.4g}" for r in row["regimes"])
    out.update(statistic=[s["lo"], s["hi"]], verdict=verdict,
               detail=f"{trend}: slope of the good range's median {s['value']:.3g} "
                      f"[{s['lo']:.3g}, {s['hi']:.3g}] {s['unit']} ({centres})")
    return out
