"""Analysis speed: EDF/KS on 100k models and fit-linear on 500 AnyNetX_E models, each side by
side with a straightforward baseline in the same run (targets: ≤ 2 s and ≤ 5 s).

    .venv/bin/python bench/analysis_speed.py [--n-edf 100000] [--n-fit 500] [--baseline-fit 100]

Baselines: the EDF evaluated point by point on a 1000-point grid and the KS statistic by a
two-pointer merge in Python (on errors with ties, as a 10k-image test set gives, and on
distinct errors); fit-linear as a per-model loop over a fixed (w_0, w_a, w_m) grid
(24 × 48 × 24 points, each prediction from regnet.quantized_widths), the grid search as one
would first write it. fit-linear quality is reported with the speed: mean e_fit on the same
models, and how many RegNet-generated width sequences each method reproduces exactly.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from dse.analysis import fitlinear
from dse.analysis import stats as A
from dse.data import datasets
from dse.space import definition as spaces
from dse.space import regnet, sampling


def best_of(fn, repeat=3):
    """(min wall seconds, min CPU seconds of this process, last result) over `repeat` calls.
    CPU time is the honest number on a loaded machine; numpy runs these on one core."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, out


# ---- EDF / KS ---------------------------------------------------------------------------------


def edf_ks_dse(a, b, ca, cb):
    """What `dse edf compare --normalize flops` computes for two populations."""
    xa, ya = A.edf(a)
    xb, yb = A.edf(b)
    d, p = A.ks(a, b)
    lo, hi = A.common_range([ca, cb])
    wa, wb = A.complexity_weights(ca, lo, hi, 10), A.complexity_weights(cb, lo, hi, 10)
    dn, pn = A.ks(a, b, wa, wb)
    return d, p, dn, pn, len(xa) + len(xb)


def edf_ks_baseline(a, b, grid=1000):
    """EDF point by point on a grid, KS D by a two-pointer merge in Python."""
    pts = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), grid)
    fa = [float(np.mean(a < x)) for x in pts]
    fb = [float(np.mean(b < x)) for x in pts]
    sa, sb = sorted(a.tolist()), sorted(b.tolist())
    i = j = 0
    d = 0.0
    while i < len(sa) and j < len(sb):
        x = min(sa[i], sb[j])
        while i < len(sa) and sa[i] == x:
            i += 1
        while j < len(sb) and sb[j] == x:
            j += 1
        d = max(d, abs(i / len(sa) - j / len(sb)))
    return d, fa, fb


# ---- fit-linear -------------------------------------------------------------------------------


def fit_baseline(W, d):
    """Per-model loop over a fixed (w_0, w_a, w_m) grid."""
    w0 = np.unique(np.round(np.geomspace(8, 1024, 24) / 8) * 8)
    wa = np.geomspace(1, 512, 48)
    wm = np.geomspace(1.5, 3.0, 24)
    g0, ga, gm = (x.ravel() for x in np.meshgrid(w0, wa, wm, indexing="ij"))
    out = []
    for i in range(len(d)):
        obs = W[i, :d[i]]
        pred = regnet.quantized_widths(np.full(len(g0), d[i]), g0, ga, gm).w
        e = np.abs(np.log(pred / obs)).mean(axis=1)
        k = int(np.argmin(e))
        out.append((g0[k], ga[k], gm[k], e[k]))
    return np.array(out)


def anynetxe_widths(n, seed=0):
    space = spaces.load("anynetxe")
    task = datasets.task("fashion-mnist")
    rows = sampling.sample(space, n, task, sampling.Window(*datasets.default_flops_window(
        "fashion-mnist")), sampling.Window(), sampling.Window(), seed)
    return fitlinear.block_widths([r["ds"] for r in rows], [r["ws"] for r in rows])


def regnet_widths(n, seed=1):
    r = np.random.default_rng(seed)
    lu = lambda lo, hi: np.exp(r.uniform(np.log(lo), np.log(hi), n))  # noqa: E731
    d = r.integers(12, 29, n)
    gen = regnet.quantized_widths(d, np.round(lu(8, 256) / 8) * 8, np.round(lu(8, 256), 1),
                                  np.round(lu(2, 3), 3))
    return gen.w, d


