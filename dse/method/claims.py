"""Claims about populations, judged with a test stated before the data and reported, never
enforced.

An experiment's `expect:` lists claims in words:

    anynetxe better than anynetxd         A has lower errors: one-sided KS test in that
                                          direction (Wilcoxon signed-rank when paired)
    anynetxd worse than anynetxe          the same claim, the other way round
    anynetxb same as anynetxa within 1    equivalence: the shift in error lies within ±1 point
                                          (two one-sided tests against the margin)
    regnetx at least as good as anynetxe  non-inferiority: A is not worse by the margin or more
    regnetx good d contains 20            the good range of d in A is narrower than chance
    regnetx good g above 1                (a permutation null) and holds 20 / lies above 1 /
                                          below (`below`)
    regnetx good d stable across regimes within 1
                                          the slope of the good range's centre against log2
                                          flops, less the slope the sampled designs alone
                                          give, lies within ±1 per doubling (its interval)
    regnetx good g increases with flops   the slope exceeds the sampling-induced one: errors
                                          permuted within each regime (decreases: falls short)
    regnetx ranks alike at epochs=2 and epochs=8 [above 0.5]
                                          the proxy recipe orders the models as the target:
                                          Spearman ρ over the models trained under both, its
                                          interval above the threshold (default 0.5)
    xc[b == 0.25] worse than xc[b == 1]   any A or B may be a sub-population SPACE[EXPR]
                                          (the models of SPACE for which EXPR holds)
    regnetx: wm matters                   which choices matter (dse.method.importanceclaims):
    regnetx: b does not matter within 0.02
    regnetx: lr and wd interact           permutation tests beyond the other parameters; a
                                          share's interval below the stated margin

Each claim gets one of four verdicts:
- holds: its test is significant at alpha after the family-wise correction over the
  experiment's claims (Holm by default);
- contradicted: the data show the opposite with the same correction (for a directional claim,
  the other direction at alpha/2: it was not the direction stated);
- inconclusive: neither; absence of evidence is never "holds";
- untestable: the data cannot bear on it (no finished models, a value no sampled model
  reaches, a population of which a quarter or more did not learn: dse.analysis.health),
  with the reason.
Every verdict carries an effect size with a bootstrap interval (the Hodges–Lehmann shift in
points; the good range for range claims), the raw and adjusted p. Two spaces that share
models by design (the same architectures, e.g. RegNetX and RegNetY drawn from one stream)
are compared as pairs. Pure: no torch, no files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.stats

from dse.analysis import effects, health, scaling, stats
from dse.errors import DseError
from dse.method import importanceclaims, rangeclaims
from dse.method.statements import (  # noqa: F401 (part of this API)
    FORMS,
    RANKS_ABOVE,
    TRENDS,
    Claim,
    parse_claim,
)

HOLDS, AGAINST, UNSURE, UNTESTABLE = "holds", "contradicted", "inconclusive", "untestable"
VERDICTS = (HOLDS, AGAINST, UNSURE, UNTESTABLE)
MIN_FOR_RANGE = rangeclaims.MIN_FOR_RANGE  # fewer finished models: a good range says nothing
MIN_PAIRS = 8       # fewer shared models than this: not a paired comparison
MARGIN = 1.0        # points of error: the default margin of "same as" and "at least as good as"


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict and its evidence: the test, its statistic, the raw p of the claim
    and of its opposite with their adjusted values (NaN where untested), the effect with its
    interval, the margin (points) of equivalence claims, the pairs of a paired comparison."""

    claim: str
    kind: str
    a: str
    b: str | None
    verdict: str
    test: str = ""
    statistic: float | list | None = None
    p: float | None = None
    p_adjusted: float | None = None
    p_against: float | None = None
    p_against_adjusted: float | None = None
    effect: effects.Effect | None = None
    margin: float | None = None
    pairs: int | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Evidence:
    """A claim's tests before the correction: p for it, p against it, and whether a
    significant p may make it hold (or contradict it), with why not."""

    verdict: Verdict
    p: float
    p_against: float
    may_hold: bool = True
    may_contradict: bool = True
    why_not: str = ""
    why_weak: str = ""   # said when the claim's own test is not significant


