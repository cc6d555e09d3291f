"""Analysis: `dse edf compare`, `dse fit-linear`, `dse trends`, `dse search-efficiency`,
`dse report`. Each reads the models that --regime and --where select
(dse.analysis.select), and a space may be named SPACE@STORE to read it from another store.

Each is a thin layer over dse.analysis.stats and dse.analysis.fitlinear (numbers),
dse.analysis.plots (figures) and
dse.analysis.report (HTML); matplotlib is imported inside the commands. Figures go to --out or the
store's default path (dse.store.core.Store.figure_path); nothing here changes models.parquet or a
result (reading many per-model result files compacts them first: dse.store.results).
"""

from __future__ import annotations

import click

from dse.cli.common import (
    POPULATION,
    Command,
    Group,
    compose,
    echo_json,
    echo_notes,
    json_option,
    out_option,
    seed_option,
    selection_options,
    store_option,
    table,
)
from dse.units import fixed

NORMALIZE = click.option("--normalize", type=click.Choice(["none", "flops", "params", "acts"]),
                         default="none", show_default=True,
                         help="Complexity-normalize the EDFs (NDS) over the common range.")
BINS = click.option("--bins", type=click.IntRange(min=1), default=10, show_default=True,
                    help="Complexity bins for --normalize.")


def _load(store_path, spaces, selection):
    """The populations SPACES (Operands) under the selection (dse.analysis.population): the
    store figures go to (the home store, else the first population's), their labels, their
    rows and the selection's notes."""
    from dse.analysis import population
    from dse.store.core import Store

    home = Store.existing(store_path) if any(op.store is None for op in spaces) \
        or Store(store_path).root.is_dir() else Store.existing(spaces[0].store)
    read = population.load(spaces, selection, home=home)
    return home, read.labels, read.frame, read.notes


def _load_one(store_path, operand, selection):
    """One population in the store it lives in: the store, its label, its rows and the
    selection's notes."""
    from dse.analysis import population
    from dse.store.core import Store

    store = Store.existing(operand.store or store_path)
    read = population.load([population.Operand(operand.space, None, operand.expr)], selection,
                           home=store)
    return store, read.labels[0], read.frame, read.notes


def _figure(out, default):
    from dse.analysis import plots

    return plots.check_path(out if out else default)


@click.group("edf", cls=Group)
def edf_group():
    """Error EDFs of design spaces."""


@edf_group.command("compare")
@click.argument("spaces", nargs=-1, required=True)
@compose(NORMALIZE, BINS)
@click.option("--bands", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True,
              help="95% confidence bands: for every space, none, or only for 3 spaces or fewer.")
@click.option("--steps", is_flag=True,
              help="Small multiples instead: each space against the one before it, with bands.")
@click.option("--split", "splits", multiple=True, metavar="EXPR",
              help="Sub-populations of one SPACE instead: --split \"g == 1\" \"g > 1\" (one "
                   "EXPR: it against the rest).")
@selection_options
@out_option("<store>/analysis/edf_<spaces>[_<normalize>][_steps].png")
@json_option("Print one JSON object.")
@store_option
def edf_compare_cmd(spaces, normalize, bins, bands, steps, splits, selection, out, as_json,
                    store_path):
    """Compare the error EDFs of SPACES (names, aliases or SPACE@STORE) with pairwise KS
    tests, or of sub-populations of one space (--split)."""
    from dse.analysis import plots, population, select, stats

    if splits:  # `--split A B`: B arrives among SPACES
        splits, spaces = splits + spaces[1:], spaces[:1]
    store, names, df, notes = _load(store_path, population.operands(spaces), selection)
    if splits:
        df, names = select.split(df, names[0], splits)
    suffix = ("" if normalize == "none" else f"_{normalize}") + ("_steps" if steps else "")
    path = _figure(out, store.figure_path("edf", [population.file_label(n) for n in names],
                                          suffix))
    cmp = stats.compare(df, names, normalize, bins)
    if steps and len(names) < 2:
        raise click.BadParameter("needs at least two spaces", param_hint="'--steps'")
    plots.save(plots.edf_steps_figure(cmp, names) if steps else
               plots.edf_figure(cmp, bands=bands), path, store.root)
    counts = {s: stats.counts(df, s) for s in names}
    if as_json:
        echo_json(dict(cmp.to_json(), figure=str(path), selection=dict(
            selection.to_json(), notes=notes, split=list(splits) or None)))
        return
    echo_notes(notes)
    rows = [dict(space=s, n=v["n"], min=fixed(v["min"]), mean=fixed(v["mean"]),
                 median=fixed(v["median"]), diverged=counts[s]["diverged"],
                 failed=counts[s]["failed"], untrained=counts[s]["sampled"]
                 - counts[s]["trained"], dropped=v["dropped"])
            for s, v in cmp.spaces.items()]
    keys = ["space", "n", "min", "mean", "median", "diverged", "failed", "untrained"]
    if normalize != "none":
        lo, hi = cmp.range
        click.echo(f"normalized by {normalize} over [{lo:.4g}, {hi:.4g}] in {bins} bins "
                   "(weighted mean and median; models outside the range dropped)")
        keys.append("dropped")
    click.echo(table(rows, keys))
    if cmp.pairs:
        click.echo("")
        click.echo(table(stats.ks_rows(cmp), ["space A", "space B", "KS D", "p-value"]))
    click.echo(f"\nfigure: {path}")


