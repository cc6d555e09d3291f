"""Trials (docs/trials.md): `dse fidelity` (does a short proxy rank models as a longer
recipe?), `dse noise` (seed noise from reruns) and `dse curves` (per-epoch histories)."""

from __future__ import annotations

import click
import numpy as np

from dse.cli.common import (
    RECIPE,
    Command,
    echo_json,
    json_option,
    out_option,
    recipe_option,
    selected,
    store_option,
    table,
)


def _store_space(store_path, space_name):
    from dse.store.core import Store

    store = Store.existing(store_path)
    return store, store.resolve(space_name)


def _runs(store, space, recipe, results=None, how="dse train"):
    """The results (every seed) of the space's recipe named by `recipe` (None: the one with
    the most results) among `results` (default: all of the space's), and that recipe's
    label; `how` is the command the error names when there are none."""
    from dse.errors import DseError
    from dse.store import recipes

    res = store.read_results(space) if results is None else results
    pick = selected(recipe)
    fp = recipes.choose(res, pick, f" in {space}")
    if fp is None:
        raise DseError(f"{space} has no results yet; train it first ({how})")
    rows = res[res["recipe"] == fp]
    label = recipes.recipes(rows)["label"].iloc[0]
    return rows, label


@click.command("fidelity", cls=Command)
@click.argument("space_name", metavar="SPACE")
@click.option("--from", "proxy", type=RECIPE, required=True, metavar="KEY=VALUE,...",
              help="The proxy recipe, e.g. epochs=2.")
@click.option("--to", "target", type=RECIPE, required=True, metavar="KEY=VALUE,...",
              help="The target recipe, e.g. epochs=8.")
@click.option("--k", type=click.IntRange(min=1), default=None,
              help="Size of the top sets compared [default: a quarter of the models].")
@click.option("--aggregate", type=click.Choice(["mean", "first"]), default="mean",
              show_default=True, help="A model's error from its seeds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--top", type=click.IntRange(min=0), default=None,
              help="How many of the models were promoted to the target as the proxy's best "
                   "(dse train --top K) [default: inferred from the proxy's ranking].")
@out_option("<store>/<space>/analysis/fidelity.png")
@json_option()
@store_option
def fidelity_cmd(space_name, proxy, target, k, aggregate, seed, top, out, as_json,
                 store_path):
    """Does the proxy recipe rank a space's models as the target recipe does? Over the
    models trained under both and promoted at random (those promoted as the proxy's best
    are a selected sample: they are left out of the headline): Spearman ρ and Kendall τ
    with bootstrap 95% intervals, the overlap of the top-k sets, the regret of the proxy's
    pick and a scatter figure."""
    from dse.analysis import plots, population, trialplots
    from dse.analysis import reruns as tr
    from dse.errors import DseError
    from dse.store.recipes import settings_text

    store, space = _store_space(store_path, space_name)
    picks = [selected(r, aggregate, option=flag) for r, flag in
             ((proxy, "--from"), (target, "--to"))]
    a, b, both = population.paired(space, picks, home=store)
    chosen, n_top, how = population.promoted(store, space, picks[0], both, top)
    base = both[~chosen] if (~chosen).sum() >= tr.MIN_PAIRS else both
    if k is not None and k > len(base):
        raise DseError(f"--k {k} exceeds the {len(base)} models the headline reads")
    p, t = base["error_x"].to_numpy(float), base["error_y"].to_numpy(float)
    fid = tr.fidelity(p, t, k=k, seed=seed)
    every = tr.fidelity(both["error_x"].to_numpy(float), both["error_y"].to_numpy(float),
                        seed=seed) if len(base) < len(both) else fid
    basis = _basis(len(both), int(chosen.sum()), n_top, how, len(base) < len(both))
    labels = (a["recipe_label"].dropna().iloc[0], b["recipe_label"].dropna().iloc[0])
    path = plots.check_path(out or store.analysis_dir(space) / "fidelity.png")
    names = (settings_text(proxy), settings_text(target))
    plots.save(trialplots.fidelity_figure(p, t, fid, names, space), path,
               store.root)
    seeds = (int(both["n_seeds_x"].max()), int(both["n_seeds_y"].max()))
    if as_json:
        echo_json(dict(fid.to_json(), space=space, proxy=dict(recipe=labels[0]),
                       target=dict(recipe=labels[1]), aggregate=aggregate,
                       paired=len(both), selected=int(chosen.sum()), top=n_top, top_from=how,
                       headline=basis, all_pairs=every.to_json(), figure=str(path)))
        return
    click.echo(f"{space}: {len(both)} models trained under both recipes; {basis}")
    click.echo(f"  proxy  {labels[0]}" + (f" (mean of ≤{seeds[0]} seeds)" if seeds[0] > 1
                                          else ""))
    click.echo(f"  target {labels[1]}" + (f" (mean of ≤{seeds[1]} seeds)" if seeds[1] > 1
                                          else ""))
    r, tau = fid.spearman, fid.kendall
    click.echo(table([dict(measure="Spearman ρ", value=f"{r.value:.3f}",
                           interval=f"{r.lo:.3f} to {r.hi:.3f}"),
                      dict(measure="Kendall τ", value=f"{tau.value:.3f}",
                           interval=f"{tau.lo:.3f} to {tau.hi:.3f}")],
                     ["measure", "value", "interval"],
                     ["measure", "value", f"{fid.level:.0%} interval"]))
    click.echo(f"top-{fid.top_k.k} overlap: {fid.top_k.overlap:.0%} (by chance "
               f"{fid.top_k.expected:.0%}); regret of the proxy's pick: {fid.regret:.2f} "
               "points")
    if every is not fid:
        click.echo(f"over all {every.pairs} pairs, selected ones included (not a random "
                   f"sample): ρ = {every.spearman.value:.3f}, τ = {every.kendall.value:.3f}")
    click.echo(f"figure: {path}")


