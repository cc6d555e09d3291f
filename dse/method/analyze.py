"""The analyze stage of an experiment: the EDF comparison, a table per space with the KS test
against the space before it, the claims' verdicts, fit-linear and trends where asked, written
under <store>/experiments/<name>/ (summary.json, edf.png, edf_steps.png, report.html).
No torch here."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from dse.analysis import effects, health, population, scaling, stats
from dse.analysis.population import Selection
from dse.errors import DseError
from dse.files import write_atomic, write_json, writing
from dse.method import claims as expect
from dse.method import looks, refine, stages
from dse.method.experiment import Experiment
from dse.space import regimes as flop_regimes
from dse.store.core import Store
from dse.store.recipes import Pick
from dse.system import stamp


def analyze(exp: Experiment, store: Store, repeats: int = 10_000,
            pick: Pick | None = None) -> dict:
    """Every analysis of the experiment, over the results `pick` names (default: the
    recipe with the most results, seeds averaged); writes summary.json, the figures and the
    report under the experiment's directory and returns the summary."""
    store = Store.existing(store)
    pick = pick or Pick()
    chain = refine.read_chain(exp, store)
    names = list(dict.fromkeys([*exp.spaces, *(c.space for c in chain if c.space)]))
    df = population.load(names, Selection(pick=pick), home=store).frame
    ready = [s for s in names if stats.counts(df, s)["finished"] > 0]
    out = dict(experiment=exp.name, store=str(store), dataset=exp.dataset, n=exp.n,
               recipe=population.recipe_notes(df, pick), pick=pick.to_json(),
               alpha=exp.alpha, correction=exp.correction, margin=exp.margin, spaces=[],
               claims=[], fit_linear={}, trends={},
               refine=[asdict(c) for c in chain], files={}, finished_at=stamp())
    d = store.experiment_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    if not ready:
        out["spaces"] = [dict(space=s, **stats.counts(df, s)) for s in names]
        out["claims"] = _claims(exp, {}, {}, repeats, fidelities(exp, store))
        _with_rounds(exp, store, out)
        write_json(store.summary_path(exp.name), out)
        return out
    cmp = stats.compare(df, ready, exp.analyses.normalize, exp.analyses.bins)
    pops = {s: stats.population(df, s) for s in ready}
    out["spaces"] = _space_rows(df, names, cmp, pops, repeats, exp.seed)
    curves, claim_pops = _claim_populations(exp, store, names, df, ready, cmp, pops, pick)
    out["claims"] = _claims(exp, curves, claim_pops, repeats, fidelities(exp, store))
    _with_rounds(exp, store, out)
    with store.fit_cache() as fits:  # kept when the outputs are written
        figs = _figures(exp, cmp, ready, pops, out, repeats, fits)
        _write_outputs(exp, store, out, figs)
    return out


def _with_rounds(exp: Experiment, store: Store, out: dict) -> None:
    """In an experiment in rounds, the claims' verdicts are those of the looks
    (dse.method.looks), and the summary lists the looks."""
    if not exp.rounds:
        return
    state = looks.read_state(exp, store)
    out["claims"] = looks.verdicts(out["claims"], state)
    out["rounds"] = state or dict(schedule=looks.schedule(exp).to_json(), looks=[],
                                  stopped=None)


def evidence(exp: Experiment, store: Store, n: int, pick: Pick | None = None,
             repeats: int = 10_000, order: str = "sample_index", claims=None) -> list:
    """The verdicts of `claims` (default: all the experiment's), each on its own (no
    correction: a claim's verdict does not depend on the others judged), over the first `n`
    models of each population of this store in sampling order (`order` "finished_at": the first n to
    finish, for a replay of a finished run; populations of other stores as they are): one
    look of an experiment in rounds (dse.method.rounds)."""
    ops = list(dict.fromkeys([*map(population.Operand, exp.spaces),
                              *(op for c in exp.claims for op in c.operands)]))
    df = population.load(ops, Selection(pick=pick or Pick()), home=store,
                         base=exp.path.parent).frame
    cut = {}  # each space of this store: the `order` value of its n-th model
    for s in exp.spaces:
        v = df.loc[df["space"] == s, order].sort_values(kind="stable")
        cut[s] = v.iloc[n - 1] if len(v) >= n else None
    keep = np.ones(len(df), bool)
    for op in (op for op in ops if op.store is None and cut.get(op.space) is not None):
        rows = (df["space"] == op.label).to_numpy()
        keep &= ~rows | (df[order] <= cut[op.space]).to_numpy()
    df = df[keep]
    labels = list(dict.fromkeys(op.label for op in ops))
    ready = [s for s in labels if stats.counts(df, s)["finished"] > 0]
    curves, pops = {}, {}
    if ready:
        curves = stats.compare(df, ready, exp.analyses.normalize, exp.analyses.bins).curves
        pops = {s: stats.population(df, s) for s in ready}
    return expect.judge_all(exp.claims if claims is None else claims, curves, pops, exp.alpha,
                            "none", exp.margin, repeats, exp.seed, limits=_limits(exp))


