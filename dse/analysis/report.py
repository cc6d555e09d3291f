"""A self-contained HTML report of a store: every analysis of every space, figures embedded
as base64 PNG, no external resources (readable offline, easy to mail or archive)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import warnings
from pathlib import Path

import pandas as pd

from dse import __version__
from dse.analysis import fitlinear, health, plots, population, search, stats
from dse.analysis.population import Selection
from dse.errors import DseError, DseWarning
from dse.files import write_output
from dse.store.core import Store

SECTIONS = [("populations", "Populations"), ("edf", "Error EDFs"),
            ("edf-normalized", "Complexity-normalized EDFs"),
            ("search-efficiency", "Random search efficiency"), ("fit-linear", "fit-linear"),
            ("trends", "Trends and good ranges"), ("importance", "Which choices matter")]

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#775;
font-style:italic}nav a{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}"""


def _img(fig, alt: str) -> str:
    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict], keys: list[str], header: list[str] | None = None) -> str:
    """An HTML table of `keys` of each row (pandas, cells escaped) under `header`."""
    frame = pd.DataFrame([[_cell(r.get(k)) for k in keys] for r in rows],
                         columns=header or keys)
    return frame.to_html(index=False, border=0, escape=True)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.2f}"
    return str(v)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _normalized(df, names, metric="flops", bins=10):
    """compare() normalized by `metric` with the most bins (≤ bins) that leave none empty."""
    last = None
    for k in range(bins, 0, -1):
        try:
            return stats.compare(df, names, metric, k), None
        except DseError as e:
            last = str(e)
            if "do not overlap" in last:
                break
    return None, last


def build(store: Store | str, seed: int = 0, repeats: int = 10_000, top: int = 20,
          selection: Selection = Selection(), names=None, fits=None) -> str:
    """The report's HTML for the populations `names` (dse.analysis.population: SPACE,
    SPACE@STORE, SPACE[EXPR], ...), by default every space in the store (a space whose
    models cannot be read is named in a note and left out, as is a space without the
    chosen regime), over the models the selection picks. `fits`: a cache of linear fits
    (default: the store's, dse.store.fitcache)."""
    store = Store.existing(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DseWarning)
        read = population.load(names, selection, home=store, every_regime=names is None)
    for w in caught:  # show them (once) as well as noting them in the report
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    skipped = [str(w.message) for w in caught if issubclass(w.category, DseWarning)]
    df, names = read.frame, read.labels
    picked = "Selection: " + "; ".join(read.notes) if read.notes else ""
    counts = {s: stats.counts(df, s) for s in names}
    ready = [s for s in names if counts[s]["finished"] > 0]
    parts = {"populations": _populations(df, names, counts, ready, skipped, picked)}
    if not ready:
        for key, _ in SECTIONS[1:]:
            parts[key] = _note("No space has finished models yet; train some with "
                               "`dse train`.")
        return _page(store.root, parts)
    parts.update(_comparisons(df, ready, seed))
    pops = {s: stats.population(df, s) for s in ready}
    fits = fits or store.fit_cache()  # one cache, read once, for every space
    parts["fit-linear"] = ("<p>Per-model quantized linear fit of the per-block widths "
                           "(DDS §3.3): e_fit = mean_j |log(pred_j / obs_j)|.</p>"
                           + "".join(_fit_linear(s, pop, top, fits) for s, pop in pops.items()))
    parts["trends"] = (f"<p>Shaded: the 95% interval of the best model's parameter over "
                       f"{repeats} bootstrap resamples of 25% of the models; line: "
                       "the median.</p>"
                       + "".join(_trends(s, pop, repeats, seed) for s, pop in pops.items()))
    parts["importance"] = (
        "<p>The share of the error variance each parameter explains alone (grey) and beyond "
        "the others (blue), with 95% bootstrap intervals; hatched: not called at α = 0.05 "
        "(permutation test, Holm); red line: the noise ceiling from seed reruns (dse "
        "importance).</p>" + "".join(_importance(store, s, pop, seed, selection.pick)
                                     for s, pop in pops.items()))
    return _page(store.root, parts)


