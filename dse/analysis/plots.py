"""Figures of the analyses (matplotlib, Agg backend): thin functions that take the results of
dse.analysis.stats and return a Figure; `save` writes one by its file extension."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from dse.analysis import stats  # noqa: E402
from dse.errors import DseError  # noqa: E402
from dse.files import write_output  # noqa: E402

FORMATS = ("png", "svg", "pdf")
NORMALIZED_BY = {"flops": "flops", "params": "parameters", "acts": "activations"}


def check_path(path) -> Path:
    """A figure path whose extension names a supported format."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in FORMATS:
        raise DseError(f"cannot write a figure to {path}: the extension must be one of "
                       f"{', '.join('.' + f for f in FORMATS)}")
    return path


def save(fig, path, store=None) -> Path:
    """Write a figure (format from the extension) atomically and close it; `store` is named
    if the file system refuses a figure inside it."""
    path = check_path(path)
    fmt = path.suffix[1:].lower()
    try:
        return write_output(path, lambda p: fig.savefig(p, format=fmt, dpi=150,
                                                                 bbox_inches="tight"), store)
    finally:
        plt.close(fig)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (for embedding); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


BANDS_AUTO = 3  # confidence bands by default only up to this many spaces (else unreadable)
TAIL_CUT = 0.95  # EDF figures show errors up to this quantile of all models drawn