def one_sided(a, b, wa=None, wb=None, exact: bool = True) -> tuple[float, float]:
    """D+ = sup_e (F_a(e) − F_b(e)) and the p-value of "A's EDF lies above B's somewhere"
    (A has more low-error models) against "never above". Unweighted: scipy's ks_2samp
    (exact unless `exact` is False); weighted: the asymptotic law with Kish's effective
    sample sizes."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if wa is None and wb is None:
        r = scipy.stats.ks_2samp(a, b, alternative="greater", method="auto" if exact else "asymp")
        return float(r.statistic), float(r.pvalue)
    pts = np.concatenate([a, b])
    d = float(max(0.0, (stats.cdf(a, pts, wa) - stats.cdf(b, pts, wb)).max()))
    na = stats.effective_n(stats.weights(a, wa))
    nb = stats.effective_n(stats.weights(b, wb))
    en = na * nb / (na + nb)
    return d, float(min(1.0, np.exp(-2 * en * d * d)))


def detectable_d(na: float, nb: float, alpha: float = 0.05, two_sided: bool = True) -> float:
    """The smallest KS D significant at `alpha` for samples of na and nb: exact for whole
    sample sizes, the asymptotic law for effective (weighted) ones. A yardstick of what a
    comparison of this size can see."""
    if float(na).is_integer() and float(nb).is_integer():
        return effects.ks_critical(int(na), int(nb), alpha, two_sided)
    c = -np.log(alpha / 2 if two_sided else alpha)
    return float(np.sqrt(c * (na + nb) / (2 * na * nb)))


# ---- judging -------------------------------------------------------------------------------

def judge(claim: Claim, curves: dict, pops: dict | None = None, alpha: float = 0.05,
          repeats: int = 10_000, seed: int = 0, **options) -> Verdict:
    """Judge one claim on its own (no correction); see judge_all."""
    return judge_all([claim], curves, pops, alpha, repeats=repeats, seed=seed,
                     **{"correction": "none", **options})[0]


def judge_all(claims, curves: dict, pops: dict | None = None, alpha: float = 0.05,
              correction: str = "holm", margin: float = MARGIN, repeats: int = 10_000,
              seed: int = 0, boot: int = 10_000, permutations: int = 999,
              limits: dict | None = None, ranks: dict | None = None) -> list[Verdict]:
    """Judge an experiment's claims together. `curves` maps space → (errors, weights or None)
    as in stats.compare; `pops` space → its finished models (pairs, good ranges);
    `limits` (space, param) → (lo, hi) the space allows. `repeats`: bootstrap resamples of
    a good range; `boot`: of an effect's interval; `permutations`: shuffles of a range's
    null; `ranks` claim text → the dse.analysis.reruns.Fidelity of a "ranks alike" claim
    (or why there is none). The p of the claims (and of their opposites) are adjusted by
    `correction`; ranks claims are judged by their intervals alone."""
    pops, limits, ranks = pops or {}, limits or {}, ranks or {}
    found, trend = [], {}
    for i, c in enumerate(claims):
        if c.kind != "ranks" and (why := health.untrained(pops, _labels(c))):
            found.append(untestable(c, why))
        elif c.kind in TRENDS:
            found.append(_trend_claim(c, pops.get(c.a.label), alpha, seed, permutations))
        elif c.kind == "ranks":  # likewise
            trend[i] = ranks_claim(c, ranks.get(c.text, "its recipes were not read"), alpha)
            found.append(untestable(c, "ranks"))
        elif c.kind in importanceclaims.KINDS:  # "negligible" by its interval, like trends
            f, v = _importance_claim(c, pops.get(c.a.label), alpha, seed, permutations)
            found.append(f)
            trend.update({i: v} if v else {})
        elif c.b is not None:
            found.append(_pair_claim(c, curves, pops, alpha, c.margin or margin, boot, seed))
        else:
            found.append(_range_claim(c, pops.get(c.a.label), repeats, permutations, seed,
                                      limits.get((c.a.label, c.param))))
    p_for = effects.adjust([f.p for f in found], correction)
    p_vs = effects.adjust([f.p_against for f in found], correction)
    return [trend.get(i) or _decide(f, pf, pv, alpha, correction)
            for i, (f, pf, pv) in enumerate(zip(found, p_for, p_vs))]


def _importance_claim(c: Claim, pop, alpha, seed, permutations):
    """Evidence about which choices matter (dse.method.importanceclaims), and the verdict
    of a claim judged by its interval alone (None for the others)."""
    r = importanceclaims.judge(c, pop, alpha, seed, permutations)
    if r.reason:
        return untestable(c, r.reason), None
    if r.verdict:
        return untestable(c, "interval"), Verdict(
            c.text, c.kind, c.a.label, None, r.verdict, test=r.test, effect=r.effect,
            margin=c.value, detail=r.detail)
    return evidence(c, r.p, np.nan, may_contradict=False, test=r.test, effect=r.effect,
                    detail=r.detail), None


def _trend_claim(c: Claim, pop, alpha: float, seed: int, permutations: int) -> _Evidence:
    """Evidence about a trend across regimes (dse.analysis.scaling): the slope of the good
    range's centre against log2 flops in excess of the slope of the sampled medians, which
    the flops windows move without the errors. `increases` (`decreases`) rests on the
    bootstrap p of a rise (fall) of the excess and is contradicted only by the other
    direction at alpha/2, both corrected with the other claims; `stable ... within T` holds
    when the excess lies within ±T (two one-sided bootstrap tests) and is contradicted by
    a trend either way; without a tolerance, no detected trend alone is inconclusive."""
    test = "excess of the good range's slope over the sampled medians'"
    if pop is None or len(pop) == 0:
        return untestable(c, f"{c.a} has no finished models")
    try:
        _, row = scaling.judge_trend(pop, c.param, c.kind, 1 - alpha, seed=seed,
                                     permutations=permutations)
    except DseError as e:
        return untestable(c, str(e))
    s, ex, sh = row["slope"], row["excess"], row["shuffled"]
    up, down = ex["p_up"], ex["p_down"]
    gate = {}
    if c.kind == "stable":
        tol, reps = c.margin, row["excess_reps"]
        p = max(np.mean(reps >= tol), np.mean(reps <= -tol)) if tol is not None else np.nan
        p_vs = min(1.0, 2 * min(up, down))
        test += f", within ±{tol:g}" if tol is not None else ""
        if tol is None:
            gate = dict(may_hold=False, why_not="no trend detected, which alone does not "
                        "show stability (state a tolerance: `within T`)")
    else:
        rise = c.kind == "increases"
        p, p_vs = (up, min(1.0, 2 * down)) if rise else (down, min(1.0, 2 * up))
        test += f", one-sided ({'rise' if rise else 'fall'})"
    eff = effects.Effect("excess slope", ex["value"], ex["lo"], ex["hi"], 1 - alpha,
                         len(row["excess_reps"]), s["unit"])
    centres = ", ".join(f"{r['name']}: {r['median']:.4g} (sampled {r['sampled']:.4g})"
                        for r in row["regimes"])
    read = "no trend" if row["trend"] == scaling.STABLE else row["trend"]
    detail = (f"{read} beyond the sampled medians: excess {ex['value']:.3g} "
              f"[{ex['lo']:.3g}, {ex['hi']:.3g}] {s['unit']} = slope {s['value']:.3g} "
              f"less {ex['sampled_slope']:.3g} of the sampled medians; p of a rise "
              f"{_p(up)}, of a fall {_p(down)} (errors shuffled within regimes: "
              f"{_p(sh['p_up'])}, {_p(sh['p_down'])}); centres {centres}")
    return evidence(c, p, p_vs, test=test, statistic=[ex["lo"], ex["hi"]], effect=eff,
                    margin=c.margin, detail=detail, **gate)


def ranks_claim(c: Claim, fid, alpha: float) -> Verdict:
    """'A ranks alike at P and T above R': holds when the lower end of Spearman ρ's
    (1 − alpha) bootstrap interval over the models trained under both recipes lies above R,
    contradicted when its upper end lies below R, inconclusive otherwise; untestable with
    fewer than 5 such models. `fid` is a Fidelity (its interval at 1 − alpha) or a reason."""
    base = dict(claim=c.text, kind=c.kind, a=c.a.label, b=None, margin=c.value)
    if isinstance(fid, str):
        return Verdict(**base, verdict=UNTESTABLE, detail=fid)
    rho = fid.spearman
    eff = effects.Effect("Spearman ρ", rho.value, rho.lo, rho.hi, fid.level, fid.n_boot, "")
    verdict = HOLDS if rho.lo > c.value else AGAINST if rho.hi < c.value else UNSURE
    detail = (f"ρ = {rho.value:.2f} ({fid.level:.0%} interval {rho.lo:.2f} to {rho.hi:.2f}) "
              f"over {fid.pairs} models, threshold {c.value:g}; Kendall τ = "
              f"{fid.kendall.value:.2f}; top-{fid.top_k.k} overlap {fid.top_k.overlap:.0%} "
              f"(chance {fid.top_k.expected:.0%}); regret {fid.regret:.2f} points")
    return Verdict(**base, verdict=verdict, test="Spearman ρ, bootstrap interval",
                   statistic=rho.value, effect=eff, pairs=fid.pairs, detail=detail)


def _labels(claim: Claim) -> tuple[str, str | None]:
    """The names of the claim's populations, as the curves and populations are keyed."""
    return claim.a.label, None if claim.b is None else claim.b.label