def _importance(store: Store, s: str, pop, seed: int, pick) -> str:
    """One space's importance figure and summary, or a note saying why there is none."""
    from dse.analysis import ceiling as noise
    from dse.analysis import importance, importanceplots

    try:
        cols, constant = importance.parameters(pop)
        ceiling = noise.from_reruns(store.read_results(s), pop, pick.aggregate)
        got = importance.importance(cols, pop["error"].to_numpy(float), pairs=True, seed=seed,
                                    ceiling=ceiling, constant=constant)
    except DseError as e:
        return f"<h3>{html.escape(s)}</h3>" + _note(str(e))
    said = ", ".join(x.param for x in got.shares if x.matters) or "nothing"
    ceil = "unknown (no reruns)" if ceiling is None else f"{ceiling.value:.2f}"
    return (f"<h3>{html.escape(s)}</h3>"
            + _img(importanceplots.importance_figure(got, s), f"{s} importance")
            + _note(f"matters: {said}; explained {got.explained.value:.2f}; noise ceiling "
                    f"{ceil}"))


def _populations(df, names, counts, ready, skipped, picked: str = "") -> str:
    """The table of spaces: kind, data, flops range, counts and error summary."""
    rows = []
    for s in names:
        sub = df[df["space"] == s]
        c = counts[s]
        row = dict(space=s, kind=sub["kind"].iloc[0], dataset=sub["dataset"].iloc[0],
                   flops=f"{sub['flops'].min() / 1e6:.1f}–{sub['flops'].max() / 1e6:.1f} MF",
                   **{k: c[k] for k in ("sampled", "trained", "finished", "diverged",
                                        "failed")})
        if c["finished"]:
            pop = stats.population(df, s)
            row.update(stats.summarize(pop["error"]), untrained=health.health(pop).untrained)
        rows.append(row)
    out = _table(rows, ["space", "kind", "dataset", "flops", "sampled", "trained", "finished",
                        "untrained", "diverged", "failed", "min", "mean", "median"],
                 ["space", "kind", "dataset", "flops", "sampled", "trained", "finished",
                  "did not learn", "diverged", "failed", "min error", "mean error",
                  "median error"])
    sick = [s for s, r in zip(names, rows) if r.get("untrained")]
    if sick:
        out += _note("Did not learn: a finished model whose final training loss is at least "
                     f"{health.LOSS_SHARE:g}·ln C or whose error is at least "
                     f"{health.ERROR_SHARE:g} of chance; claims about a population with "
                     f"{health.UNTRAINED_SHARE:.0%} or more such models are untestable.")
    if skipped:
        out += _note("Skipped: " + "; ".join(skipped))
    if picked:
        out += _note(picked)
    missing = [s for s in names if s not in ready]
    if missing:
        out += _note("No finished models yet (left out below): " + ", ".join(
            f"{s} ({counts[s]['sampled']} sampled, {counts[s]['trained']} trained)"
            for s in missing))
    return out


def _comparisons(df, ready: list[str], seed: int) -> dict:
    """The EDF, flops-normalized EDF and search-efficiency sections."""
    parts = {}
    cmp = stats.compare(df, ready)
    parts["edf"] = _img(plots.edf_figure(cmp), "error EDFs") + _pairs(cmp)
    ncmp, why = _normalized(df, ready)
    if ncmp is None:
        parts["edf-normalized"] = _note(f"Not available: {why}")
    else:
        lo, hi = ncmp.range
        parts["edf-normalized"] = (
            f"<p>Flops-normalized over the common range [{lo:.4g}, {hi:.4g}] in "
            f"{ncmp.bins} log-spaced bins; each bin weighs 1/{ncmp.bins}.</p>"
            + _img(plots.edf_figure(ncmp), "flops-normalized EDFs") + _pairs(ncmp))
    curves = {s: search.search_efficiency(e, w, rng=seed) for s, (e, w) in cmp.curves.items()}
    parts["search-efficiency"] = _img(plots.search_efficiency_figure(curves),
                                      "search efficiency") + _search_table(curves)
    return parts


def _fit_linear(s: str, pop, top: int, fits=None) -> str:
    """One space's fit-linear section (`fits`: the store's cache of fits)."""
    fit = fitlinear.fit_linear_population(pop, top, fits)
    j, sp = fit["joint"], fit["spearman"]
    rho = "undefined" if sp["rho"] is None else f"{sp['rho']:.3f} (p = {sp['p']:.3g})"
    return (f"<h3>{html.escape(s)}</h3><p>{len(pop)} trained models; mean e_fit "
            f"{fit['rows']['e_fit'].mean():.3f}. Joint linear fit over the top {j['top']}:"
            f" w_j ≈ {j['w0']:.1f} + {j['wa']:.1f}·j. Spearman ρ(e_fit, error) = {rho}."
            "</p>" + _img(plots.fit_linear_figure(fit, s), f"{s} fit-linear")
            + _table(fit["rows"].head(min(10, j["top"])).to_dict(orient="records"),
                     ["rank", "model_id", "error", "e_fit", "d", "w0", "wa", "wm"]))