@click.command("fit-linear", cls=Command)
@click.option("--space", "space_name", type=POPULATION, default="anynetxe", show_default=True,
              help="Space name or alias.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Models (lowest error first) in the joint linear fit and the width plot.")
@selection_options
@out_option("<store>/<space>/analysis/fit_linear.png")
@json_option("Print the per-model rows, the joint fit and the rank correlation.")
@store_option
def fit_linear_cmd(space_name, top, selection, out, as_json, store_path):
    """Quantized linear fit (e_fit) of every trained model's per-block widths."""
    from dse.analysis import fitlinear, plots, stats

    store, space, df, notes = _load_one(store_path, space_name, selection)
    path = _figure(out, store.figure_path("fit_linear", [space]))
    with store.fit_cache() as fits:  # kept when the outputs are written
        fit = fitlinear.fit_linear_population(stats.population(df, space), top, fits)
        saved = store.save_table(space, "fit_linear", fit["rows"])
        plots.save(plots.fit_linear_figure(fit, space), path, store.root)
    rows = fit["rows"]
    if as_json:
        echo_json(dict(space=space, models=rows.to_dict(orient="records"),
                       joint=fit["joint"], spearman=fit["spearman"], table=str(saved),
                       figure=str(path), selection=dict(selection.to_json(), notes=notes)))
        return
    echo_notes(notes)
    shown = rows.head(fit["joint"]["top"])
    click.echo(table([dict(rank=int(r["rank"]), model_id=r["model_id"],
                           error=fixed(r["error"]), e_fit=fixed(r["e_fit"], 3), d=int(r["d"]),
                           w0=f"{r['w0']:.0f}", wa=fixed(r["wa"], 1), wm=fixed(r["wm"], 3))
                      for _, r in shown.iterrows()],
                     ["rank", "model_id", "error", "e_fit", "d", "w0", "wa", "wm"]))
    j, sp = fit["joint"], fit["spearman"]
    click.echo(f"\n{space}: {len(rows)} trained models, mean e_fit {rows['e_fit'].mean():.3f}, "
               f"median {rows['e_fit'].median():.3f}")
    click.echo(f"joint linear fit over the top {j['top']}: w_j ≈ {j['w0']:.1f} + "
               f"{j['wa']:.1f}·j  (DDS, best 20 AnyNetX_E: 48 + 48·j)")
    if sp["rho"] is None:
        click.echo(f"Spearman ρ(e_fit, error): undefined for {sp['n']} model(s)")
    else:
        click.echo(f"Spearman ρ(e_fit, error) = {sp['rho']:.3f} (p = {sp['p']:.3g}, "
                   f"n = {sp['n']})")
    click.echo(f"table: {saved}\nfigure: {path}")


@click.command("trends", cls=Command)
@click.argument("space_name", metavar="SPACE", type=POPULATION)
@click.option("--param", "params", multiple=True,
              help="Parameter to plot (repeatable) [default: the space's design parameters; "
                   "RegNet: d w0 wa wm g b; AnyNet: depth d1.. w1.. w_max b g; any: flops "
                   "params acts, and per stage b1.. g1..].")
