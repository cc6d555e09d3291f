"""Figures of trials (matplotlib, Agg): the proxy's fidelity as a scatter of two recipes'
errors, per-epoch curves of a space's results, and error over a recipe's drawn lr × wd."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dse.analysis.plots import plt
from dse.store.status import Status


def fidelity_figure(proxy: np.ndarray, target: np.ndarray, fid, names: tuple[str, str],
                    space: str):
    """Target error against proxy error, one point per model, the proxy's top-k shaded and
    ρ, τ (with their intervals), the overlap and the regret in the title."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    k = fid.top_k.k
    top_p = np.argsort(proxy, kind="stable")[:k]
    top_t = set(np.argsort(target, kind="stable")[:k].tolist())
    colors = ["tab:red" if i in top_t else "tab:blue" for i in range(len(proxy))]
    ax.scatter(proxy, target, s=22, c=colors, alpha=0.8, edgecolors="none")
    ax.scatter(proxy[top_p], target[top_p], s=70, facecolors="none", edgecolors="black",
               linewidths=0.8, label=f"proxy's top {k}")
    ax.scatter([], [], s=22, c="tab:red", label=f"target's top {k}")
    ax.set_xlabel(f"error (%) at {names[0]}")
    ax.set_ylabel(f"error (%) at {names[1]}")
    r, t = fid.spearman, fid.kendall
    ax.set_title(f"{space}: ρ = {r.value:.2f} [{r.lo:.2f}, {r.hi:.2f}], τ = {t.value:.2f} "
                 f"[{t.lo:.2f}, {t.hi:.2f}]\ntop-{k} overlap {fid.top_k.overlap:.0%} "
                 f"(chance {fid.top_k.expected:.0%}), regret {fid.regret:.2f} points "
                 f"({fid.pairs} models)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def curves_figure(rows: pd.DataFrame, space: str, label: str):
    """Test error (left) and training loss (right) after each epoch, one line per result."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    cmap = plt.get_cmap("viridis")
    n = max(1, len(rows) - 1)
    for i, r in enumerate(rows.itertuples()):
        c = cmap(i / n)
        name = f"{r.model_id[:8]} s{r.seed}"
        if r.history_error is not None and len(r.history_error):
            a.plot(np.arange(1, len(r.history_error) + 1), r.history_error, "-o", ms=3,
                   color=c, label=name)
        if r.history_loss is not None and len(r.history_loss):
            b.plot(np.arange(1, len(r.history_loss) + 1), r.history_loss, "-", color=c)
    a.set_xlabel("epoch")
    a.set_ylabel("test error (%)")
    b.set_xlabel("epoch")
    b.set_ylabel("training loss (epoch mean)")
    a.set_title(f"{space}: {label}", fontsize=9)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    if len(rows) <= 12:
        a.legend(fontsize=7)
    return fig


def lr_wd_figure(df: pd.DataFrame, space: str):
    """Each finished model at its drawn (lr, wd), colored by its error's rank (NDS Fig. 12:
    the good region of the recipe)."""
    ok = df[df["status"] == Status.DONE]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    rank = ok["error"].rank(pct=True)
    sc = ax.scatter(ok["lr"], ok["wd"], c=rank, cmap="viridis_r", s=26)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lr")
    ax.set_ylabel("wd")
    ax.set_title(f"{space}: error rank over lr × wd ({len(ok)} models)", fontsize=9)
    fig.colorbar(sc, ax=ax, label="error rank (0 = best)")
    return fig
