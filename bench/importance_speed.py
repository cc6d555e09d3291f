"""Importance speed: dse.analysis.importance on RegNetX populations drawn by dse's sampler
(lr and wd drawn per model, a planted error), 1,000 models with pairs and 100,000 without,
beside a baseline that refits the bootstrap's models from the resampled rows.

    .venv/bin/python bench/importance_speed.py [--small 1000] [--large 100000]

dse: the whole analysis with its defaults (200 bootstrap resamples, 999 permutations, or the
F distribution past 5,000 models). Baseline: the same shares' bootstrap done the direct way,
each resample's models refit by least squares on its rows (np.linalg.lstsq, one fit per
parameter plus the full model) — over 20 resamples scaled by 10 at the small size, over 10
scaled by 20 at the large one. Times are wall seconds; BLAS threads as the environment sets
them (OPENBLAS_NUM_THREADS=1 on a shared machine: see bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dse.analysis import fanova  # noqa: E402
from dse.analysis import importance as imp  # noqa: E402
from dse.space import definition as spaces  # noqa: E402
from dse.space.sampling import Window, sample  # noqa: E402
from dse.space.spec import Task  # noqa: E402


def population(n: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """n RegNetX models in 100M–1.6G flops with lr, wd drawn log-uniformly, and errors
    30 + 12·(w_m − 2.5)² + 2·[g = 1] + 0.75·(log10 lr·wd + 4)² + N(0, 0.7²)."""
    rows = pd.DataFrame(sample(spaces.load("regnetx"), n, Task(), Window(100e6, 1.6e9),
                               seed=seed))
    rng = np.random.default_rng(seed)
    lr, wd = 10 ** rng.uniform(-2, 0, n), 10 ** rng.uniform(-5, -3, n)
    cols = dict(d=rows["d"].to_numpy(float), w0=rows["w0"].to_numpy(float),
                wa=rows["wa"].to_numpy(float), wm=rows["wm"].to_numpy(float),
                g=rows["group_w"].to_numpy(float), lr=lr, wd=wd)
    e = (30 + 12 * (cols["wm"] - 2.5) ** 2 + 2 * (cols["g"] == 1)
         + 0.75 * (np.log10(lr * wd) + 4) ** 2 + rng.normal(0, 0.7, n))
    return cols, e


def baseline(cols: dict, e: np.ndarray, n_boot: int, seed: int = 0) -> float:
    """The direct bootstrap: every resample's fits redone by least squares on its rows."""
    n = len(e)
    k = imp._auto_bins(cols, n)
    b = {p: fanova.basis(v, k) for p, v in cols.items()}
    x = np.hstack([np.ones((n, 1)), *b.values()])
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        y = e[i]
        for cols_ in [x, *(np.hstack([np.ones((n, 1)), *(b[q] for q in b if q != p)])
                           for p in b), *(np.hstack([np.ones((n, 1)), b[p]]) for p in b)]:
            c = cols_[i]
            np.linalg.lstsq(c, y, rcond=None)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=100_000)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for n, pairs, scale in ((a.small, True, 10), (a.large, False, 20)):
        t = time.perf_counter()
        cols, e = population(n)
        drawn = time.perf_counter() - t
        t = time.perf_counter()
        got = imp.importance(cols, e, pairs=pairs)
        dse_s = time.perf_counter() - t
        base_s = baseline(cols, e, 200 // scale) * scale
        found = ", ".join(s.param for s in got.shares if s.matters)
        pair = [f"{p.a}×{p.b}" for p in got.pairs or () if p.interact]
        print(f"n = {n:,} (sampled in {drawn:.1f} s), pairs {pairs}: dse {dse_s:.2f} s "
              f"({got.test}); baseline bootstrap alone {base_s:.2f} s"
              f" ({200 // scale} resamples × {scale}); ratio {base_s / dse_s:.1f}×; "
              f"matters: {found}; pairs found: {', '.join(pair) or '-'}")


if __name__ == "__main__":
    main()