@click.option("--by", type=click.Choice(["none", "regime"]), default="none", show_default=True,
              help="regime: each parameter's good range per flop regime against flops, the "
                   "slope of its centre (stable / increasing / decreasing), and how params, "
                   "acts and time grow with flops over each regime's top models (DDS §4).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="--by regime: the models per regime whose complexity is fitted.")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Bootstrap resamples [default: 10000 resamples of 25% of the models; "
                   "--by regime: 2000 resamples of each regime's models for the slope].")
@selection_options
@seed_option()
@out_option("<store>/<space>/analysis/trends.png; --by regime: trends_regimes.png")
@json_option("Print the good ranges as JSON.")
@store_option
def trends_cmd(space_name, params, by, top, repeats, selection, seed, out, as_json,
               store_path):
    """Error against each design parameter with the bootstrap good range (95%, median);
    --by regime: the good ranges across flop regimes and their trends."""
    from dse.analysis import plots, stats

    if by == "regime" and selection.regime is not None:
        raise click.UsageError("--by regime reads every regime; leave out --regime (--where "
                               "can drop some)")
    store, space, df, notes = _load_one(store_path, space_name, selection)
    pop = stats.population(df, space)
    if by == "regime":
        return _trends_by_regime(store, space, pop, params, top, repeats or 2000, seed, out,
                                 as_json, selection)
    repeats = repeats or 10_000
    path = _figure(out, store.figure_path("trends", [space]))
    tr = stats.trends(pop, list(params), repeats=repeats, seed=seed)
    if not tr:
        if as_json:
            echo_json(dict(space=space, n=len(pop), repeats=repeats, ranges={}, figure=None))
        else:
            click.echo(f"nothing to plot: every parameter takes a single value among the "
                       f"{len(pop)} trained {space} models (name one with --param)")
        return
    plots.save(plots.trends_figure(tr, space), path, store.root)
    ranges = {t["param"]: {k: t[k] for k in ("lo", "median", "hi", "best")} for t in tr}
    grid = _lr_wd(store, space, pop, tr, path)
    if as_json:
        echo_json(dict(space=space, n=len(pop), repeats=repeats, ranges=ranges,
                       figure=str(path), lr_wd_figure=grid,
                       selection=dict(selection.to_json(), notes=notes)))
        return
    echo_notes(notes)
    click.echo(table([dict(param=p, best=f"{r['best']:.4g}", lo=f"{r['lo']:.4g}",
                           median=f"{r['median']:.4g}", hi=f"{r['hi']:.4g}")
                      for p, r in ranges.items()], ["param", "best", "lo", "median", "hi"],
                     ["parameter", "best model", "95% lo", "median", "95% hi"]))
    click.echo(f"\n{space}: {len(pop)} trained models, {repeats} bootstrap resamples of "
               f"{max(1, int(len(pop) * 0.25))}\nfigure: {path}")
    if grid:
        click.echo(f"lr × wd figure: {grid}")


def _lr_wd(store, space, pop, tr, path) -> str | None:
    """Where both lr and wd vary (drawn per model) and are drawn: error rank over lr × wd
    (NDS Fig. 12), beside the trends figure; None otherwise."""
    from dse.analysis import plots, trialplots

    drawn = {t["param"] for t in tr}
    if not {"lr", "wd"} <= drawn:
        return None
    grid = path.with_name(f"{path.stem}_lr_wd{path.suffix}")
    plots.save(trialplots.lr_wd_figure(pop, space), grid, store.root)
    return str(grid)


