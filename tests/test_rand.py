"""Discrete parameter distributions equal continuous draws rounded to q."""

import itertools

import numpy as np
import pytest

from dse.errors import DseError
from dse.space import dists as rand


def _rounded(samples, q):
    return np.round(samples / q) * q


@pytest.mark.parametrize("make,low,high,q,cont", [
    (rand.log_uniform, 8, 1024, 8, lambda r, n: np.exp(r.uniform(np.log(8), np.log(1024), n))),
    (rand.log_uniform, 1, 16, 1, lambda r, n: np.exp(r.uniform(0, np.log(16), n))),
    (rand.uniform, 12, 28, 1, lambda r, n: r.uniform(12, 28, n)),
])
def test_pmf_matches_continuous_sampling_then_rounding(make, low, high, q, cont):
    dist = make(low, high, q)
    assert abs(dist.probs.sum() - 1) < 1e-12
    x = _rounded(cont(np.random.default_rng(0), 400_000), q)
    emp = np.array([(x == v).mean() for v in dist.values])
    assert emp.sum() == pytest.approx(1.0)
    assert np.abs(emp - dist.probs).max() < 4e-3
    drawn = dist.draw(np.random.default_rng(1), 400_000)
    emp2 = np.array([(drawn == v).mean() for v in dist.values])
    assert np.abs(emp2 - dist.probs).max() < 4e-3


def test_power2_and_choice():
    assert rand.power2(1, 32).values.tolist() == [1, 2, 4, 8, 16, 32]
    assert rand.choice([4, 1, 2, 1]).values.tolist() == [1, 2, 4]
    assert rand.from_config("x", 1).values.tolist() == [1]


def test_non_decreasing_equals_rejection_sampling():
    dist = rand.log_uniform(1, 5, 1)  # 5 values, skewed probabilities
    k, n = 3, 300_000
    got = dist.draw_non_decreasing(np.random.default_rng(0), n, k)
    assert (np.diff(got, axis=1) >= 0).all()
    # exact target: product pmf restricted to non-decreasing sequences
    p = dict(zip(dist.values.tolist(), dist.probs))
    seqs = [s for s in itertools.product(dist.values.tolist(), repeat=k) if list(s) == sorted(s)]
    mass = np.array([np.prod([p[v] for v in s]) for s in seqs])
    mass /= mass.sum()
    counts = {tuple(r): 0 for r in seqs}
    for row in map(tuple, got.tolist()):
        counts[row] += 1
    emp = np.array([counts[s] for s in seqs]) / n
    assert np.abs(emp - mass).max() < 3e-3


@pytest.mark.parametrize("cfg,msg", [
    ({"dist": "gauss", "low": 1, "high": 2}, "unknown dist"),
    ({"dist": "log_uniform", "low": 1, "high": 2}, "needs ['q']"),
    ({"dist": "log_uniform", "low": 9, "high": 2, "q": 1}, "greater than high"),
    ({"dist": "uniform", "low": -1, "high": 2, "q": 1}, "positive number"),
    ({"dist": "power2", "low": 3, "high": 8}, "power of two"),
    ({"dist": "uniform", "low": 1, "high": 2, "q": 1, "x": 1}, "unknown key"),
    ({"low": 1}, "expected a number"),
    ([], "empty list"),
    ({"dist": "uniform", "low": 9, "high": 10, "q": 8}, "no multiple"),
])
def test_config_errors(cfg, msg):
    with pytest.raises(DseError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        rand.from_config("params.x", cfg)
