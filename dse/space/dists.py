"""Discrete distributions of design-space parameters (pure numpy).

Every parameter distribution is reduced to its support (sorted values) and probabilities.
Drawing a continuous value and rounding it to a multiple of q, as pycls does, gives exactly
the probabilities computed here, so sampling is an inverse-CDF lookup and the size of a space
is a count of supports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dse.errors import DseError

KINDS = ("log_uniform", "uniform", "power2", "choice")


@dataclass(frozen=True, eq=False)
class Dist:
    """A discrete distribution: sorted `values` with probabilities `probs` (sum 1)."""

    kind: str
    values: np.ndarray
    probs: np.ndarray

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def is_int(self) -> bool:
        return bool(np.all(self.values == np.round(self.values)))

    def draw(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Draw values of the given shape (inverse CDF on uniform numbers)."""
        cdf = np.cumsum(self.probs)
        idx = np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right")
        return self.values[np.minimum(idx, self.size - 1)]

    def draw_non_decreasing(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        """Draw n sequences of length k from the product distribution restricted to
        non-decreasing sequences (exactly what rejection sampling would give, without
        the rejections). Returns an (n, k) array."""
        p = self.probs
        # tails[m][v] = mass of non-decreasing sequences of length m+1 starting at value v
        tails = [p]
        for _ in range(k - 1):
            suffix = np.cumsum(tails[-1][::-1])[::-1]
            tails.append(p * suffix)
        out = np.empty((n, k), dtype=np.int64)
        start = np.zeros(n, dtype=np.int64)  # smallest allowed index per row
        for i in range(k):
            cdf = np.cumsum(tails[k - 1 - i])
            below = np.where(start > 0, cdf[np.maximum(start - 1, 0)], 0.0)
            target = below + rng.random(n) * (cdf[-1] - below)
            idx = np.searchsorted(cdf, target, side="right")
            idx = np.clip(idx, start, self.size - 1)
            out[:, i] = idx
            start = idx
        return self.values[out]


def _grid(low: float, high: float, q: float) -> np.ndarray:
    """Multiples of q in [low, high]."""
    k0, k1 = math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9)
    if k1 < k0:
        raise DseError(f"no multiple of q={q} lies in [{low}, {high}]")
    decimals = max(0, -math.floor(math.log10(q)) + 6)
    return np.round(np.arange(k0, k1 + 1) * q, decimals)


def log_uniform(low: float, high: float, q: float) -> Dist:
    """exp(U(log low, log high)) rounded to a multiple of q."""
    values = _grid(low, high, q)
    lo = np.maximum(values - q / 2, low)
    hi = np.minimum(values + q / 2, high)
    mass = np.log(hi) - np.log(lo)
    if low == high:
        mass = np.ones(1)
    return Dist("log_uniform", values, mass / mass.sum())


def uniform(low: float, high: float, q: float) -> Dist:
    """U(low, high) rounded to a multiple of q."""
    values = _grid(low, high, q)
    lo = np.maximum(values - q / 2, low)
    hi = np.minimum(values + q / 2, high)
    mass = hi - lo
    if low == high:
        mass = np.ones(1)
    return Dist("uniform", values, mass / mass.sum())


def power2(low: float, high: float) -> Dist:
    """A power of two in [low, high] (fractions too: 1/4, 1/2, 1, 2, 4), each equally
    likely."""
    values = np.array([2.0**e for e in range(round(math.log2(low)), round(math.log2(high)) + 1)])
    return Dist("power2", values.astype(float), np.full(len(values), 1 / len(values)))


def choice(values) -> Dist:
    """One of the listed values, each equally likely."""
    vals = np.array(sorted(set(float(v) for v in values)))
    return Dist("choice", vals, np.full(len(vals), 1 / len(vals)))


def _positive(where: str, name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0:
        raise DseError(f"{where}: '{name}' must be a positive number (got {x!r})")
    return float(x)


def from_config(where: str, cfg) -> Dist:
    """Build a Dist from its YAML form: a number, a list, or {dist: KIND, ...}."""
    if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
        return choice([cfg])
    if isinstance(cfg, list):
        if not cfg:
            raise DseError(f"{where}: an empty list of values")
        for v in cfg:
            _positive(where, "values", v)
        return choice(cfg)
    if not isinstance(cfg, dict) or "dist" not in cfg:
        raise DseError(f"{where}: expected a number, a list of values, or a mapping with "
                       f"'dist' (one of {', '.join(KINDS)}); got {cfg!r}")
    kind = cfg["dist"]
    if kind not in KINDS:
        raise DseError(f"{where}: unknown dist {kind!r}; allowed: {', '.join(KINDS)}")
    allowed = {"log_uniform": {"dist", "low", "high", "q"}, "uniform": {"dist", "low", "high", "q"},
               "power2": {"dist", "low", "high"}, "choice": {"dist", "values"}}[kind]
    extra = set(cfg) - allowed
    if extra:
        raise DseError(f"{where}: unknown key(s) {sorted(extra)} for dist {kind}; "
                       f"allowed: {sorted(allowed)}")
    missing = allowed - set(cfg)
    if missing:
        raise DseError(f"{where}: dist {kind} needs {sorted(missing)}")
    if kind == "choice":
        return from_config(where, list(cfg["values"]) if isinstance(cfg["values"], list)
                           else cfg["values"])
    low, high = _positive(where, "low", cfg["low"]), _positive(where, "high", cfg["high"])
    if low > high:
        raise DseError(f"{where}: low ({low:g}) is greater than high ({high:g})")
    if kind == "power2":
        for name, v in (("low", low), ("high", high)):
            if v != 2 ** round(math.log2(v)):
                raise DseError(f"{where}: power2 '{name}' must be a power of two (got {v:g})")
        return power2(low, high)
    q = _positive(where, "q", cfg["q"])
    return (log_uniform if kind == "log_uniform" else uniform)(low, high, q)
