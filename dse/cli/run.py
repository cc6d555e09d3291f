"""The method as commands: `dse run EXPERIMENT.yaml` (sample, train, analyze, check the
claims), `dse suggest SPACE` (the next refinement of a trained space) and `dse transfer A B`
(do a store's conclusions hold in another)."""

from __future__ import annotations

import json

import click

from dse.cli.common import (
    POPULATION,
    SET,
    Command,
    echo_json,
    echo_notes,
    json_option,
    recipe_option,
    seed_option,
    selected,
    selection_options,
    store_option,
    table,
)
from dse.errors import one_line

STAGES = ("sample", "train", "analyze")  # what --only picks (dse.method.pipeline.STAGES)


@click.command("run", cls=Command)
@click.argument("experiment_file", metavar="EXPERIMENT.yaml")
@click.option("--store", "store_path", default=None,
              help="Store directory [default: the file's `store:`, else runs/<name>].")
@click.option("--set", "sets", type=SET, multiple=True, metavar="KEY=VALUE",
              help="Override a key of the file (repeatable): n=16, train.epochs=1, "
                   "spaces=[xa,xe]; values are read as YAML.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (models to sample and train, cost, ETA); create nothing.")
@click.option("--only", type=click.Choice(STAGES), default=None,
              help="Run one stage only [default: sample, train, then analyze].")
@recipe_option("Analyze the results of this recipe")
@click.option("--aggregate", type=click.Choice(["mean", "first"]), default="mean",
              show_default=True, help="A model's error from its seeds.")
@json_option("Print the plan (--dry-run) or the analysis summary as JSON.")
def run_cmd(experiment_file, store_path, sets, dry_run, only, recipe, aggregate, as_json):
    """Carry out an experiment file: sample what is missing, train what has no result, then
    analyze and check its claims (docs/experiments.md). Rerunning continues where it
    stopped and trains nothing twice. A pycls sweep config (with a SETUP section) is
    drawn and trained with its recipe (docs/interop.md)."""
    import signal

    from dse.cli.interop import is_pycls_sweep, run_pycls
    from dse.method import experiment, pipeline, stages
    from dse.store.core import Store
    if is_pycls_sweep(experiment_file):
        return run_pycls(click.get_current_context(), experiment_file, store_path, dry_run)

    exp = experiment.load(experiment_file, sets)
    store = Store(exp.store_path(store_path))
    pick = selected(recipe, aggregate)
    if dry_run:
        p = stages.plan(exp, store)
        if as_json:
            echo_json(p.to_json())
            return
        _print_plan(exp, p)
        return

    def terminate(signum, frame):  # unwind like Ctrl-C: leases in flight are given back
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo

    def progress():
        from dse.runner.progress import Progress

        return Progress(stream=click.get_text_stream("stderr") if as_json else None,
                        epochs=exp.recipe.epochs, command="run")

    out = pipeline.run(exp, store, only, echo, progress, pick)
    if out is not None:
        if as_json:
            echo_json(out)
        else:
            _print_summary(out)


def _print_plan(exp, p):
    """The experiment's plan (dse.method.stages.ExperimentPlan): a row per space, the total
    with the ETA and warning of its training plan, then the stages that follow."""
    from dse.units import eta as fmt_eta
    from dse.units import mult_adds as fmt_cost

    rows = [dict(r, cost=fmt_cost(r["cost"]), eta=fmt_eta(r["eta_s"])) for r in p.rows]
    where = (f"regimes {', '.join(f'{r.label} ({r.flops})' for r in exp.regimes)}"
             if exp.regimes else f"flops {exp.flops}")
    click.echo(f"experiment {exp.name}: {exp.n} models per space"
               f"{' per regime' if exp.regimes else ''}, {exp.dataset}, {where}, "
               f"{p.epochs} epochs × {p.images or '?'} images, store {p.store}")
    click.echo(table(rows, ["space", "sampled", "to_sample", "to_train", "image_epochs", "cost",
                            "eta"],
                     ["space", "sampled", "to sample", "to train", "image-epochs",
                      "cost (mult-adds)", "ETA"]))
    t = p.total
    click.echo(f"\nin all: {t['to_sample']} to sample, {t['to_train']} to train")
    if p.training is None:
        why = (" (an open flops window: the cost of models not yet sampled is unknown)"
               if t["to_sample"] and not (exp.flops.lo and exp.flops.hi) else "")
        click.echo(f"cost unknown{why}")
    else:
        for line in p.training.lines():
            click.echo(line)
        warning = p.training.warning(command="run")
        if warning:
            click.echo(warning)
    for i, o in enumerate(exp.promotes):
        base = exp.recipe
        if hasattr(o, "rungs"):  # successive halving (dse.method.halving)
            c = o.counts(exp.n * len(exp.regime_list))
            work = sum(k * r for k, r in zip(c, o.rungs)) * (o.options.recipe.train_subset or 1)
            click.echo(f"then promote[{i + 1}]: {o.describe()}: "
                       f"{' → '.join(map(str, c))} models per space, about "
                       f"{work / max(1, base.epochs * (base.train_subset or 1)):.3g} models "
                       "of the table above per space")
            continue
        what = " + ".join(x for x in (f"top {o.top}" if o.top else "",
                                      f"sample {o.sample}" if o.sample else "") if x) or \
            "every model"
        seeds = o.seeds or 1
        per = (o.top or 0) + (o.sample or 0) if (o.top or o.sample) else exp.n
        scale = o.recipe.epochs * (o.recipe.train_subset or 1) / max(
            1, base.epochs * (base.train_subset or 1))
        click.echo(f"then promote[{i + 1}]: {what} of each space × {seeds} seed"
                   f"{'s' * (seeds > 1)}, {o.recipe.epochs} epochs: up to {per * seeds} "
                   f"trials per space (those not yet trained), each about {scale:.3g}× a "
                   "model of the table above")
    if exp.refine_rounds:
        click.echo(f"then up to {exp.refine_rounds} refinement round"
                   f"{'s' * (exp.refine_rounds != 1)} from {exp.spaces[0]}: each samples and "
                   f"trains {exp.n} models of the refined space (about the cost of one row "
                   "above)")