def untestable(claim: Claim, reason: str) -> _Evidence:
    """Evidence that cannot bear on the claim, with the reason."""
    v = Verdict(claim.text, claim.kind, *_labels(claim), UNTESTABLE, detail=reason)
    return _Evidence(v, np.nan, np.nan, False, False)


def evidence(claim: Claim, p: float, p_against: float, **fields) -> _Evidence:
    """The tests of a claim (fields of Verdict, and may_hold / may_contradict / why_not)."""
    gates = {k: fields.pop(k) for k in ("may_hold", "may_contradict", "why_not", "why_weak")
             if k in fields}
    v = Verdict(claim.text, claim.kind, *_labels(claim), UNSURE, **fields)
    return _Evidence(v, float(p), float(p_against), **gates)


def _decide(f: _Evidence, pf: float, pv: float, alpha: float, correction: str) -> Verdict:
    """The verdict from the adjusted p of the claim (pf) and of its opposite (pv)."""
    v = f.verdict
    if v.verdict == UNTESTABLE:
        return v
    holds = f.may_hold and pf < alpha
    against = f.may_contradict and pv < alpha
    verdict = HOLDS if holds and not against else AGAINST if against and not holds else UNSURE
    note = "; both directions significant: the EDFs cross" if holds and against else ""
    if verdict == UNSURE:
        note += "".join(f"; {w}" for w in (f.why_weak if pf >= alpha else "", f.why_not) if w)
    adj = "" if correction == "none" else f", {correction} {_p(pf)}"
    head = f"{v.test}: p = {_p(f.p)}{adj}"
    return replace(v, verdict=verdict, p=f.p, p_adjusted=float(pf), p_against=f.p_against,
                   p_against_adjusted=float(pv), detail=f"{head}; {v.detail}{note}")