def _basis(pairs: int, selected: int, top: int, how: str, random_only: bool) -> str:
    """What the headline reads: the pairs promoted at random, or all of them and why."""
    src = "--top" if how == "given" else "inferred from the proxy's ranking"
    if not selected:
        return "none was promoted as the proxy's best: the headline reads them all"
    if random_only:
        return (f"the headline reads the {pairs - selected} promoted at random; the "
                f"{selected} promoted as the proxy's best {top} ({src}) are a selected "
                "sample and left out (promote at random, dse train --sample, for a fidelity "
                "study)")
    return (f"only {pairs - selected} were promoted at random, too few: the headline reads "
            f"all {pairs}, {selected} of them selected as the proxy's best ({src}), and its "
            "interval assumes a random sample it is not")


@click.command("noise", cls=Command)
@click.argument("space_name", metavar="SPACE")
@recipe_option("The recipe whose reruns are read")
@click.option("--show", type=click.IntRange(min=0), default=10, show_default=True,
              help="Models listed (the noisiest first).")
@json_option()
@store_option
def noise_cmd(space_name, recipe, show, as_json, store_path):
    """Seed noise of a space's recipe, from the models trained with several seeds
    (dse train --seeds N): the pooled standard deviation of a rerun (sigma_seed), the share
    of variance between models (intraclass correlation, with its 95% bootstrap interval over
    models and the normal-theory F interval) and each model's spread."""
    from dse.analysis import reruns as tr

    store, space = _store_space(store_path, space_name)
    rows, label = _runs(store, space, recipe)
    nz = tr.noise(rows[rows["status"] == "done"][["model_id", "error"]])
    if as_json:
        echo_json(dict(nz.to_json(), space=space, recipe=label))
        return
    click.echo(f"{space}, recipe {label}")
    click.echo(nz.line())
    click.echo(f"between models: σ = {nz.sigma_between:.2f} points; intraclass correlation "
               f"{nz.icc:.2f} ({nz.level:.0%} interval {nz.icc_lo:.2f} to {nz.icc_hi:.2f}, "
               f"bootstrap over models; {nz.f_lo:.2f} to {nz.f_hi:.2f} if model effects "
               "were normal): the share of the error variance that is the model's, not the "
               "seed's")
    if nz.models_single:
        click.echo(f"({nz.models_single} models with one seed are left out)")
    per = nz.per_model.assign(spread=nz.per_model["max"] - nz.per_model["min"])
    per = per.sort_values("spread", ascending=False).head(show)
    if len(per):
        click.echo(table([dict(model_id=r.model_id, seeds=int(r.n), mean=f"{r.mean:.2f}",
                               sd=f"{r.sd:.2f}", range=f"{r.min:.2f}–{r.max:.2f}")
                          for r in per.itertuples()],
                         ["model_id", "seeds", "mean", "sd", "range"]))


@click.command("curves", cls=Command)
@click.argument("space_name", metavar="SPACE")
@click.option("--recipe", type=RECIPE, default=None, metavar="KEY=VALUE,...",
              help="The recipe whose results are drawn [default: the one with the most "
                   "results that recorded curves].")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Draw the K results with the lowest final error.")