def _claim_populations(exp: Experiment, store: Store, names: list[str], df, ready: list[str],
                       cmp, pops: dict, pick: Pick):
    """The curves and populations the claims read: the experiment's spaces, and the other
    populations its claims name (SPACE[EXPR], SPACE@STORE, SPACE@STORE[EXPR]), read by
    dse.analysis.population with the experiment's spaces (so that the recipe is chosen as
    for them) and compared with them over a common normalization when it has one."""
    extra = list(dict.fromkeys(op for c in exp.claims for op in c.operands
                               if op.label not in names))
    if not extra:
        return cmp.curves, pops
    read = population.load([*names, *extra], Selection(pick=pick), home=store,
                           base=exp.path.parent)
    ext = read.frame[read.frame["space"].isin([op.label for op in extra])]
    done = [op.label for op in extra if stats.counts(ext, op.label)["finished"] > 0]
    both = pd.concat([df, ext], ignore_index=True)
    cmp = stats.compare(both, ready + done, exp.analyses.normalize, exp.analyses.bins)
    return cmp.curves, {**pops, **{s: stats.population(ext, s) for s in done}}


def _claims(exp: Experiment, curves: dict, pops: dict, repeats: int,
            ranks: dict | None = None) -> list[dict]:
    """The verdicts of the experiment's claims, corrected together."""
    found = expect.judge_all(exp.claims, curves, pops, exp.alpha, exp.correction, exp.margin,
                             repeats, exp.seed, limits=_limits(exp), ranks=ranks)
    return [v.to_json() for v in found]


def fidelities(exp: Experiment, store: Store) -> dict:
    """claim text → the Fidelity of each "ranks alike" claim (its interval at 1 − alpha)
    over the models promoted at random (those the experiment's `promote: top` chose as the
    proxy's best are a selected sample, left out when 5 or more others remain), or why it
    cannot be judged (fewer than 5 models trained under both recipes)."""
    from dse.analysis import reruns as fidelity

    out = {}
    top = sum(o.top or 0 for o in exp.promotes)  # the proxy's best, promoted by selection
    for c in (c for c in exp.claims if c.kind == "ranks"):
        try:
            picks = [Pick(r) for r in c.recipes]
            _, _, both = population.paired(c.a, picks, home=store, base=exp.path.parent)
            at = store if c.a.store is None else Store.existing(
                population.near(exp.path.parent, c.a.store))
            chosen, _, _ = population.promoted(at, c.a.space, picks[0], both, top)
            if (~chosen).sum() >= fidelity.MIN_PAIRS:  # the pairs promoted at random
                both = both[~chosen]
            out[c.text] = fidelity.fidelity(both["error_x"].to_numpy(float),
                                            both["error_y"].to_numpy(float),
                                            level=1 - exp.alpha, seed=exp.seed)
        except DseError as e:
            out[c.text] = str(e)
    return out


def _limits(exp: Experiment) -> dict:
    """(space, param) → the (lo, hi) its definition allows, for the range claims' params
    that are parameters of the space (per stage for AnyNet)."""
    out = {}
    for c in (c for c in exp.claims if c.param is not None and c.a.store is None):
        space = stages.load_space(exp, c.a.space)
        key = c.param.rstrip("0123456789") if space.kind == "anynet" else c.param
        key = {"w_max": "w"}.get(key, key)
        if key in space.params and c.param != "depth":
            v = space.params[key].values
            out[(c.a.label, c.param)] = (float(v.min()), float(v.max()))
    return out