def _edf_colors(n: int):
    """Distinct colours in order: tab10, then a perceptual ramp for long progressions."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    return [plt.get_cmap("viridis")(i / max(1, n - 1)) for i in range(n)]


def _edf_curve(ax, e, w, color, label, eps=None, lw=1.6, ls="-"):
    x, y = stats.edf(e, w)
    xs, ys = np.r_[x[0], x], np.r_[0.0, y]
    ax.step(xs, ys, where="post", lw=lw, color=color, ls=ls, label=label)
    if eps:
        ax.fill_between(xs, np.clip(ys - eps, 0, 1), np.clip(ys + eps, 0, 1), step="post",
                        color=color, alpha=0.15, lw=0)


def _eps(e, w, level):
    return stats.dkw_band(stats.effective_n(w) if w is not None else len(e), level)


def edf_figure(cmp: dict, title: str | None = None, level: float = 0.95, bands: str = "auto",
               cut: float | None = TAIL_CUT):
    """Error EDFs of the compared spaces (stats.compare); the legend gives n, min and mean
    error. `bands`: DKW confidence bands for every space ("all"), none ("none"), or only
    when at most three spaces are drawn ("auto"); with many spaces the lines are drawn in
    order of a progression's colours, the paper's way. The x axis ends at the `cut`
    quantile of all errors (the far tail left out, said under the axis; None: all)."""
    names = list(cmp.curves)
    show = bands == "all" or (bands == "auto" and len(names) <= BANDS_AUTO)
    fig, ax = plt.subplots(figsize=(6.4, 4.4) if len(names) <= 4 else (7.2, 4.8))
    for name, color in zip(names, _edf_colors(len(names))):
        e, w = cmp.curves[name]
        s = cmp.spaces[name]
        _edf_curve(ax, e, w, color, f"{name}  (n={s['n']}, min {s['min']:.2f}, "
                   f"mean {s['mean']:.2f})", _eps(e, w, level) if show else None)
    _edf_axes(ax, cmp)
    _cut_axis(ax, [cmp.curves[n][0] for n in names], cut)
    ax.legend(loc="lower right", fontsize=8 if len(names) <= 4 else 7.5, frameon=True)
    if title is None:
        title = "error EDF"
        if cmp.normalize != "none":
            lo, hi = cmp.range
            title += (f", {cmp.normalize}-normalized over [{lo:.4g}, {hi:.4g}] "
                      f"({cmp.bins} bins)")
    if not show and bands == "auto":
        title += f" (bands: {BANDS_AUTO} spaces or fewer)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _edf_axes(ax, cmp, label=True):
    if label:
        ax.set_xlabel("error (%)")
        ax.set_ylabel("cumulative prob." if cmp.normalize == "none"
                      else f"cumulative prob. (normalized by {NORMALIZED_BY[cmp.normalize]})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)


def _cut_axis(ax, errors: list, cut: float | None) -> None:
    """End the x axis at the `cut` quantile of all errors and say so under it."""
    allx = np.concatenate(errors)
    if cut is None or len(allx) < 2:
        return
    lo, hi = float(allx.min()), float(np.quantile(allx, cut))
    beyond = int((allx > hi).sum())
    if beyond == 0 or hi <= lo:
        return
    ax.set_xlim(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo))
    ax.set_xlabel(f"error (%); axis cut at {hi:.1f} (the {cut:.0%} quantile): {beyond} "
                  f"of {len(allx)} models beyond")


def edf_steps_figure(cmp: dict, order=None, level: float = 0.95, cols: int = 3,
                     cut: float | None = TAIL_CUT):
    """Small multiples of a progression: one panel per step (each space against the one
    before it in `order`), both with DKW bands, the two-sided KS D and p of the step in the
    title; all panels share the error axis, cut at the `cut` quantile of all errors."""
    order = list(order or cmp.curves)
    steps = list(zip(order, order[1:]))
    if not steps:
        raise DseError("a progression needs at least two spaces")
    cols = min(cols, len(steps))
    rows = -(-len(steps) // cols)
    errors = [cmp.curves[s][0] for s in order]
    allx = np.concatenate(errors)
    lo, hi = np.percentile(allx, [0, 100 if cut is None else 100 * cut])
    pad = 0.03 * (hi - lo or 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False,
                             sharex=True, sharey=True)
    colors = dict(zip(order, _edf_colors(len(order))))
    for ax, (a, b) in zip(axes.flat, steps):
        for s, ls in ((a, "--"), (b, "-")):
            e, w = cmp.curves[s]
            _edf_curve(ax, e, w, colors[s], s, _eps(e, w, level), lw=1.5, ls=ls)
        (ea, wa), (eb, wb) = cmp.curves[a], cmp.curves[b]
        d, p = stats.ks(eb, ea, wb, wa)
        ax.set_title(f"{a} → {b}: KS D={d:.2f}, p={p:.2g} (two-sided)", fontsize=8.5)
        _edf_axes(ax, cmp, label=False)
        ax.set_xlim(lo - pad, hi + pad)
        ax.legend(loc="lower right", fontsize=7)
    for ax in list(axes.flat)[len(steps):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("cumulative prob.")
    for ax in axes[-1, :]:
        ax.set_xlabel("error (%)")
    beyond = int((allx > hi).sum())
    if beyond:
        fig.suptitle(f"x axes cut at {hi:.1f}% error (the {cut:.0%} quantile of all models): "
                     f"{beyond} of {len(allx)} models beyond", fontsize=8.5)
    fig.tight_layout()
    return fig


def fit_linear_figure(fit: dict, space: str):
    """Left: per-block widths of the top-K models with the joint linear fit (log y).
    Right: error against e_fit, with Spearman's rank correlation."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    k = fit["joint"]["top"]
    W, d = fit["W"], fit["d"]
    for i in range(k):
        a1.plot(np.arange(d[i]), W[i, :d[i]], color="tab:blue", alpha=0.35, lw=1,
                drawstyle="steps-mid")
    j = np.arange(int(d[:k].max()) if k else 1)
    jf = fit["joint"]
    a1.plot(j, jf["w0"] + jf["wa"] * j, color="black", lw=2,
            label=f"joint fit: w_j ≈ {jf['w0']:.1f} + {jf['wa']:.1f}·j")
    a1.set_yscale("log")
    a1.set_xlabel("block index j")
    a1.set_ylabel("width w_j")
    a1.set_title(f"{space}: per-block widths of the top {k} models", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3, which="both")
    rows = fit["rows"]
    a2.scatter(rows["e_fit"], rows["error"], s=10, alpha=0.6)
    sp = fit["spearman"]
    rho = "n/a" if sp["rho"] is None else f"{sp['rho']:.2f}"
    a2.set_xlabel("e_fit (mean |log(pred/obs)| of the quantized linear fit)")
    a2.set_ylabel("error (%)")
    a2.set_title(f"{space}: error vs e_fit (Spearman ρ = {rho}, n = {sp['n']})", fontsize=10)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def trends_figure(trends: list[dict], space: str, cols: int = 3):
    """Error against each parameter, the bootstrap good range shaded and its median marked."""
    n = max(1, len(trends))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, t in zip(axes.ravel(), trends):
        ax.scatter(t["x"], t["e"], s=8, alpha=0.5)
        ax.axvspan(t["lo"], t["hi"], color="tab:green", alpha=0.2, lw=0)
        ax.axvline(t["median"], color="tab:green", lw=1.5)
        x = t["x"]
        if t["log"] and np.all(x > 0) and x.max() >= 10 * x.min():
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            values = np.unique(x)
            if len(values) <= 8:  # a few discrete values (b, g): tick exactly those
                ax.set_xticks(values)
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.xaxis.set_minor_locator(LogLocator(subs=(2, 5)))
                ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_xlabel(t["label"], fontsize=8)
        ax.set_ylabel("error (%)", fontsize=8)
        ax.set_title(f"{t['param']}: good range [{t['lo']:.4g}, {t['hi']:.4g}], "
                     f"median {t['median']:.4g}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(trends):]:
        ax.axis("off")
    fig.suptitle(f"{space}: error vs design parameters (shaded: 95% bootstrap range of the "
                 "best model's value)", fontsize=10)
    fig.tight_layout()
    return fig


def search_efficiency_figure(curves: dict, normalize: str = "none"):
    """Expected min error of k random models, mean ± 2 std, one curve per space."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, df in curves.items():
        line, = ax.plot(df["k"], df["mean"], marker="o", ms=3, label=name)
        ax.fill_between(df["k"], df["mean"] - 2 * df["std"], df["mean"] + 2 * df["std"],
                        color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("models sampled k")
    ax.set_ylabel("min error of k random models (%)")
    title = "random search efficiency (mean ± 2 std)"
    if normalize != "none":
        title += f", {normalize}-normalized"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def speed_figure(result: dict):
    """Time per image against flops (left) and activations (right), log-log, one colour per
    family, with the least-squares line of all models (the result of dse.compare.speed.measure)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    models = result["models"]
    t = [1e3 / m["images_per_second"] for m in models]  # ms per image
    for ax, key, label in zip(axes, ("flops", "acts"), ("flops (multiply-adds)", "activations")):
        for fam in dict.fromkeys(m["family"] for m in models):
            idx = [i for i, m in enumerate(models) if m["family"] == fam]
            ax.scatter([models[i][key] for i in idx], [t[i] for i in idx], s=18, label=fam)
        fit = result["fits"][key]
        if fit["slope"] is not None:
            x = np.geomspace(min(m[key] for m in models), max(m[key] for m in models), 50)
            ax.plot(x, 1e3 * np.exp(fit["intercept"]) * x ** fit["slope"], color="black",
                    lw=1, label=f"slope {fit['slope']:.2f}, R² {fit['r2']:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("time per image (ms)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    where = "CPU" if result["cpu"] else result["device"]
    fig.suptitle(f"{result['mode']} time on {where}, batch {result['batch_size']}", fontsize=10)
    fig.tight_layout()
    return fig


def regime_trends_figure(trends: list[dict], cx: dict, pop, space: str, cols: int = 3):
    """DDS Figs. 11–12: per parameter its good range (bar), median (line), best model (dot)
    and the median of what was sampled (dashed) per regime against flops (log axis), titled
    with the trend and the excess of the good range's slope over the sampled one; then params,
    acts and (where measured) time per image against flops over each regime's top models,
    with the log-log fit (stats.regimes.by_regime and complexity)."""
    from dse.analysis.scaling import top_models

    extra = [k for k in ("params", "acts", "time") if cx.get(k) and cx[k]["exponent"] is not None]
    n = len(trends) + len(extra)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax, t in zip(flat, trends):
        f = np.array([r["flops"] for r in t["regimes"]])
        lo, med, hi = (np.array([r[k] for r in t["regimes"]]) for k in ("lo", "median", "hi"))
        ax.vlines(f, lo, hi, color="tab:green", lw=6, alpha=0.35, label="95% good range")
        ax.plot(f, med, color="tab:green", marker="_", ms=14, lw=1.2, label="median")
        ax.scatter(f, [r["best"] for r in t["regimes"]], color="black", s=14, zorder=3,
                   label="best model")
        if all("sampled" in r for r in t["regimes"]):
            ax.plot(f, [r["sampled"] for r in t["regimes"]], color="tab:gray", ls="--",
                    marker="x", ms=5, lw=1, label="sampled median")
        _log_flops(ax, f)
        if t["log"] and np.all(lo > 0) and hi.max() >= 4 * lo.min():
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        s = t.get("excess", t["slope"])
        ax.set_title(f"{t['param']}: {t['trend']} (excess {s['value']:.2g} "
                     f"[{s['lo']:.2g}, {s['hi']:.2g}])", fontsize=8)
        ax.set_ylabel(t["label"], fontsize=8)
    best = top_models(pop, cx["top"])
    ticks = [r["flops"] for r in trends[0]["regimes"]] if trends else None
    for ax, key in zip(flat[len(trends):], extra):
        y = best[key] if key != "time" else 1e3 / best["images_per_second"].astype(float)
        ax.scatter(best["flops"], y, s=12, alpha=0.7)
        fit = cx[key]
        x = np.geomspace(best["flops"].min(), best["flops"].max(), 20)
        scale = 1e3 if key == "time" else 1
        ax.plot(x, np.exp(fit["intercept"]) * x ** fit["exponent"] * scale, color="black",
                lw=1, label=f"∝ flops^{fit['exponent']:.2f}, R² {fit['r2']:.2f}")
        _log_flops(ax, ticks)
        ax.set_yscale("log")
        ax.set_ylabel({"params": "parameters", "acts": "activations",
                       "time": "train time per image (ms)"}[key], fontsize=8)
        ax.set_title(f"top {cx['top']} per regime: {key}", fontsize=8)
        ax.legend(fontsize=7)
    for ax in flat[n:]:
        ax.axis("off")
    if trends:
        flat[0].legend(fontsize=7)
    fig.suptitle(f"{space}: good ranges across flop regimes", fontsize=10)
    fig.tight_layout()
    return fig


def _log_flops(ax, ticks=None):
    """A log flops axis ticked at the regimes' flops (often all within one decade)."""
    from dse.units import si

    ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(ticks, [si(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("flops (multiply-adds)", fontsize=8)
    ax.grid(alpha=0.3, which="both")