def _trends(s: str, pop, repeats: int, seed: int) -> str:
    """One space's trends section."""
    trs = stats.trends(pop, repeats=repeats, seed=seed)
    return f"<h3>{html.escape(s)}</h3>" + (
        _img(plots.trends_figure(trs, s), f"{s} trends")
        + _table([{k: t[k] for k in ("param", "best", "lo", "median", "hi")} for t in trs],
                 ["param", "best", "lo", "median", "hi"],
                 ["parameter", "best model", "95% lo", "median", "95% hi"])
        if trs else _note("every parameter takes a single value"))


def _windows(exp) -> str:
    if not exp.regimes:
        return f"flops {exp.flops}"
    return "regimes " + ", ".join(f"{r.label} ({r.flops})" for r in exp.regimes)


def _regime_table(t: dict) -> str:
    """Per parameter its trend, the excess of its slope over the sampled medians', the
    slope and each regime's good range with its sampled median (an experiment page)."""
    if "error" in t:
        return _note(t["error"])
    ci = lambda d: f"{d['value']:.2g} [{d['lo']:.2g}, {d['hi']:.2g}]"  # noqa: E731
    rows = [dict(param=p, trend=v["trend"],
                 **({"excess over sampled": ci(v["excess"])} if "excess" in v else {}),
                 slope=ci(v["slope"]),
                 **{r["name"]: f"{r['median']:.4g} [{r['lo']:.4g}, {r['hi']:.4g}]"
                               + (f" (sampled {r['sampled']:.4g})" if "sampled" in r else "")
                    for r in v["regimes"]}) for p, v in t["params"].items()]
    return _table(rows, list(rows[0])) if rows else ""


def _deciding(c: dict) -> dict:
    """A claim's row with the p that decided it: its opposite's for a contradicted claim."""
    if c.get("verdict") == "contradicted" and c.get("p_against") is not None:
        return dict(c, p=c["p_against"], p_adjusted=c.get("p_against_adjusted"))
    return c


def _pairs(cmp) -> str:
    rows = stats.ks_rows(cmp)
    return _table(rows, list(rows[0])) if rows else ""


def _search_table(curves) -> str:
    return _table(search.search_rows(curves), ["k", *curves])


def _page(root, parts) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in SECTIONS)
    body = "".join(f'<section id="{k}"><h2>{html.escape(t)}</h2>{parts[k]}</section>'
                   for k, t in SECTIONS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>dse report: {html.escape(str(root))}</title><style>{CSS}</style></head>"
            f"<body><h1>dse report</h1><p>store <code>{html.escape(str(root))}</code> · "
            f"generated {now} · dse {__version__}</p><nav>{nav}</nav>{body}</body></html>\n")


def write(store: Store | str, out=None, seed: int = 0, repeats: int = 10_000,
          selection: Selection = Selection(), names=None) -> Path:
    """Build the report of the populations `names` (default: every space) and write it
    atomically to `out` (default <store>/report.html)."""
    store = Store.existing(store)
    with store.fit_cache() as fits:  # the fits are kept when the report is written
        text = build(store, seed=seed, repeats=repeats, selection=selection, names=names,
                     fits=fits)
        path = Path(out) if out else store.report_path
        return write_output(path, lambda p: Path(p).write_text(text, encoding="utf-8"),
                            store.root)


# ---- an experiment's page (dse run) ----------------------------------------------------------

