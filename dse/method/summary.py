"""The analyze stage of an experiment: the EDF comparison, a table per space with the KS test
against the space before it, the claims' verdicts, fit-linear and trends where asked, written
under <store>/experiments/<name>/ (summary.json, edf.png, edf_steps.png, report.html).
No torch here."""

from __future__ import annotations

import json
from pathlib import Path

from dse.analysis import stats as analysis
from dse.files import jsonable, writing
from dse.method import claims as expect
from dse.method import refine
from dse.method.experiment import Experiment
from dse.store.core import Store, write_atomic
from dse.system import stamp


def analyze(exp: Experiment, store: Store, repeats: int = 10_000) -> dict:
    """Every analysis of the experiment; writes summary.json, the figures and the report
    under the experiment's directory and returns the summary."""
    from dse.analysis import fitlinear, plots, report
    store = Store.existing(store)
    chain = refine.read_chain(exp, store)
    names = list(dict.fromkeys([*exp.spaces, *(c["space"] for c in chain if c["space"])]))
    df = store.load(names)
    a = exp.analyses
    ready = [s for s in names if analysis.counts(df, s)["finished"] > 0]
    out = dict(experiment=exp.name, store=str(store), dataset=exp.dataset, n=exp.n,
               alpha=exp.alpha, spaces=[], claims=[], fit_linear={}, trends={},
               refine=chain, files={}, finished_at=stamp())
    d = store.experiment_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    if not ready:
        out["spaces"] = [dict(space=s, **analysis.counts(df, s)) for s in names]
        out["claims"] = [expect.judge(c, {}, {}, exp.alpha) for c in exp.claims]
        _write_json(store.summary_path(exp.name), out)
        return out
    cmp = analysis.compare(df, ready, a.normalize, a.bins)
    pops = {s: analysis.population(df, s) for s in ready}
    prev = None
    for s in names:
        c = analysis.counts(df, s)
        row = dict(space=s, sampled=c["sampled"], finished=c["finished"],
                   diverged=c["diverged"], failed=c["failed"])
        if s in cmp["spaces"]:
            row.update({k: cmp["spaces"][s][k] for k in ("n", "min", "median", "mean")})
            if prev is not None:
                (ea, wa), (eb, wb) = cmp["curves"][s], cmp["curves"][prev]
                dd, p = analysis.ks(ea, eb, wa, wb)
                _, p_better = expect.one_sided(ea, eb, wa, wb)
                _, p_worse = expect.one_sided(eb, ea, wb, wa)
                row.update(vs=prev, ks_D=dd, ks_p=p, p_better=p_better, p_worse=p_worse)
            prev = s
        out["spaces"].append(row)
    out["claims"] = [expect.judge(c, cmp["curves"], pops, exp.alpha, repeats, exp.seed)
                     for c in exp.claims]
    figs = {"edf": plots.edf_figure(cmp, title=f"{exp.name}: error EDFs", bands=a.bands)}
    if len(ready) > 2:
        figs["edf_steps"] = plots.edf_steps_figure(cmp, ready)
    for s in a.fit_linear:
        if s in pops:
            fit = fitlinear.fit_linear_population(pops[s], a.fit_top)
            j = fit["joint"]
            out["fit_linear"][s] = dict(top=j["top"], w0=j["w0"], wa=j["wa"],
                                        mean_e_fit=float(fit["rows"]["e_fit"].mean()),
                                        spearman=fit["spearman"])
            figs[f"fit_linear_{s}"] = plots.fit_linear_figure(fit, s)
    for s in a.trends:
        if s in pops:
            trs = analysis.trends(pops[s], repeats=repeats, seed=exp.seed)
            out["trends"][s] = [{k: t[k] for k in ("param", "best", "lo", "median", "hi")}
                                for t in trs]
            if trs:
                figs[f"trends_{s}"] = plots.trends_figure(trs, s)
    pngs = {}
    for key, fig in figs.items():
        pngs[key] = plots.png_bytes(fig)
        path = store.experiment_output(exp.name, key)
        write_atomic(path, lambda p, b=pngs[key]: Path(p).write_bytes(b))
        out["files"][key] = str(path)
    if a.report:
        page = report.experiment_page(exp, out, pngs)
        path = store.experiment_output(exp.name, "report", ".html")
        write_atomic(path, lambda p: Path(p).write_text(page, encoding="utf-8"))
        out["files"]["report"] = str(path)
    _write_json(store.summary_path(exp.name), out)
    return out


def _write_json(path: Path, obj) -> None:
    text = json.dumps(jsonable(obj), indent=2)
    write_atomic(path, lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))