def _print_summary(out):
    click.echo(f"\nexperiment {out['experiment']} ({out['dataset']}, store {out['store']})")
    for note in out.get("recipe") or ():
        click.echo(f"({note})")
    rows = [dict(r, **{k: (round(r[k], 2) if isinstance(r.get(k), float) else r.get(k))
                       for k in ("min", "median", "mean")},
                 ks=(f"D={r['ks_D']:.2f} p={r['ks_p']:.2g} vs {r['vs']}" if "ks_D" in r
                     else ""))
            for r in out["spaces"]]
    click.echo(table(rows, ["space", "finished", "min", "median", "mean", "ks"],
                     ["space", "finished", "min err", "median", "mean", "KS against previous"]))
    if out.get("refine"):
        click.echo("\nrefinement chain:")
        for c in out["refine"]:
            click.echo(f"  round {c['round']}: {c['space'] or '-'}  {c['verdict']}"
                       + (f"  (p = {c['p']:.3g})" if c["p"] is not None else "")
                       + (f"  {c['summary']}" if c["summary"] else ""))
    if out["claims"]:
        click.echo(f"\nclaims (α = {out['alpha']:g}, {out.get('correction', 'no')} correction, "
                   f"margin {out.get('margin', 1.0):g} points):")
        for c in out["claims"]:
            click.echo(f"  {c['verdict']:>13}  {c['claim']}  — {one_line(c['detail'])}")
    for key, path in out["files"].items():
        if key in ("report", "edf"):
            click.echo(f"{'report' if key == 'report' else 'EDF figure'}: {path}")


@click.command("suggest", cls=Command)
@click.argument("space_name", metavar="SPACE", type=POPULATION)
@store_option
@click.option("--frac", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.25, show_default=True, help="Fraction of best models that are 'top'.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True,
              help="Family-wise error level (Holm) for calling a candidate supported.")
@click.option("--show", type=click.IntRange(min=1), default=8, show_default=True,
              help="Candidates listed (JSON lists all).")
@click.option("--write", "write_path", default=None, metavar="PATH",
              help="Write the best supported candidate as a space file extending SPACE "
                   "(nothing is written when none is supported).")
