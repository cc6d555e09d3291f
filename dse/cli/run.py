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
DRY_RUN_REPS = 400  # simulated experiments per power in --dry-run's claims (dse plan: 2,000)


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
@click.option("--until-decided", is_flag=True,
              help="Run in rounds: after the first n models per space, --round more per "
                   "round until every claim is decided or --max-n is reached (the file's "
                   "`rounds:` does the same).")
@click.option("--max-n", type=click.IntRange(min=2), default=None,
              help="With --until-decided: the most models per space.")
@click.option("--round", "round_size", type=click.IntRange(min=1), default=None,
              help="With --until-decided: models added per space each round.")
@recipe_option("Analyze the results of this recipe")
@click.option("--aggregate", type=click.Choice(["mean", "first"]), default="mean",
              show_default=True, help="A model's error from its seeds.")
@json_option("Print the plan (--dry-run) or the analysis summary as JSON.")
def run_cmd(experiment_file, store_path, sets, dry_run, only, until_decided, max_n,
            round_size, recipe, aggregate, as_json):
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

    exp = experiment.load(experiment_file, [*sets, *_rounds_sets(experiment_file, sets,
                                                                 until_decided, max_n,
                                                                 round_size)])
    store = Store(exp.store_path(store_path))
    pick = selected(recipe, aggregate)
    if dry_run:
        from dse.errors import DseError
        from dse.method import planner

        p = stages.plan(exp, store)
        try:
            claims = planner.plan(exp, store, reps=DRY_RUN_REPS) if exp.claims else None
        except DseError as e:
            claims = str(e)
        looks = None
        if exp.rounds:
            from dse.method.looks import schedule

            looks = schedule(exp).to_json()
        if as_json:
            echo_json(dict(p.to_json(), rounds=looks, claims=claims.to_json()
                           if hasattr(claims, "to_json") else claims))
            return
        _print_plan(exp, p)
        if looks:
            click.echo(f"in rounds: looks at {', '.join(map(str, looks['looks']))} models per "
                       f"space, stopping once every claim is decided; the table above is the "
                       f"first look ({looks['spending']})")
        if isinstance(claims, str):
            click.echo(f"\nclaims: no power plan ({claims})")
        elif claims is not None:
            click.echo("")
            _print_claim_plans(exp, claims)
            click.echo(f"(powers from {DRY_RUN_REPS} simulated runs each; dse plan simulates "
                       "more, and takes an effect, a pilot and a spread)")
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


def _rounds_sets(path, sets, until_decided, max_n, round_size) -> list:
    """--until-decided --max-n N --round K as the `rounds:` key they set."""
    if not until_decided:
        if max_n is not None or round_size is not None:
            raise click.UsageError("--max-n and --round go with --until-decided")
        return []
    from dse.method import experiment

    given = experiment.load(path, sets).rounds or (None, None)
    size, top = round_size or given[0], max_n or given[1]
    if size is None or top is None:
        raise click.UsageError("--until-decided needs --max-n N and --round K (or `rounds:` "
                               "in the file)")
    return [(["rounds"], {"size": size, "max_n": top})]


def _print_claim_plans(exp, planning):
    """The power plan of the claims (dse.method.planner.Planning): per claim the effect,
    spread, power at the file's n and the n for the target; per space the n its claims need
    and its cost."""
    from dse.units import eta as fmt_eta
    from dse.units import mult_adds as fmt_cost

    rows = []
    for i, c in enumerate(planning.claims, 1):
        unit = "ρ" if c.kind == "ranks" else "points"
        rows.append(dict(
            k=i, claim=c.claim,
            effect="" if c.effect is None else f"{c.effect:.3g} {unit}",
            spread="" if c.spread is None else f"{c.spread:.2f}",
            power_now="" if c.power_now is None else f"{c.power_now:.2f}",
            n="" if c.n is None else str(c.n), note=c.note))
    click.echo(f"claims at power {planning.target:g} (each at the level Holm may hold it "
               f"to; n is models per space):")
    click.echo(table(rows, ["k", "claim", "effect", "spread", "power_now", "n", "note"],
                     ["#", "claim", "effect", "sd", f"power at n={exp.n}", "n needed",
                      "note"]))
    for c in planning.claims:
        if c.effect is not None:
            click.echo(f"  {c.claim}: {c.test} at {c.level:.3g}; effect from "
                       f"{c.effect_from}; spread from {c.spread_from or '-'}")
    if planning.spaces:
        srows = [dict(space=r["space"], n="" if r["n"] is None else r["n"],
                      to_train="" if r["to_train"] is None else r["to_train"],
                      cost=fmt_cost(r["cost"]), eta=fmt_eta(r["eta_s"]))
                 for r in planning.spaces]
        click.echo(table(srows, ["space", "n", "to_train", "cost", "eta"],
                         ["space", "n needed", "models to train", "cost (mult-adds)",
                          "time"]))
        click.echo(f"time: {planning.rate_from}")


