"""Random-search efficiency (NDS; DDS Fig. 9), pure: the expected minimum error of k models
drawn at random from a population, k = 1, 2, 4, ..., n, and its table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dse.analysis.stats import weights
from dse.errors import DseError


def search_sizes(n: int) -> list[int]:
    """k = 1, 2, 4, … up to n, and n itself."""
    ks = [1 << i for i in range(int(np.log2(max(n, 1))) + 1)]
    return ks + ([n] if ks[-1] != n else [])


def search_efficiency(e, w=None, rounds: int = 10, rng=None) -> pd.DataFrame:
    """Expected min error of k random models, k = 1, 2, 4, …, n: per k, `rounds` random
    partitions of the n models into n//k groups of k (without replacement), or with weights
    rounds·(n//k) weighted draws of k (with replacement). Columns k, mean, std, trials."""
    e = np.asarray(e, dtype=float)
    n = len(e)
    if n == 0:
        raise DseError("search efficiency needs at least one finished model")
    rng = np.random.default_rng(rng)
    p = None if w is None else weights(e, w)
    rows = []
    for k in search_sizes(n):
        groups = n // k
        if p is None:
            idx = np.stack([rng.permutation(n)[:groups * k] for _ in range(rounds)])
            mins = e[idx.reshape(-1, k)].min(axis=1)
        else:
            mins = e[rng.choice(n, size=(rounds * groups, k), p=p)].min(axis=1)
        rows.append(dict(k=k, mean=float(mins.mean()), std=float(mins.std()), trials=len(mins)))
    return pd.DataFrame(rows)


def search_rows(curves: dict) -> list[dict]:
    """One row per k of search_efficiency() curves: each space's expected minimum error as
    'mean ± 2 std'."""
    rows = []
    for k in sorted({int(k) for c in curves.values() for k in c["k"]}):
        row = {"k": k}
        for s, c in curves.items():
            hit = c[c["k"] == k]
            row[s] = "" if hit.empty else \
                f"{hit['mean'].iloc[0]:.2f} ± {2 * hit['std'].iloc[0]:.2f}"
        rows.append(row)
    return rows