@selection_options
@seed_option("Seed of the range halves and permutations.")
@json_option("Print one JSON object: {space, n, candidates: [...]}, best first.")
def suggest_cmd(space_name, store_path, frac, alpha, show, write_path, selection, seed,
                as_json):
    """Rank the refinements of a trained space the paper's way (share, non-decreasing, fix,
    narrow, linear widths), each with its evidence; --write saves the best supported one.
    Then which choices matter (dse importance): constrain those that do, fix those whose
    share is negligible even alone."""
    from dse.analysis import population, stats
    from dse.files import write_output
    from dse.method import suggest
    from dse.store.core import Store

    store = Store.existing(space_name.store or store_path)
    name = store.resolve(space_name.space)
    space = suggest.stored_space(store.space_record(name), name,
                                 str(store.definition_path(name)))
    read = population.load([population.Operand(name, None, space_name.expr)], selection,
                           home=store)
    notes = read.notes
    pop = stats.population(read.frame, read.labels[0])
    found = suggest.suggest(space, pop, frac=frac, alpha=alpha, seed=seed)
    weighed = _importance_hints(pop, alpha, seed)
    written = None
    if write_path and found.best is not None:
        suggest.write_space_file(space, found.best, write_path, write=write_output)
        written = write_path
    if as_json:
        echo_json({**found.to_json(), **({"written": written} if write_path else {}),
                   "importance": weighed})
        return
    n_sig = sum(c.significant for c in found.candidates)
    echo_notes(notes)
    click.echo(f"{name}: {found.n} trained models, {len(found.candidates)} candidate "
               f"refinements, {n_sig} supported at α = {alpha:g} (Holm)")
    for i, c in enumerate(found.candidates[:show], 1):
        click.echo(f"{i:>2}. {'*' if c.significant else ' '} {c.summary}")
        click.echo(f"      {json.dumps(c.constraint)}")
    if not n_sig:
        click.echo("nothing is supported: no candidate's top models differ from chance after "
                   "correcting for the number of candidates")
    click.echo(f"\nwhich choices matter (dse importance {name}): "
               + (weighed["reason"] if "reason" in weighed else
                  f"explained {weighed['explained']['value']:.2f} of the error variance"))
    for h in weighed.get("hints", []):
        click.echo(f"  {h['action']} {h['param']}: {h['why']}")
    if write_path:
        click.echo(f"wrote {written} (dse sample --space {written})" if written else
                   "no file written: nothing is supported")


def _importance_hints(pop, alpha: float, seed: int) -> dict:
    """dse importance on the population and what it proposes (dse.method.importancehints),
    as JSON; {"reason": ...} where it cannot be had."""
    from dse.analysis import importance
    from dse.errors import DseError
    from dse.method import importancehints

    try:
        cols, constant = importance.parameters(pop)
        imp = importance.importance(cols, pop["error"].to_numpy(float), alpha=alpha,
                                    seed=seed, constant=constant)
    except DseError as e:
        return dict(reason=str(e))
    return dict(imp.to_json(), hints=[h.to_json() for h in importancehints.hints(imp)])


@click.command("transfer", cls=Command)
@click.argument("store_a", metavar="STORE_A")
@click.argument("store_b", metavar="STORE_B")
@click.option("--experiment", "experiment_file", default=None, metavar="EXPERIMENT.yaml",
              help="Also judge this experiment's claims on each store, side by side.")
@selection_options
@click.option("--repeats", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Bootstrap resamples of the good ranges.")
@seed_option()
@json_option("Print one JSON object: {a, b, spaces, rank_correlation, claims}.")
def transfer_cmd(store_a, store_b, experiment_file, selection, repeats, seed, as_json):
    """Do STORE_A's conclusions hold in STORE_B? For the spaces both hold: the rank
    correlation of their median errors, whether each good range agrees, and an experiment's
    claims judged in each."""
    from dse.method import experiment, transfer
    from dse.store.core import Store

    exp = experiment.load(experiment_file) if experiment_file else None
    out = transfer.transfer(Store.existing(store_a), Store.existing(store_b), selection, exp,
                            repeats, seed)
    if as_json:
        echo_json(out)
        return
    rows = [dict(space=r["space"], n_a=r["a"]["n"], median_a=f"{r['a']['median']:.2f}",
                 n_b=r["b"]["n"], median_b=f"{r['b']['median']:.2f}",
                 ks=f"D={r['ks_D']:.2f} p={r['ks_p']:.2g}",
                 ranges=f"{r['agree']} of {len(r['ranges'])}",
                 differ=", ".join(p for p, v in r["ranges"].items() if not v["agree"]))
            for r in out["spaces"]]
    click.echo(table(rows, ["space", "n_a", "median_a", "n_b", "median_b", "ks", "ranges",
                            "differ"],
                     ["space", "n (A)", "median (A)", "n (B)", "median (B)", "KS A vs B",
                      "good ranges agree", "ranges that differ"]))
    rho = out["rank_correlation"]
    click.echo(f"\nA = {out['a']}, B = {out['b']}; rank correlation of the medians: " + (
        f"Spearman ρ = {rho['rho']:.2f} (p = {rho['p']:.2g}, {rho['n']} spaces)"
        if rho["rho"] is not None else f"undefined for {rho['n']} space(s) (needs 3)"))
    if out["left_out"]:
        click.echo(f"left out (no finished models in one store): {', '.join(out['left_out'])}")
    if out["claims"]:
        click.echo("")
        click.echo(table(out["claims"], ["claim", "a", "b"], ["claim", "in A", "in B"]))
