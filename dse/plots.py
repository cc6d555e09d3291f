"""Figures of the analyses (matplotlib, Agg backend): thin functions that take the results of
dse.analysis and return a Figure; `save` writes one by its file extension."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from dse import analysis  # noqa: E402
from dse.errors import DseError  # noqa: E402
from dse.store import write_output  # noqa: E402

FORMATS = ("png", "svg", "pdf")
NORMALIZED_BY = {"flops": "flops", "params": "parameters", "acts": "activations"}


def check_path(path) -> Path:
    """A figure path whose extension names a supported format."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in FORMATS:
        raise DseError(f"cannot write a figure to {path}: the extension must be one of "
                       f"{', '.join('.' + f for f in FORMATS)}")
    return path


def save(fig, path) -> Path:
    """Write a figure (format from the extension) atomically and close it."""
    path = check_path(path)
    fmt = path.suffix[1:].lower()
    try:
        return write_output(path, lambda p: fig.savefig(p, format=fmt, dpi=150,
                                                                 bbox_inches="tight"))
    finally:
        plt.close(fig)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (for embedding); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def edf_figure(cmp: dict, title: str | None = None, level: float = 0.95):
    """Error EDFs of the compared spaces (analysis.compare), each with a DKW confidence band;
    the legend gives n, min and mean error."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, (e, w) in cmp["curves"].items():
        s = cmp["spaces"][name]
        x, y = analysis.edf(e, w)
        eps = analysis.dkw_band(analysis.effective_n(w) if w is not None else len(e), level)
        xs, ys = np.r_[x[0], x], np.r_[0.0, y]
        line, = ax.step(xs, ys, where="post", lw=1.8,
                        label=f"{name}  (n={s['n']}, min {s['min']:.2f}, mean {s['mean']:.2f})")
        ax.fill_between(xs, np.clip(ys - eps, 0, 1), np.clip(ys + eps, 0, 1), step="post",
                        color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel("error (%)")
    ax.set_ylabel("cumulative prob." if cmp["normalize"] == "none"
                  else f"cumulative prob. (normalized by {NORMALIZED_BY[cmp['normalize']]})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if title is None:
        title = "error EDF"
        if cmp["normalize"] != "none":
            lo, hi = cmp["range"]
            title += (f", {cmp['normalize']}-normalized over [{lo:.4g}, {hi:.4g}] "
                      f"({cmp['bins']} bins)")
    ax.set_title(title, fontsize=10)
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