@out_option("<store>/<space>/analysis/curves.png")
@json_option()
@store_option
def curves_cmd(space_name, recipe, top, out, as_json, store_path):
    """Test error and training loss after each epoch of a space's results (those trained
    with dse train --curves have the test error of every epoch; every result has its
    losses)."""
    from dse.analysis import plots, trialplots
    from dse.errors import DseError

    store, space = _store_space(store_path, space_name)
    if recipe:
        rows, label = _runs(store, space, recipe)
    else:  # the recipe with the most results that recorded curves, if any did
        res = store.read_results(space)
        has = res["history_error"].map(lambda h: h is not None and len(h) > 0)
        rows, label = _runs(store, space, None, res[has] if has.any() else res,
                            "dse train --curves")
    rows = rows[rows["status"] == "done"].sort_values(["error", "model_id", "seed"]).head(top)
    if not len(rows):
        raise DseError(f"{space} has no finished result under {label}")
    path = plots.check_path(out or store.analysis_dir(space) / "curves.png")
    plots.save(trialplots.curves_figure(rows, space, label), path, store.root)
    out_rows = []
    for r in rows.itertuples():
        h = list(r.history_error) if r.history_error is not None else []
        out_rows.append(dict(model_id=r.model_id, seed=int(r.seed), error=round(r.error, 2),
                             epochs=len(h) or None,
                             best_epoch=int(np.argmin(h)) + 1 if h else None,
                             best_error=round(min(h), 2) if h else None))
    if as_json:
        echo_json(dict(space=space, recipe=label, results=out_rows, figure=str(path)))
        return
    click.echo(f"{space}, recipe {label}: the {len(rows)} lowest final errors")
    click.echo(table(out_rows, ["model_id", "seed", "error", "best_epoch", "best_error"],
                     ["model_id", "seed", "last epoch", "best epoch", "its error"]))
    if not any(r["epochs"] for r in out_rows):
        click.echo("(no test-error history: these were trained without --curves; the figure "
                   "shows their training losses)")
    click.echo(f"figure: {path}")





def _rungs(ctx, param, value):
    """--rungs 1,3,9 as a tuple of epochs (checked with --eta by the library)."""
    if value is None:
        return None
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of epochs such as 1,3,9") from None


@click.command("halving", cls=Command)
@click.argument("space_name", metavar="SPACE")
@click.option("--eta", type=float, default=3.0, show_default=True,
              help="Keep the best 1/eta of the models at each rung.")
@click.option("--rungs", callback=_rungs, default=None, metavar="E1,E2,...",
              help="Epochs of the rungs, rising; the last is full training [default: 1, "
                   "eta, eta², … up to the longest curve].")
@click.option("--top", "k", type=click.IntRange(min=1), default=None,
              help="Recall of the K best under full training [default: the finalists].")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@json_option()
@store_option
def halving_cmd(space_name, eta, rungs, k, seed, as_json, store_path):
    """Successive halving replayed on a space's stored errors: every model at the first rung,
    the best 1/eta at each next one, against training every model to the last rung (from
    the per-epoch test errors of dse train --curves, or results at each rung's epochs).
    Top-k recall and regret with 95% bootstrap intervals over models, beside one cut at the
    first rung and a random pick."""
    from dse.analysis import halving as hv
    from dse.errors import DseError

    store, space = _store_space(store_path, space_name)
    res = store.read_results(space)
    if not len(res):
        raise DseError(f"{space} has no results yet; train it first (dse train --curves)")
    try:
        eta = hv.check_eta(eta)
    except DseError as e:
        raise DseError(f"--eta: {e}") from None
    try:
        rungs = hv.check_rungs(rungs) if rungs is not None else hv.default_rungs(res, eta)
    except DseError as e:
        raise DseError(f"--rungs: {e}") from None
    m = hv.rung_matrix(res, rungs, space)
    if k is not None and k > len(m.model_ids):
        raise DseError(f"--top {k} exceeds the {len(m.model_ids)} models with errors at "
                       "every rung")
    rp = hv.replay(m.errors, eta, k, seed=seed, rungs=rungs)
    if as_json:
        echo_json(dict(rp.to_json(), space=space, source=m.source,
                       finalists=[m.model_ids[i] for i in rp.finalists]))
        return
    click.echo(f"{space}: {rp.n} models, from {m.source}")
    click.echo(f"successive halving at {', '.join(map(str, rungs))} epochs, eta {eta:g}: "
               f"{' → '.join(map(str, rp.counts))} models; {rp.epochs} epochs trained "
               f"({rp.epochs_resumed} if each rung continued the one before) against "
               f"{rp.epochs_full} for training all {rp.n} to {rungs[-1]}")
    click.echo(table(
        [dict(rule=f"halving ({rp.counts[-1]} finalists)", recall=rp.recall.text(".0%"),
              regret=rp.regret.text()),
         dict(rule=f"best {rp.counts[-1]} at {rungs[0]} epoch{'s' * (rungs[0] != 1)}",
              recall=rp.first_rung_recall.text(".0%"), regret=rp.first_rung_regret.text()),
         dict(rule=f"{rp.counts[-1]} at random", recall=f"{rp.random_recall:.0%} (expected)",
              regret="")],
        ["rule", "recall", "regret"],
        ["rule", f"top-{rp.k} recall [{rp.level:.0%}]", f"regret, points [{rp.level:.0%}]"]))
    click.echo("finalists: " + " ".join(m.model_ids[i] for i in rp.finalists))