def _p(p: float) -> str:
    return f"{p:.3g}" if np.isfinite(p) else "—"


def _range_claim(c: Claim, pop, repeats, permutations, seed, limits) -> _Evidence:
    """Evidence about a good range of one population (dse.method.rangeclaims)."""
    r = rangeclaims.judge_range(c.kind, c.param, c.value, c.a.label, pop, repeats, permutations,
                                seed, limits)
    if r.reason:
        return untestable(c, r.reason)
    return evidence(c, r.p, r.p, may_hold=r.may_hold, may_contradict=r.may_contradict,
                    why_not=r.why_not, test=r.test, statistic=r.statistic, effect=r.effect,
                    detail=r.detail, why_weak="the range is not narrower than chance: it "
                    "describes the best few models, not a trend")


# ---- two populations -----------------------------------------------------------------------

def pairs(pops: dict, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the models A and B share by architecture (the same stages, widths,
    bottlenecks and groups; SE aside), matched: (errors in A, errors in B)."""
    arch = {"ds", "ws", "bs", "gs", "error"}
    if a not in pops or b not in pops or not all(arch <= set(pops[s]) for s in (a, b)):
        return np.zeros(0), np.zeros(0)
    key = lambda r: (tuple(r.ds), tuple(r.ws), tuple(r.bs), tuple(r.gs))  # noqa: E731
    in_b = {key(r): r.error for r in pops[b].itertuples()}
    got = [(r.error, in_b[key(r)]) for r in pops[a].itertuples() if key(r) in in_b]
    ea, eb = (np.array(x, dtype=float) for x in zip(*got)) if got else (np.zeros(0),) * 2
    return ea, eb


def _pair_claim(c: Claim, curves, pops, alpha, margin, boot, seed) -> _Evidence:
    """Evidence about two populations: paired when they share enough models, else two
    independent samples."""
    a, b = _labels(c)
    for s in (a, b):
        if s not in curves or len(curves[s][0]) == 0:
            return untestable(c, f"{s} has no finished models")
    (ea, wa), (eb, wb) = curves[a], curves[b]
    pa, pb = pairs(pops, a, b) if wa is None and wb is None else (np.zeros(0),) * 2
    if len(pa) >= max(MIN_PAIRS, min(len(ea), len(eb)) / 2):
        return _paired(c, pa, pb, alpha, margin, boot, seed)
    note = (f"; {len(pa)} models appear in both (two-sample tests assume none)"
            if len(pa) else "")
    return _unpaired(c, ea, wa, eb, wb, alpha, margin, boot, seed, note)


def _unpaired(c, ea, wa, eb, wb, alpha, margin, boot, seed, note) -> _Evidence:
    eff = effects.shift(ea, eb, wa, wb, boot, seed=seed)
    if wa is None and wb is None:
        below = lambda d: effects.shift_p(ea, eb, d, "below")  # noqa: E731
        above = lambda d: effects.shift_p(ea, eb, d, "above")  # noqa: E731
        interval = lambda: effects.rank_interval(ea, eb, alpha)  # noqa: E731
        na, nb, rank = len(ea), len(eb), "Mann–Whitney"
    else:
        reps = effects.weighted_shift_reps(ea, eb, wa, wb, boot, seed)
        below = lambda d: effects.boot_p(reps, d, "below")  # noqa: E731
        above = lambda d: effects.boot_p(reps, d, "above")  # noqa: E731
        interval = lambda: tuple(np.quantile(reps, [alpha, 1 - alpha]))  # noqa: E731
        na, nb = stats.effective_n(wa), stats.effective_n(wb)
        rank = "bootstrap"
    if c.kind == "better":
        d, p = one_sided(ea, eb, wa, wb)
        d_opp, p_opp = one_sided(eb, ea, wb, wa)
        crit = detectable_d(na, nb, alpha, two_sided=False)
        detail = (f"{eff.text()}; the other way D+ = {d_opp:.3f}, p = {_p(p_opp)} one-sided "
                  f"({_p(min(1.0, 2 * p_opp))} for a direction not stated); this size "
                  f"detects D+ ≥ {crit:.3f}{note}")
        return evidence(c, p, min(1.0, 2 * p_opp), test=f"one-sided KS D+ = {d:.3f}",
                        statistic=d, effect=eff, detail=detail)
    d2, p2 = stats.ks(ea, eb, wa, wb)
    crit = detectable_d(na, nb, alpha, two_sided=True)
    ks = f"two-sided KS D = {d2:.3f}, p = {_p(p2)} (this size detects D ≥ {crit:.3f})"
    return _margin_claim(c, eff, below, above, interval(), margin, f"{rank} tests",
                         ks + note, d2, None)


def _paired(c, pa, pb, alpha, margin, boot, seed) -> _Evidence:
    eff = effects.paired_shift(pa - pb, boot, seed=seed)
    below = lambda d: effects.shift_p(pa, pb, d, "below", paired=True)  # noqa: E731
    above = lambda d: effects.shift_p(pa, pb, d, "above", paired=True)  # noqa: E731
    what = (f"paired: {len(pa)} models have the same architecture in both "
            f"(Wilcoxon signed-rank)")
    if c.kind == "better":
        p, p_opp = below(0.0), above(0.0)
        detail = (f"{eff.text()}; the other way p = {_p(p_opp)} one-sided "
                  f"({_p(min(1.0, 2 * p_opp))} for a direction not stated); {what}")
        return evidence(c, p, min(1.0, 2 * p_opp), test="one-sided Wilcoxon signed-rank",
                        effect=eff, pairs=len(pa), detail=detail)
    return _margin_claim(c, eff, below, above, effects.rank_interval(pa, pb, alpha, True),
                         margin, "Wilcoxon tests", what, None, len(pa))


def _margin_claim(c, eff, below, above, interval, margin, tests, extra, statistic,
                  n_pairs) -> _Evidence:
    """Equivalence (same) or non-inferiority (at least as good) within ±margin points;
    `interval`: the shifts the tests do not reject at alpha each side, which gives the
    smallest margin the data establish."""
    lo, hi = interval
    if c.kind == "same":
        p = max(below(margin), above(-margin))
        p_vs = min(1.0, 2 * min(above(margin), below(-margin)))
        need = max(-lo, hi, 0.0)
        test = f"equivalence within ±{_points(margin)} (two one-sided {tests})"
    else:
        p, p_vs = below(margin), above(margin)
        need = max(hi, 0.0)
        test = f"non-inferiority by {_points(margin)} (one-sided {tests})"
    smallest = (f"these data establish it for a margin above {need:.2f} points"
                if np.isfinite(need) else "too few models to establish it at any margin")
    return evidence(c, p, p_vs, test=test, statistic=statistic, effect=eff, margin=margin,
                    pairs=n_pairs, detail=f"{eff.text()}; {smallest}; {extra}")


def _points(m: float) -> str:
    return f"{m:g} point{'' if m == 1 else 's'}"
