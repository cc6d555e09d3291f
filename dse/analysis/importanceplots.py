"""The importance figure (matplotlib, Agg): each parameter's first-order and total shares of
the error variance with their intervals, the interactions shown, what the model explains in
all, and the noise ceiling as a line (dse.analysis.importance)."""

from __future__ import annotations

import numpy as np

from dse.analysis.plots import plt


def importance_figure(imp, space: str):
    """Horizontal bars with interval whiskers, one row per parameter (then pairs, then the
    model); parameters that matter are drawn solid, the others hatched."""
    rows = [(s.param, s.first, s.total, s.matters) for s in imp.shares]
    rows += [(f"{p.a} × {p.b}", None, p.share, p.interact) for p in imp.pairs or ()]
    rows.append(("model", None, imp.explained, True))
    y = np.arange(len(rows))[::-1].astype(float)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.6))
    for yi, (_, first, total, strong) in zip(y, rows):
        hatch = None if strong else "//"
        if first is not None:
            _bar(ax, yi + 0.2, first, "tab:gray", hatch, 0.35)
        _bar(ax, yi - (0.2 if first is not None else 0), total, "tab:blue", hatch,
             0.35 if first is not None else 0.6)
    if imp.ceiling is not None and np.isfinite(imp.ceiling.value):
        ax.axvline(imp.ceiling.value, color="tab:red", ls="--", lw=1.2,
                   label=f"noise ceiling {imp.ceiling.value:.2f}")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("share of the error variance")
    ax.set_title(f"{space}: which choices matter (n = {imp.n}; hatched: not at "
                 f"α = {imp.alpha:g})", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color="tab:gray"),
               plt.Rectangle((0, 0), 1, 1, color="tab:blue")]
    labels = ["first-order (alone)", "total (beyond the others) / pair / model"]
    extra = ax.get_legend_handles_labels()
    ax.legend(handles + extra[0], labels + extra[1], fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _bar(ax, y, iv, color, hatch, height):
    lo, hi = iv.lo, iv.hi
    err = None if not (np.isfinite(lo) and np.isfinite(hi)) else \
        [[max(iv.value - lo, 0)], [max(hi - iv.value, 0)]]
    ax.barh(y, iv.value, height=height, color=color if hatch is None else "white",
            edgecolor=color, hatch=hatch, xerr=err, capsize=2, error_kw=dict(lw=0.8))
