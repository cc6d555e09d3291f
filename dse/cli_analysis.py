"""Analysis commands (`dse edf compare`, `dse fit-linear`, `dse trends`,
`dse search-efficiency`, `dse report`): registered on the `dse` group.

Each is a thin layer over dse.analysis (numbers), dse.plots (figures) and dse.report (HTML);
matplotlib is imported inside the commands. Figures go to --out or a default path under the
store (docs/analysis.md); nothing here writes to models.parquet or results/.
"""

from __future__ import annotations

import json
import math

import click

from dse.cli import STORE_HELP, _table, cli

OUT_HELP = "Figure file; the extension picks the format (.png, .svg, .pdf) [default: {}]."


def _clean(x):
    """JSON-safe values: numpy scalars to Python, NaN/inf to null."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _echo_json(obj):
    click.echo(json.dumps(_clean(obj), indent=2))


def _fmt(x, digits=2):
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else f"{x:.{digits}f}"


def _load(store_path, spaces):
    from dse import analysis

    root = analysis.existing_store(store_path)
    names = [analysis.resolve_space(root, s) for s in spaces]
    return root, list(dict.fromkeys(names)), analysis.load_population(root, names)


def _out_path(out, default):
    from dse import plots

    return plots.check_path(out if out else default)


@cli.group("edf")
def edf_group():
    """Error EDFs of design spaces."""


@edf_group.command("compare")
@click.argument("spaces", nargs=-1, required=True)
@click.option("--normalize", type=click.Choice(["none", "flops", "params", "acts"]),
              default="none", show_default=True,
              help="Complexity-normalize the EDFs (NDS) over the common range.")
@click.option("--bins", type=click.IntRange(min=1), default=10, show_default=True,
              help="Complexity bins for --normalize.")
@click.option("--out", default=None,
              help=OUT_HELP.format("<store>/analysis/edf_<spaces>[_<normalize>].png"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def edf_compare_cmd(spaces, normalize, bins, out, as_json, store_path):
    """Compare the error EDFs of SPACES (names or aliases) with pairwise KS tests."""
    from dse import analysis, plots

    root, names, df = _load(store_path, spaces)
    suffix = "" if normalize == "none" else f"_{normalize}"
    path = _out_path(out, root / "analysis" / f"edf_{'_'.join(names)}{suffix}.png")
    cmp = analysis.compare(df, names, normalize, bins)
    plots.save(plots.edf_figure(cmp), path)
    counts = {s: analysis.counts(df, s) for s in names}
    if as_json:
        _echo_json(dict(spaces={s: {k: v[k] for k in ("n", "min", "mean", "median")}
                                for s, v in cmp["spaces"].items()},
                        pairs=cmp["pairs"], normalize=normalize, figure=str(path)))
        return
    rows = [dict(space=s, n=v["n"], min=_fmt(v["min"]), mean=_fmt(v["mean"]),
                 median=_fmt(v["median"]), diverged=counts[s]["diverged"],
                 failed=counts[s]["failed"], untrained=counts[s]["sampled"]
                 - counts[s]["trained"], dropped=v["dropped"])
            for s, v in cmp["spaces"].items()]
    keys = ["space", "n", "min", "mean", "median", "diverged", "failed", "untrained"]
    if normalize != "none":
        lo, hi = cmp["range"]
        click.echo(f"normalized by {normalize} over [{lo:.4g}, {hi:.4g}] in {bins} bins "
                   "(weighted mean and median; models outside the range dropped)")
        keys.append("dropped")
    click.echo(_table(rows, keys))
    if cmp["pairs"]:
        click.echo("")
        click.echo(_table([dict(a=p["a"], b=p["b"], D=f"{p['D']:.3f}", p=f"{p['p']:.3g}")
                           for p in cmp["pairs"]], ["a", "b", "D", "p"],
                          ["space A", "space B", "KS D", "p-value"]))
    click.echo(f"\nfigure: {path}")


@cli.command("fit-linear")
@click.option("--space", "space_name", default="anynetxe", show_default=True,
              help="Space name or alias.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Models (lowest error first) in the joint linear fit and the width plot.")
@click.option("--out", default=None, help=OUT_HELP.format("<store>/<space>/analysis/"
                                                          "fit_linear.png"))
@click.option("--json", "as_json", is_flag=True,
              help="Print the per-model rows, the joint fit and the rank correlation.")
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def fit_linear_cmd(space_name, top, out, as_json, store_path):
    """Quantized linear fit (e_fit) of every trained model's per-block widths."""
    from dse import analysis, plots

    root, (space,), df = _load(store_path, [space_name])
    path = _out_path(out, root / space / "analysis" / "fit_linear.png")
    fit = analysis.fit_linear_population(analysis.population(df, space), top)
    table = analysis.save_table(root, space, "fit_linear", fit["rows"])
    plots.save(plots.fit_linear_figure(fit, space), path)
    rows = fit["rows"]
    if as_json:
        _echo_json(dict(space=space, models=rows.to_dict(orient="records"),
                        joint=fit["joint"], spearman=fit["spearman"], table=str(table),
                        figure=str(path)))
        return
    shown = rows.head(fit["joint"]["top"])
    click.echo(_table([dict(rank=int(r["rank"]), model_id=r["model_id"],
                            error=_fmt(r["error"]), e_fit=_fmt(r["e_fit"], 3), d=int(r["d"]),
                            w0=f"{r['w0']:.0f}", wa=_fmt(r["wa"], 1), wm=_fmt(r["wm"], 3))
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
    click.echo(f"table: {table}\nfigure: {path}")


@cli.command("trends")
@click.argument("space_name", metavar="SPACE")
@click.option("--param", "params", multiple=True,
              help="Parameter to plot (repeatable) [default: the space's design parameters; "
                   "RegNet: d w0 wa wm g b; AnyNet: depth d1.. w1.. w_max b g; any: flops "
                   "params acts, and per stage b1.. g1..].")
@click.option("--repeats", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Bootstrap resamples (each 25% of the models, with replacement).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None, help=OUT_HELP.format("<store>/<space>/analysis/"
                                                          "trends.png"))
@click.option("--json", "as_json", is_flag=True, help="Print the good ranges as JSON.")
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def trends_cmd(space_name, params, repeats, seed, out, as_json, store_path):
    """Error against each design parameter with the bootstrap good range (95%, median)."""
    from dse import analysis, plots

    root, (space,), df = _load(store_path, [space_name])
    path = _out_path(out, root / space / "analysis" / "trends.png")
    pop = analysis.population(df, space)
    tr = analysis.trends(pop, list(params), repeats=repeats, seed=seed)
    if not tr:
        if as_json:
            _echo_json(dict(space=space, n=len(pop), repeats=repeats, ranges={}, figure=None))
        else:
            click.echo(f"nothing to plot: every parameter takes a single value among the "
                       f"{len(pop)} trained {space} models (name one with --param)")
        return
    plots.save(plots.trends_figure(tr, space), path)
    ranges = {t["param"]: {k: t[k] for k in ("lo", "median", "hi", "best")} for t in tr}
    if as_json:
        _echo_json(dict(space=space, n=len(pop), repeats=repeats, ranges=ranges,
                        figure=str(path)))
        return
    click.echo(_table([dict(param=p, best=f"{r['best']:.4g}", lo=f"{r['lo']:.4g}",
                            median=f"{r['median']:.4g}", hi=f"{r['hi']:.4g}")
                       for p, r in ranges.items()], ["param", "best", "lo", "median", "hi"],
                      ["parameter", "best model", "95% lo", "median", "95% hi"]))
    click.echo(f"\n{space}: {len(pop)} trained models, {repeats} bootstrap resamples of "
               f"{max(1, int(len(pop) * 0.25))}\nfigure: {path}")


@cli.command("search-efficiency")
@click.argument("spaces", nargs=-1, required=True)
@click.option("--normalize", type=click.Choice(["none", "flops", "params", "acts"]),
              default="none", show_default=True, help="Draw models with normalization weights.")
@click.option("--bins", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=10, show_default=True,
              help="Random partitions per k (each gives n/k draws of k models).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default=None,
              help=OUT_HELP.format("<store>/analysis/search_<spaces>.png"))
@click.option("--json", "as_json", is_flag=True)
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def search_efficiency_cmd(spaces, normalize, bins, rounds, seed, out, as_json, store_path):
    """Expected min error over k random models, k = 1, 2, 4, ..., n (mean ± 2 std)."""
    from dse import analysis, plots

    root, names, df = _load(store_path, spaces)
    suffix = "" if normalize == "none" else f"_{normalize}"
    path = _out_path(out, root / "analysis" / f"search_{'_'.join(names)}{suffix}.png")
    cmp = analysis.compare(df, names, normalize, bins)
    curves = {s: analysis.search_efficiency(e, w, rounds, rng=seed)
              for s, (e, w) in cmp["curves"].items()}
    plots.save(plots.search_efficiency_figure(curves, normalize), path)
    if as_json:
        _echo_json(dict(spaces={s: c.to_dict(orient="records") for s, c in curves.items()},
                        normalize=normalize, figure=str(path)))
        return
    from dse.report import search_rows

    click.echo(_table(search_rows(curves), ["k", *curves]))
    click.echo(f"\nmin error of k random models, mean ± 2 std\nfigure: {path}")


@cli.command("report")
@click.option("--out", default=None, help="HTML file [default: <store>/report.html].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def report_cmd(out, seed, store_path):
    """One self-contained HTML report of every space in the store (figures embedded)."""
    from dse import report

    path = report.write(store_path, out, seed=seed)
    click.echo(f"report: {path}")