def _space_rows(df, names: list[str], cmp, pops: dict, repeats: int = 10_000,
                seed: int = 0) -> list[dict]:
    """Per space: its counts, how many finished models did not learn, summary, the KS tests
    (two-sided, and one-sided each way) against the space before it, the Hodges–Lehmann
    shift from it (points, with a bootstrap 95% interval), and how many models the two share
    by architecture."""
    rows, prev = [], None
    for s in names:
        c = stats.counts(df, s)
        row = dict(space=s, sampled=c["sampled"], finished=c["finished"],
                   diverged=c["diverged"], failed=c["failed"])
        if s in pops:  # training health: how many finished models did not learn
            h = health.health(pops[s])
            row.update(untrained=h.untrained, untrained_share=h.share,
                       median_train_loss=h.median_loss, chance_loss=h.chance_loss)
        if s in cmp.spaces:
            row.update({k: cmp.spaces[s][k] for k in ("n", "min", "median", "mean")})
            if prev is not None:
                (ea, wa), (eb, wb) = cmp.curves[s], cmp.curves[prev]
                dd, p = stats.ks(ea, eb, wa, wb)
                _, p_better = expect.one_sided(ea, eb, wa, wb)
                _, p_worse = expect.one_sided(eb, ea, wb, wa)
                eff = effects.shift(ea, eb, wa, wb, repeats, seed=seed)
                shared = len(expect.pairs(pops, s, prev)[0])
                row.update(vs=prev, ks_D=dd, ks_p=p, p_better=p_better, p_worse=p_worse,
                           shift=eff.estimate, shift_lo=eff.lo, shift_hi=eff.hi, shared=shared)
            prev = s
        rows.append(row)
    return rows


def _figures(exp: Experiment, cmp, ready: list[str], pops: dict, out: dict,
             repeats: int, fits=None) -> dict:
    """The experiment's figures by key; fills out's fit_linear and trends on the way."""
    from dse.analysis import fitlinear, plots

    a = exp.analyses
    figs = {"edf": plots.edf_figure(cmp, title=f"{exp.name}: error EDFs", bands=a.bands)}
    if len(ready) > 2:
        figs["edf_steps"] = plots.edf_steps_figure(cmp, ready)
    for s in (s for s in a.fit_linear if s in pops):
        fit = fitlinear.fit_linear_population(pops[s], a.fit_top, fits)
        j = fit["joint"]
        out["fit_linear"][s] = dict(top=j["top"], w0=j["w0"], wa=j["wa"],
                                    mean_e_fit=float(fit["rows"]["e_fit"].mean()),
                                    spearman=fit["spearman"])
        figs[f"fit_linear_{s}"] = plots.fit_linear_figure(fit, s)
    for s in (s for s in a.trends if s in pops):
        trs = stats.trends(pops[s], repeats=repeats, seed=exp.seed)
        out["trends"][s] = [{k: t[k] for k in ("param", "best", "lo", "median", "hi")}
                            for t in trs]
        if trs:
            figs[f"trends_{s}"] = plots.trends_figure(trs, s)
        if len(set(flop_regimes.labels(pops[s]))) > 1:
            _regime_trends(s, pops[s], exp, out, figs)
    return figs


def _regime_trends(space: str, pop, exp: Experiment, out: dict, figs: dict) -> None:
    """The good ranges across the flop regimes of a space and its top models' complexity
    (DDS Figs. 11–12), into out['regime_trends'] and the figure trends_regimes_<space>."""
    from dse.analysis import plots

    try:
        rows = scaling.by_regime(pop, seed=exp.seed)
    except DseError as e:
        out.setdefault("regime_trends", {})[space] = dict(error=str(e))
        return
    cx = scaling.complexity(pop)
    out.setdefault("regime_trends", {})[space] = dict(
        params={r["param"]: {k: r[k] for k in scaling.KEYS} for r in rows},
        complexity=cx)
    figs[f"trends_regimes_{space}"] = plots.regime_trends_figure(rows, cx, pop, space)


def _write_outputs(exp: Experiment, store: Store, out: dict, figs: dict) -> None:
    """Write the figures, the report (when asked) and summary.json; record their paths."""
    from dse.analysis import plots, report

    pngs = {}
    for key, fig in figs.items():
        pngs[key] = plots.png_bytes(fig)
        path = store.experiment_output(exp.name, key)
        write_atomic(path, lambda p, b=pngs[key]: Path(p).write_bytes(b))
        out["files"][key] = str(path)
    if exp.analyses.report:
        page = report.experiment_page(exp, out, pngs)
        path = store.experiment_output(exp.name, "report", ".html")
        write_atomic(path, lambda p: Path(p).write_text(page, encoding="utf-8"))
        out["files"]["report"] = str(path)
    write_json(store.summary_path(exp.name), out)
