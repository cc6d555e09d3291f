"""Claims about which choices matter (dse.analysis.importance), as dse.method.claims judges
them. Pure.

    regnetx: wm matters                   wm's columns add to an additive model of every other
                                          parameter: its own Freedman–Lane permutation p,
                                          corrected with the experiment's other claims; a p
                                          that is not small never contradicts it
    regnetx: b does not matter within 0.02
                                          the upper end of b's total share's (1 − 2α)
                                          interval lies below 0.02 (holds), its lower end
                                          above 0.02 (contradicted); judged by the interval
    regnetx: lr and wd interact           the cells of lr × wd add to the additive model: the
                                          permutation p of this pair alone, corrected as above

Untestable when a named parameter does not vary among the population's finished models (or
is unknown), or the population has too few models.
"""

from __future__ import annotations

from dataclasses import dataclass

from dse.analysis import effects
from dse.analysis import importance as imp
from dse.errors import DseError

KINDS = ("matters", "negligible", "interact")


@dataclass(frozen=True)
class Judged:
    """What importance says about one claim: why it is untestable (`reason`), or the p of
    its test (matters, interact) or its verdict by interval (negligible), with the share as
    an effect and a line of detail."""

    reason: str = ""
    p: float = float("nan")
    verdict: str = ""
    test: str = ""
    effect: effects.Effect | None = None
    detail: str = ""


def judge(claim, pop, alpha: float, seed: int, permutations: int) -> Judged:
    """Judge an importance claim on its population's finished models (None: none)."""
    if pop is None or len(pop) == 0:
        return Judged(reason=f"{claim.a} has no finished models")
    try:
        cols, _ = imp.parameters(pop)
        named, constant = imp.parameters(pop, claim.params)
    except DseError as e:
        return Judged(reason=str(e).replace("params names", "the claim names"))
    if constant:
        return Judged(reason=f"{', '.join(constant)} takes a single value among the "
                             f"{len(pop)} {claim.a} models")
    cols = {**cols, **named}
    level = 1 - 2 * alpha
    try:
        got = imp.importance(cols, pop["error"].to_numpy(float), alpha=alpha, level=level,
                             seed=seed, n_perm=max(permutations, 19),
                             pairs=claim.kind == "interact", top=1,
                             pair_of=claim.params if claim.kind == "interact" else None)
    except DseError as e:
        return Judged(reason=str(e))
    others = f"beyond {', '.join(p for p in cols if p not in claim.params) or 'nothing'}"
    if claim.kind == "interact":
        pr = got.pairs[0]
        eff = _effect("interaction share", pr.share, level, got.n_boot)
        return Judged(p=pr.p, test=f"{got.test} test of the {pr.a} × {pr.b} cells beyond the "
                      f"additive model", effect=eff,
                      detail=f"{eff.text()} over {got.n} models, additive in {others}")
    s = got.share(claim.params[0])
    eff = _effect("total share", s.total, level, got.n_boot)
    line = (f"{eff.text()}; first-order {s.first.value:.3f} over {got.n} models, "
            f"{others}")
    if claim.kind == "matters":
        return Judged(p=s.p_raw, test=f"{got.test} test of {s.param} {others}", effect=eff,
                      detail=line)
    verdict = ("holds" if s.total.hi < claim.value else
               "contradicted" if s.total.lo > claim.value else "inconclusive")
    return Judged(verdict=verdict, test=f"{level:.0%} bootstrap interval of {s.param}'s total "
                  f"share against {claim.value:g}", effect=eff, detail=line)


def _effect(name: str, iv, level: float, n_boot: int) -> effects.Effect:
    return effects.Effect(name, iv.value, iv.lo, iv.hi, level, n_boot, "")