def _trends_by_regime(store, space, pop, params, top, repeats, seed, out, as_json,
                      selection):
    """`dse trends SPACE --by regime`: the table (or JSON) and the figure."""
    from dse.analysis import plots, scaling

    rows = scaling.by_regime(pop, list(params), repeats=repeats, seed=seed)
    cx = scaling.complexity(pop, top)
    path = _figure(out, store.figure_path("trends_regimes", [space]))
    plots.save(plots.regime_trends_figure(rows, cx, pop, space), path)
    if as_json:
        echo_json(dict(space=space, by="regime", n=len(pop), repeats=repeats,
                       params={r["param"]: {k: r[k] for k in scaling.KEYS}
                               for r in rows},
                       complexity=cx, figure=str(path), selection=selection.to_json()))
        return
    names = [r["name"] for r in rows[0]["regimes"]]
    cells = [dict(param=r["param"], trend=r["trend"],
                  slope=f"{r['slope']['value']:.2g} [{r['slope']['lo']:.2g}, "
                        f"{r['slope']['hi']:.2g}]",
                  excess=f"{r['excess']['value']:.2g} [{r['excess']['lo']:.2g}, "
                         f"{r['excess']['hi']:.2g}]",
                  **{g["name"]: f"{g['median']:.4g} [{g['lo']:.4g}, {g['hi']:.4g}] "
                                f"best {g['best']:.4g} sampled {g['sampled']:.4g}"
                     for g in r["regimes"]})
             for r in rows]
    click.echo(table(cells, ["param", "trend", "excess", "slope", *names],
                     ["parameter", "trend", "excess over sampled [95%]",
                      "slope per doubling [95%]",
                      *(f"{g['name']} ({g['flops'] / 1e6:.3g} MF, n={g['n']})"
                        for g in rows[0]["regimes"])]))
    fits = ", ".join(f"{k} ∝ flops^{cx[k]['exponent']:.2f} (R² {cx[k]['r2']:.2f})"
                     for k in ("params", "acts", "time")
                     if cx.get(k) and cx[k]["exponent"] is not None)
    click.echo(f"\ncells: good range median [95%], the best model's value and the median "
               f"of what was sampled; slope of the good-range median against log2 flops, "
               f"{repeats} resamples of each regime (log-scale parameters in doublings); the "
               f"trend is the excess of that slope over the sampled medians' (the window "
               f"moves what is drawn)\ntop {top} per regime ({cx['n']} models): "
               f"{fits or 'too few models to fit'}\nfigure: {path}")


@click.command("search-efficiency", cls=Command)
@click.argument("spaces", nargs=-1, required=True, type=POPULATION)
@compose(NORMALIZE, BINS)
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True,
              help="Random partitions per k (each gives n/k draws of k models).")
@seed_option()
@selection_options
@out_option("<store>/analysis/search_<spaces>[_<normalize>].png")
@json_option("Print one JSON object.")
@store_option
def search_efficiency_cmd(spaces, normalize, bins, rounds, seed, selection, out, as_json,
                          store_path):
    """Expected min error over k random models, k = 1, 2, 4, ..., n (mean ± 2 std)."""
    from dse.analysis import plots, population, search, stats

    store, names, df, notes = _load(store_path, spaces, selection)
    suffix = "" if normalize == "none" else f"_{normalize}"
    path = _figure(out, store.figure_path("search", [population.file_label(n) for n in names],
                                          suffix))
    cmp = stats.compare(df, names, normalize, bins)
    curves = {s: search.search_efficiency(e, w, rounds, rng=seed)
              for s, (e, w) in cmp.curves.items()}
    plots.save(plots.search_efficiency_figure(curves, normalize), path, store.root)
    if as_json:
        echo_json(dict(spaces={s: c.to_dict(orient="records") for s, c in curves.items()},
                       normalize=normalize, figure=str(path),
                       selection=dict(selection.to_json(), notes=notes)))
        return
    echo_notes(notes)
    click.echo(table(search.search_rows(curves), ["k", *curves]))
    click.echo(f"\nmin error of k random models, mean ± 2 std\nfigure: {path}")


@click.command("report", cls=Command)
@click.argument("spaces", nargs=-1, type=POPULATION)
@click.option("--out", default=None, help="HTML file [default: <store>/report.html].")
@selection_options
@seed_option()
@store_option
def report_cmd(spaces, out, selection, seed, store_path):
    """One self-contained HTML report of the populations SPACES (SPACE, SPACE@STORE,
    SPACE[EXPR], SPACE@STORE[EXPR]; default: every space in the store), figures embedded."""
    from dse.analysis import report
    from dse.store.core import Store

    path = report.write(Store.existing(store_path), out, seed=seed, selection=selection,
                        names=list(spaces) or None)
    click.echo(f"report: {path}")
