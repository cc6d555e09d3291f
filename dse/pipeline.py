"""`dse run`: carry out an experiment (dse.experiment) on a store, stage by stage.

- sample: each space gets models until it holds `n` (the same seed draws the same models,
  so a space sampled before by `dse sample` with that seed is left as it is);
- train: every model of the experiment's spaces without a result (dse.runner.run: claims,
  resumable; an interrupted run continues and trains nothing twice);
- analyze: the EDF comparison, a table per space with the KS test against the space before
  it, the claims' verdicts, fit-linear and trends where asked, written under
  <store>/experiments/<name>/ (summary.json, edf.png, edf_steps.png, report.html).

`plan` says what a run would do, without creating anything. No torch here: training is
imported when it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import yaml

from dse import analysis, datasets, expect, sampling, spaces
from dse.errors import DseError
from dse.experiment import Experiment, plan_rows, train_images
from dse.files import jsonable
from dse.store import Store, needs_training, write_atomic


def space_of(exp: Experiment, name: str):
    return spaces.load(exp.space_args[exp.spaces.index(name)])


def plan(exp: Experiment, store: Store) -> dict:
    """What `dse run` would do now: per space the models to sample and to train, the
    training cost, and an ETA when models of this store have trained already."""
    have, pending, pending_flops = {}, {}, {}
    if Path(store).is_dir():
        present = set(store.spaces())
        for s in exp.spaces:
            if s not in present:
                continue
            models = store.read_models(s)
            stored = store.statuses(s)
            todo = [needs_training(stored.get(m), exp.options.retry_failed)
                    for m in models["model_id"]]
            have[s] = len(models)
            pending[s] = int(sum(todo))
            pending_flops[s] = float(models["flops"].to_numpy()[np.array(todo, bool)].sum()) \
                if len(models) else 0.0
    rate = measured_rate(store) if Path(store).is_dir() else None
    workers = exp.options.jobs
    rows = plan_rows(exp, have, pending, pending_flops, rate, workers)
    total = {k: sum(r[k] for r in rows if r[k] is not None)
             for k in ("to_sample", "to_train", "image_epochs", "cost", "eta_s")}
    if all(r["eta_s"] is None for r in rows):
        total["eta_s"] = None
    return dict(experiment=exp.name, store=str(store), rows=rows, total=total,
                rate=rate, workers=workers, images=train_images(exp), epochs=exp.recipe.epochs)


def measured_rate(store: Store) -> float | None:
    """Median training speed of this store's finished models, in multiply-adds per second
    per trainer (3 × flops × images × epochs / train seconds), or None before any."""
    speeds = []
    for s in store.spaces():
        try:
            df = store.load([s])
        except DseError:
            continue
        done = df[(df["status"] == "done") & (df["train_seconds"] > 0)]
        if done.empty:
            continue
        size = datasets.get(done["dataset"].iloc[0]).train_size or 0
        images = done["train_subset"].fillna(size).to_numpy(dtype=float)
        speeds.append(3 * done["flops"].to_numpy(dtype=float) * images
                      * done["epochs_run"].fillna(done["epochs"]).to_numpy(dtype=float)
                      / done["train_seconds"].to_numpy(dtype=float))
    speeds = np.concatenate(speeds) if speeds else np.array([])
    speeds = speeds[np.isfinite(speeds) & (speeds > 0)]
    return float(np.median(speeds)) if speeds.size else None


# ---- stages ----------------------------------------------------------------------------------

def record(exp: Experiment, store: Store) -> Path:
    """Write the experiment as run (after --set) to <store>/experiments/<name>/."""
    d = store.experiment_dir(exp.name)
    d.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({**exp.config, "_source": str(exp.path),
                           "_run_at": _now()}, sort_keys=False, allow_unicode=True)
    write_atomic(d / "experiment.yaml", lambda p: Path(p).write_text(text, encoding="utf-8"))
    return d


def sample(exp: Experiment, store: Store, echo=print) -> dict:
    """Top each space up to n models; returns {space: models added}."""
    return {name: sample_space(exp, store, space_of(exp, name), echo) for name in exp.spaces}


def sample_space(exp: Experiment, store: Store, space, echo=print) -> int:
    """Top one space up to the experiment's n models; returns how many were added."""
    have = len(store.read_models(space.name)) if space.name in store.spaces() else 0
    want = exp.n - have
    if want <= 0:
        return 0
    task, data = datasets.task_and_record(exp.dataset, exp.data_dir, exp.resolution)
    draw = lambda ids: sampling.sample(  # noqa: E731
        space, want, task, exp.flops, exp.params, exp.acts, exp.seed, exclude=ids)
    new = store.add_models(space, exp.dataset, task, draw, exp.seed, data)
    echo(f"sampled {len(new)} {space.name} models ({have + len(new)} in all)")
    return len(new)


def train(exp: Experiment, store: Store, report=None):
    from dse import runner

    return runner.run(store, list(exp.spaces), exp.options, report=report)


def analyze(exp: Experiment, store: Store, repeats: int = 10_000) -> dict:
    """Every analysis of the experiment; writes summary.json, the figures and the report
    under the experiment's directory and returns the summary."""
    from dse import fitlinear, plots, refine, report

    store = Store.existing(store)
    chain = refine.read_chain(exp, store)
    names = list(dict.fromkeys([*exp.spaces, *(c["space"] for c in chain if c["space"])]))
    df = store.load(names)
    a = exp.analyses
    ready = [s for s in names if analysis.counts(df, s)["finished"] > 0]
    out = dict(experiment=exp.name, store=str(store), dataset=exp.dataset, n=exp.n,
               alpha=exp.alpha, spaces=[], claims=[], fit_linear={}, trends={},
               refine=chain, files={}, finished_at=_now())
    d = store.experiment_dir(exp.name)
    d.mkdir(parents=True, exist_ok=True)
    if not ready:
        out["spaces"] = [dict(space=s, **analysis.counts(df, s)) for s in names]
        out["claims"] = [expect.check(c, {}, {}, exp.alpha) for c in exp.claims]
        _write_json(d / "summary.json", out)
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
    out["claims"] = [expect.check(c, cmp["curves"], pops, exp.alpha, repeats, exp.seed)
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
        write_atomic(d / f"{key}.png", lambda p, b=pngs[key]: Path(p).write_bytes(b))
        out["files"][key] = str(d / f"{key}.png")
    if a.report:
        page = report.experiment_page(exp, out, pngs)
        write_atomic(d / "report.html", lambda p: Path(p).write_text(page, encoding="utf-8"))
        out["files"]["report"] = str(d / "report.html")
    _write_json(d / "summary.json", out)
    return out


def _write_json(path: Path, obj) -> None:
    text = json.dumps(jsonable(obj), indent=2)
    write_atomic(path, lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_cost(x: float | None) -> str:
    """Multiply-adds in P/T/G units."""
    if x is None:
        return "?"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def fmt_eta(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"
