"""`dse importance SPACE`: which design choices matter, a thin layer over
dse.analysis.importance (docs/analysis.md, "Which choices matter"). It reads the models the
selection picks (--regime, --where, --recipe), as every analysis does, and the seed reruns
of the same recipe for the noise ceiling; nothing is written but the figure."""

from __future__ import annotations

import click

from dse.cli.common import (
    POPULATION,
    Command,
    echo_json,
    echo_notes,
    json_option,
    out_option,
    seed_option,
    selection_options,
    store_option,
    table,
)


def population(store_path, operand, selection):
    """The store, the population's label, its finished models as the selection picks them,
    and the selection's notes (dse.analysis.population, as every analysis reads them)."""
    from dse.analysis import stats
    from dse.cli.analyze import _load_one

    store, label, df, notes = _load_one(store_path, operand, selection)
    return store, label, stats.population(df, label), notes


def noise_ceiling(store, space, pop, pick):
    """The noise ceiling from the reruns of the population's recipe (None: no reruns) among
    the results of `space` (a name)."""
    from dse.analysis import ceiling

    return ceiling.from_reruns(store.read_results(space), pop, pick.aggregate)


def _split(params) -> list[str]:
    return [p for text in params for p in text.replace(",", " ").split()]


def _iv(iv, digits: int = 3) -> str:
    return f"{iv.value:.{digits}f} [{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]"


@click.command("importance", cls=Command)
@click.argument("space_name", metavar="SPACE", type=POPULATION)
@click.option("--params", "params", multiple=True, metavar="P[,Q...]",
              help="Parameters to weigh (repeatable or comma-separated) [default: those "
                   "drawn: RegNet d w0 wa wm g b; AnyNet d1.. w1.. b g (per stage where they "
                   "differ); block, activation, resolution, lr, wd, epochs where they vary; "
                   "also w, d, per-stage values, lrwd].")
@click.option("--pairs", is_flag=True,
              help="Also the pairwise interactions: what the cells of P × Q add to the "
                   "additive model, the strongest --top of them with intervals.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Pairs shown with --pairs (those found first).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.05, show_default=True,
              help="Level of the permutation tests (Holm over parameters, min-p over pairs).")
@click.option("--boot", "n_boot", type=click.IntRange(min=20), default=200, show_default=True,
              help="Bootstrap resamples for the intervals.")
@click.option("--perms", "n_perm", type=click.IntRange(min=19), default=999,
              show_default=True, help="Permutations of the null.")
@selection_options
@seed_option()
@out_option("<store>/<space>/analysis/importance.png")
@json_option("Print one JSON object.")
@store_option
def importance_cmd(space_name, params, pairs, top, alpha, n_boot, n_perm, selection, seed,
                   out, as_json, store_path):
    """Which design choices matter: the share of the error variance each parameter explains
    (alone, and beyond the others) with bootstrap intervals, a permutation test that keeps
    the sampled design, the strongest interactions (--pairs) and the noise ceiling from seed
    reruns."""
    from dse.analysis import importance, importanceplots, plots

    store, space, pop, notes = population(store_path, space_name, selection)
    cols, constant = importance.parameters(pop, _split(params))
    ceiling = noise_ceiling(store, store.resolve(space_name.space), pop, selection.pick)
    imp = importance.importance(cols, pop["error"].to_numpy(float), pairs=pairs, top=top,
                                alpha=alpha, n_boot=n_boot, n_perm=n_perm, seed=seed,
                                ceiling=ceiling, constant=constant)
    path = plots.check_path(out or store.analysis_dir(space) / "importance.png")
    plots.save(importanceplots.importance_figure(imp, space), path, store.root)
    if as_json:
        echo_json(dict(imp.to_json(), space=space, figure=str(path),
                       selection=dict(selection.to_json(), notes=notes)))
        return
    echo_notes(notes)
    click.echo(f"{space}: {imp.n} models; shares of the error variance with {imp.level:.0%} "
               f"bootstrap intervals ({imp.n_boot} resamples); matters: {imp.test} test "
               f"beyond the other parameters ({imp.n_perm} permutations, Holm, "
               f"α = {imp.alpha:g})")
    click.echo(table([{"parameter": s.param, "df": s.df, "first-order": _iv(s.first),
                       "total": _iv(s.total), "p": f"{s.p:.3g}",
                       "matters": "yes" if s.matters else "no"} for s in imp.shares],
                     ["parameter", "df", "first-order", "total", "p", "matters"]))
    if imp.constant:
        click.echo(f"one value here (untestable): {', '.join(imp.constant)}")
    if imp.pairs is not None:
        click.echo("\ninteractions beyond the additive model (min-p over all pairs):")
        click.echo(table([{"pair": f"{p.a} × {p.b}", "share": _iv(p.share),
                           "p": f"{p.p:.3g}", "interact": "yes" if p.interact else "no"}
                          for p in imp.pairs], ["pair", "share", "p", "interact"])
                   if imp.pairs else "(a single parameter: no pairs)")
    click.echo("")
    for line in summary_lines(imp):
        click.echo(line)
    click.echo(f"figure: {path}")


def summary_lines(imp) -> list[str]:
    """The explained variance beside the noise ceiling, in words."""
    first = sum(s.first.value for s in imp.shares)
    out = [f"sum of first-order shares {first:.3f} (shared effects count in each); the "
           f"additive model{' with the interactions found' if imp.pairs else ''} explains "
           f"{_iv(imp.explained)}"]
    c = imp.ceiling
    if c is None:
        out.append("noise ceiling: unknown (no model has two seeds; `dse train --seeds 3` on "
                   "some models gives one)")
    else:
        out.append(f"noise ceiling {c.value:.3f}: the share of the variance that is the models' "
                   f"and not the seeds' (σ_seed {c.sigma_seed:.2f} points from {c.models} "
                   f"models with reruns, {c.seeds:.2g} seeds per error; ICC {_iv(c.icc, 2)})")
    return out
