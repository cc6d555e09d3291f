"""The noise ceiling of a population's errors (pure): the share of their variance that is
the models' and not the seeds', 1 − mean(σ_seed²/n_i)/Var(y), with σ_seed pooled from
reruns (dse.analysis.reruns.noise) and n_i the seeds averaged into model i's error. What
any analysis of the errors could explain at most (dse.analysis.importance prints it beside
what its model explains)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.analysis.reruns import Interval, Noise, noise


@dataclass(frozen=True)
class Ceiling:
    """The share of the error variance that is the models' (not the seeds'), from the
    pooled seed noise of `models` models with reruns; `seeds`: the mean seeds per error."""

    value: float
    sigma_seed: float
    models: int
    seeds: float
    icc: Interval

    def to_json(self) -> dict:
        return dict(value=self.value, sigma_seed=self.sigma_seed, models=self.models,
                    seeds=self.seeds, icc=self.icc.to_json())


def ceiling(error, n_seeds, nz: Noise) -> Ceiling:
    """The noise ceiling of errors that are means of n_seeds runs each, from the seed noise
    of the reruns (dse.analysis.reruns.noise)."""
    e = np.asarray(error, dtype=float)
    s = np.maximum(np.asarray(n_seeds, dtype=float), 1)
    var = float(e.var(ddof=1))
    value = 1 - float(np.mean(nz.sigma_seed ** 2 / s)) / var if var > 0 else math.nan
    return Ceiling(value, nz.sigma_seed, nz.models, float(s.mean()),
                   Interval(nz.icc, nz.icc_lo, nz.icc_hi))


def from_reruns(results: pd.DataFrame, pop: pd.DataFrame, aggregate: str = "mean"):
    """The noise ceiling of a population's errors from the finished reruns of its recipe
    among its models (`results`: every result of the space, Store.read_results); None when
    no model has two."""
    if "recipe" not in pop or not pop["recipe"].notna().any():
        return None
    runs = results[(results["recipe"] == pop["recipe"].dropna().iloc[0])
                   & results["model_id"].isin(pop["model_id"])
                   & (results["status"] == "done") & results["error"].notna()]
    if not len(runs) or runs["model_id"].value_counts().max() < 2:
        return None
    seeds = pop["n_seeds"] if aggregate == "mean" else 1
    return ceiling(pop["error"], seeds, noise(runs[["model_id", "error"]]))