def _rounds_section(state: dict) -> str:
    """The looks of an experiment in rounds: per look and claim, n, the statistic, p, the
    sequential p, the boundary and the status."""
    sched = state["schedule"]
    rows = [dict(look=lk["look"], n=lk["n"], claim=c["claim"],
                 statistic=c.get("statistic"), p=c.get("p"), p_seq=c.get("p_seq"),
                 boundary=c.get("boundary"), p_adjusted=c.get("p_adjusted"),
                 status=c["status"] + (f" (look {c['look_decided']})"
                                       if c.get("look_decided") else ""))
            for lk in state["looks"] for c in lk["claims"]]
    head = (f"<h2>Rounds</h2><p>Looks planned at {', '.join(map(str, sched['looks']))} "
            f"models per space; {html.escape(sched['spending'])}; "
            f"{html.escape(state.get('stopped') or 'not finished')}.</p>")
    return head + (_table(rows, ["look", "n", "claim", "statistic", "p", "p_seq", "boundary",
                                 "p_adjusted", "status"],
                          ["look", "n per space", "claim", "statistic", "p (this look)",
                           "sequential p", "boundary (raw p)", "corrected", "status"])
                   if rows else _note("No look taken yet."))


def experiment_page(exp, summary: dict, pngs: dict) -> str:
    """The HTML of one experiment: its settings, the populations with the KS test of each
    step, the claims with their verdicts, the EDF figures, fit-linear and trends."""
    def img(key, alt):
        b = pngs.get(key)
        return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
                f'{base64.b64encode(b).decode()}">' if b else "")

    r = exp.recipe
    settings = (f"<p>{html.escape(exp.about)}</p>" if exp.about else "") + (
        f"<p>{exp.n} models per space from <code>{html.escape(str(exp.path))}</code>; "
        f"dataset {html.escape(exp.dataset)}, {_windows(exp)}, sampling seed {exp.seed}; "
        f"training {r.epochs} epochs, batch {r.batch_size}, lr {r.lr:g}, "
        f"{r.train_subset or 'all'} training images; claims at α = {exp.alpha:g}, "
        f"{html.escape(summary.get('correction', 'none'))} correction, margin "
        f"{summary.get('margin', 1.0):g} points.</p>")
    spaces = _table(summary["spaces"], ["space", "finished", "untrained", "min", "median",
                                        "mean", "vs",
                                        "ks_D", "ks_p", "p_better", "p_worse", "shift",
                                        "shift_lo", "shift_hi"],
                    ["space", "finished", "did not learn", "min error", "median error",
                     "mean error", "against", "KS D", "KS p (two-sided)", "p (better)", "p (worse)",
                     "shift (points)", "95% lo", "95% hi"])
    claims = (_table([_deciding(c) for c in summary["claims"]],
                     ["claim", "verdict", "p", "p_adjusted", "detail"],
                     ["claim", "verdict", "p (that decided)", "p adjusted", "evidence"])
              if summary["claims"] else _note("The experiment states no claims (`expect:`)."))
    figs = img("edf", "error EDFs") + img("edf_steps", "EDF of each step")
    if summary.get("rounds"):
        claims += _rounds_section(summary["rounds"])
    if summary.get("refine"):
        claims += "<h2>Refinement chain</h2>" + _table(
            summary["refine"], ["round", "space", "refines", "verdict", "p", "summary"],
            ["round", "space", "refines", "verdict", "p (at least as good)",
             "constraint and evidence"])
    extra = "".join(f"<h3>fit-linear: {html.escape(s)}</h3>" + img(f"fit_linear_{s}", s)
                    for s in summary["fit_linear"])
    extra += "".join(f"<h3>trends: {html.escape(s)}</h3>" + img(f"trends_{s}", s)
                     + _table(t, ["param", "best", "lo", "median", "hi"],
                              ["parameter", "best model", "95% lo", "median", "95% hi"])
                     for s, t in summary["trends"].items() if t)
    extra += "".join(f"<h3>across flop regimes: {html.escape(s)}</h3>"
                     + img(f"trends_regimes_{s}", s) + _regime_table(t)
                     for s, t in summary.get("regime_trends", {}).items())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = html.escape(exp.name)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dse '
            f"experiment: {title}</title><style>{CSS}</style></head><body>"
            f"<h1>experiment {title}</h1><p>store <code>{html.escape(summary['store'])}"
            f"</code> · generated {now} · dse {__version__}</p>{settings}"
            f"<h2>Claims</h2>{claims}<h2>Populations</h2>{spaces}"
            f"<p>KS: two-sided test against the space before it; p (better) and p (worse): "
            f"one-sided tests of its EDF lying above / below; shift: the Hodges–Lehmann "
            f"shift of its errors from the space before it, with a bootstrap 95% interval."
            f"</p>"
            f"<h2>Error EDFs</h2>{figs}{'<h2>Analyses</h2>' + extra if extra else ''}"
            f"</body></html>\n")