def _print_plan(exp, p):
    """The experiment's plan (dse.method.stages.ExperimentPlan): a row per space, the total
    with the ETA and warning of its training plan, then the stages that follow."""
    from dse.method.halving import Halving
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
        if isinstance(o, Halving):
            c = o.counts(exp.n * len(exp.regime_list))
            work = sum(k * r for k, r in zip(c, o.rungs)) * (o.options.recipe.train_subset or 1)
            secs = [p.trials_s(o.at(j), k * len(exp.spaces), exp.dataset)
                    for j, k in enumerate(c)]
            took = "" if None in secs else f"; about {fmt_eta(sum(secs))} at this store's speed"
            click.echo(f"then promote[{i + 1}]: {o.describe()}: "
                       f"{' → '.join(map(str, c))} models per space, about "
                       f"{work / max(1, base.epochs * (base.train_subset or 1)):.3g} models "
                       f"of the table above per space{took}")
            continue
        what = " + ".join(x for x in (f"top {o.top}" if o.top else "",
                                      f"sample {o.sample}" if o.sample else "") if x) or \
            "every model"
        seeds = o.seeds or 1
        per = (o.top or 0) + (o.sample or 0) if (o.top or o.sample) else exp.n
        scale = o.recipe.epochs * (o.recipe.train_subset or 1) / max(
            1, base.epochs * (base.train_subset or 1))
        secs = p.trials_s(o, per * seeds * len(exp.spaces), exp.dataset)
        took = "" if secs is None else \
            f"; about {fmt_eta(secs)} at this store's speed if none is trained yet"
        click.echo(f"then promote[{i + 1}]: {what} of each space × {seeds} seed"
                   f"{'s' * (seeds > 1)}, {o.recipe.epochs} epochs: up to {per * seeds} "
                   f"trials per space (those not yet trained), each about {scale:.3g}× a "
                   f"model of the table above{took}")
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


@click.command("plan", cls=Command)
@click.argument("experiment_file", metavar="EXPERIMENT.yaml")
@click.option("--store", "store_path", default=None,
              help="Store directory [default: the file's `store:`, else runs/<name>].")
@click.option("--set", "sets", type=SET, multiple=True, metavar="KEY=VALUE",
              help="Override a key of the file (repeatable), as in dse run.")
@click.option("--power", "target", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.8, show_default=True, help="The power each claim should have.")
@click.option("--effect", "effects", multiple=True, metavar="[K=]VALUE",
              help="The effect to plan for, in the claim's favour: points (1.5), standard "
                   "deviations (0.5sd) or, for 'ranks alike', a rank correlation; K= for "
                   "claim K of expect: only (repeatable) [default: the margin for 'better "
                   "than', no difference for 'same as' / 'at least as good as', the "
                   "pilot's ρ].")
@click.option("--pilot", "pilot_path", default=None, metavar="STORE",
              help="Read spreads, seed noise and fidelity from this store [default: the "
                   "experiment's store, where it has trained models].")
@click.option("--sd", type=click.FloatRange(0, min_open=True), default=None,
              help="Spread of one model's error in points, where no pilot gives one.")
@click.option("--reps", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Simulated experiments per power estimate.")
@seed_option("Seed of the simulations.")
@json_option("Print one JSON object: {experiment, power, claims, spaces, rate}.")
def plan_cmd(experiment_file, store_path, sets, target, effects, pilot_path, sd, reps, seed,
             as_json):
    """For each claim of an experiment file: the models per space needed to decide it at
    --power, the power its n gives now, and the cost in models and time
    (docs/experiments.md, "How many models")."""
    from dse.method import experiment, planner
    from dse.store.core import Store

    exp = experiment.load(experiment_file, sets)
    store = Store(exp.store_path(store_path))
    pilot = Store.existing(pilot_path) if pilot_path else None
    given = dict(planner.parse_effect(e) for e in effects)
    out = planner.plan(exp, store, pilot, target, given, sd, reps, seed)
    if as_json:
        echo_json(out.to_json())
        return
    click.echo(f"experiment {exp.name}: {len(exp.claims)} claims, {exp.n} models per space "
               f"in the file, α = {exp.alpha:g} ({exp.correction})")
    _print_claim_plans(exp, out)


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
    with store.fit_cache() as fits:  # kept unless the command fails
        found = suggest.suggest(space, pop, frac=frac, alpha=alpha, seed=seed, fits=fits)
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