def exact(W, d, w0, wa, wm):
    pred = regnet.quantized_widths(d, w0, wa, wm).w
    return int((pred == W[:, :pred.shape[1]]).all(axis=1).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-edf", type=int, default=100_000, help="models per population")
    ap.add_argument("--n-fit", type=int, default=500)
    ap.add_argument("--baseline-fit", type=int, default=100,
                    help="models the fit-linear baseline runs on (it is slow)")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; numpy {np.__version__}")

    rng = np.random.default_rng(0)
    n = args.n_edf
    ca, cb = rng.uniform(2e7, 2.5e7, n), rng.uniform(2.1e7, 2.6e7, n)
    ea, eb = rng.normal(12, 1.5, n), rng.normal(11.5, 1.5, n)
    # errors on a 10k-image test set are multiples of 0.01%: many ties; then all distinct
    for what, a, b in (("errors in steps of 0.01%", np.round(ea, 2), np.round(eb, 2)),
                       ("all errors distinct", ea, eb)):
        w_dse, c_dse, (d, p, dn, pn, pts) = best_of(lambda a=a, b=b: edf_ks_dse(a, b, ca, cb))
        w_base, c_base, (d_base, _, _) = best_of(lambda a=a, b=b: edf_ks_baseline(a, b),
                                                  repeat=1)
        assert abs(d - d_base) < 1e-12, (d, d_base)
        print(f"\nEDF/KS, two populations of {n:,} models, {what}: dse {w_dse:.3f} s wall / "
              f"{c_dse:.3f} s CPU (both EDFs at all {pts:,} distinct errors, KS D = {d:.4f} "
              f"p = {p:.3g}, flops-normalized weights and weighted KS D = {dn:.4f}); "
              f"baseline {w_base:.3f} s wall / {c_base:.3f} s CPU (1000-point EDFs, same D); "
              f"CPU ratio {c_base / c_dse:.1f}x; target ≤ 2 s: "
              f"{'met' if max(w_dse, c_dse) <= 2 else 'see CPU'}")

    W, dd = anynetxe_widths(args.n_fit)
    w_fit, c_fit, fit = best_of(lambda: fitlinear.fit_linear(W, dd), repeat=2)
    k = min(args.baseline_fit, len(dd))
    w_k, c_k, fit_k = best_of(lambda: fitlinear.fit_linear(W[:k], dd[:k]), repeat=2)
    w_b, c_b, base = best_of(lambda: fit_baseline(W[:k], dd[:k]), repeat=1)
    print(f"\nfit-linear, {len(dd)} AnyNetX_E models (fashion-mnist window, mean depth "
          f"{dd.mean():.1f}): dse {w_fit:.2f} s wall / {c_fit:.2f} s CPU, mean e_fit "
          f"{fit['e_fit'].mean():.4f}; target ≤ 5 s: "
          f"{'met' if max(w_fit, c_fit) <= 5 else 'see CPU'}")
    print(f"  on the first {k}: dse {w_k:.2f} s wall / {c_k:.2f} s CPU (mean e_fit "
          f"{fit_k['e_fit'].mean():.4f}), baseline grid {w_b:.2f} s wall / {c_b:.2f} s CPU "
          f"(mean e_fit {base[:, 3].mean():.4f}); CPU ratio {c_b / c_k:.1f}x; dse e_fit lower "
          f"or equal on {int((fit_k['e_fit'].to_numpy() <= base[:, 3] + 1e-12).sum())}/{k}")
    Wr, dr = regnet_widths(k)
    fr = fitlinear.fit_linear(Wr, dr)
    br = fit_baseline(Wr, dr)
    print(f"  {k} RegNet-generated width sequences reproduced exactly: dse "
          f"{exact(Wr, dr, fr['w0'], fr['wa'], fr['wm'])}/{k} (max e_fit "
          f"{fr['e_fit'].max():.4f}), baseline {exact(Wr, dr, *br[:, :3].T)}/{k} "
          f"(max e_fit {br[:, 3].max():.4f})")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
