"""Do conclusions carry from one setting to another (NDS App. B: CIFAR → ImageNet; here, say,
Fashion-MNIST → CIFAR-10)? `transfer` reads two stores and, for the spaces both hold, says
whether the spaces rank alike (Spearman's ρ of their median errors), whether each parameter's
good range agrees (the two 95% ranges overlap), and how an experiment's claims fare in each.
Pure: no torch, no writes.
"""

from __future__ import annotations

import numpy as np

from dse.analysis import population, stats
from dse.analysis.population import Selection
from dse.errors import DseError
from dse.method import claims as expect
from dse.store.core import Store


def transfer(a: Store, b: Store, selection: Selection = Selection(), exp=None,
             repeats: int = 10_000, seed: int = 0) -> dict:
    """The comparison of stores a and b over the spaces both hold with finished models:
    per space n, median and good ranges in each; the rank correlation of the medians; and
    the verdicts of `exp`'s claims (an Experiment) judged on each store."""
    common = sorted(set(a.spaces()) & set(b.spaces()))
    if not common:
        raise DseError(f"stores {a} and {b} hold no space in common ({a} holds "
                       f"{', '.join(a.spaces()) or 'none'}; {b} holds "
                       f"{', '.join(b.spaces()) or 'none'})")
    frames = {s: _frame(s, common, selection) for s in (a, b)}
    ready = [s for s in common
             if all(stats.counts(f, s)["finished"] > 0 for f in frames.values())]
    rows = [_space(s, frames[a], frames[b], repeats, seed) for s in ready]
    rho = stats.rank_correlation([r["a"]["median"] for r in rows],
                                    [r["b"]["median"] for r in rows])
    out = dict(a=str(a), b=str(b), spaces=rows, rank_correlation=rho,
               left_out=[s for s in common if s not in ready], selection=selection.to_json())
    out["claims"] = _claims(exp, frames[a], frames[b], repeats, seed) if exp else []
    return out


def _frame(store: Store, spaces: list[str], selection: Selection):
    """The spaces' models in one store as the selection reads them (dse.analysis.population;
    a space without the chosen regime is left out)."""
    return population.load(spaces, selection, home=store, every_regime=True).frame


def _space(space: str, da, db, repeats: int, seed: int) -> dict:
    """One space in both stores: n, median, and every parameter's good range in each."""
    pa, pb = stats.population(da, space), stats.population(db, space)
    ta = {t["param"]: t for t in stats.trends(pa, repeats=repeats, seed=seed)}
    tb = {t["param"]: t for t in stats.trends(pb, repeats=repeats, seed=seed)}
    ranges = {p: dict(a=[ta[p]["lo"], ta[p]["hi"]], b=[tb[p]["lo"], tb[p]["hi"]],
                      agree=bool(ta[p]["lo"] <= tb[p]["hi"] and tb[p]["lo"] <= ta[p]["hi"]))
              for p in ta if p in tb}
    d, p = stats.ks(pa["error"], pb["error"])
    return dict(space=space, a=dict(n=len(pa), median=float(np.median(pa["error"]))),
                b=dict(n=len(pb), median=float(np.median(pb["error"]))), ks_D=d, ks_p=p,
                ranges=ranges, agree=sum(r["agree"] for r in ranges.values()))


def _claims(exp, da, db, repeats: int, seed: int) -> list[dict]:
    """Each claim of the experiment judged on store a and on store b."""
    verdicts = []
    for df in (da, db):
        ready = [s for s in dict.fromkeys(df["space"]) if stats.counts(df, s)["finished"]]
        cmp = stats.compare(df, ready) if ready else None
        pops = {s: stats.population(df, s) for s in ready}
        verdicts.append(expect.judge_all(exp.claims, cmp.curves if cmp else {}, pops,
                                         exp.alpha, exp.correction, exp.margin, repeats, seed))
    return [dict(claim=x.claim, a=x.verdict, b=y.verdict, a_detail=x.detail,
                 b_detail=y.detail) for x, y in zip(*verdicts)]
