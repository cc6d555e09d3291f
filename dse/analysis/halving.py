"""Successive halving replayed on errors already measured (pure numpy/pandas, no I/O).

Successive halving (Jamieson & Talwalkar 2016; the inner loop of Hyperband) trains every model
at the first rung of a budget ladder (here: epochs), keeps the best 1/eta of them for the next
rung, and so on; the models that reach the last rung are its finalists. `replay` runs that
rule on a matrix of errors (a row per model, a column per rung, the last column the error of
full training) and says how well it did against training every model fully:

- the top-k recall: the share of the k best models under full training that are finalists
  (k defaults to the number of finalists);
- the regret: the best finalist's full-training error minus the best error of all, in points;
- the same two for one cut at the first rung (`dse train --top K` of the cheap recipe: its
  K best, as many as the finalists), and the recall a random pick of that size expects;
- the epochs each spends, against training every model to the last rung;

each with a percentile bootstrap interval over models. `rung_matrix` builds the matrix from a
space's stored results: the per-epoch test errors (`history_error`, `dse train --curves`) of
results trained to the last rung, or results whose recipes differ only in their epochs, one
per rung. Errors are in percent (points), lower is better; a diverged model's missing errors
count as the worst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.analysis.reruns import INTERVAL, Interval
from dse.errors import DseError
from dse.store.recipes import RECIPE_KEYS, label, recipes


def check(eta, rungs) -> tuple[float, tuple[int, ...]]:
    """eta (a number above 1) and rungs (two or more epochs, rising), checked; raises
    DseError saying what is allowed."""
    return check_eta(eta), check_rungs(rungs)


def check_eta(eta) -> float:
    """eta, a number above 1; a DseError saying so otherwise."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 1 \
            or not math.isfinite(eta):
        raise DseError(f"eta must be a number above 1, such as 3 (got {eta!r})")
    return float(eta)


def check_rungs(rungs) -> tuple[int, ...]:
    """rungs, two or more whole epochs rising strictly; a DseError saying so otherwise."""
    if not isinstance(rungs, (list, tuple)) or len(rungs) < 2:
        raise DseError(f"rungs must list two or more epochs, rising, such as [1, 3, 9] "
                       f"(got {rungs!r})")
    for r in rungs:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise DseError(f"rungs must be whole epochs of at least 1 (got {r!r})")
    if any(b <= a for a, b in zip(rungs, rungs[1:])):
        raise DseError(f"rungs must rise strictly, such as [1, 3, 9] (got {list(rungs)})")
    return tuple(rungs)


def counts(n: int, eta: float, k: int) -> list[int]:
    """Models at each of k rungs when n start: n, then ⌊previous / eta⌋, at least 1."""
    out = [int(n)]
    for _ in range(k - 1):
        out.append(max(1, int(math.floor(out[-1] / eta + 1e-9))))
    return out


def best(errors: np.ndarray, among: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` indexes of `among` with the lowest errors (NaN last; ties by index)."""
    e = np.where(np.isfinite(errors[among]), errors[among], np.inf)
    order = np.lexsort((among, e))
    return among[order[:keep]]


def finalists(errors: np.ndarray, eta: float) -> np.ndarray:
    """The models (row indexes of errors, n × rungs) that successive halving trains at the
    last rung: all at the first, then the best ⌊n/eta⌋ of each rung's models at the next."""
    n, k = errors.shape
    alive = np.arange(n)
    for j, c in enumerate(counts(n, eta, k)[1:]):
        alive = best(errors[:, j], alive, c)
    return alive


class Estimate(Interval):
    """A value with its bootstrap interval (NaN where it could not be had), and its text."""

    def text(self, fmt: str = ".2f") -> str:
        if not math.isfinite(self.value):
            return "—"
        return f"{self.value:{fmt}} [{self.lo:{fmt}}, {self.hi:{fmt}}]"


@dataclass(frozen=True)
class Replay:
    """Successive halving at `rungs` (epochs) with `eta` on `n` models, against training all
    of them to the last rung: recall of the top `k`, regret in points, the same for one cut at
    the first rung, the random pick's expected recall, and the epochs each trains."""

    n: int
    eta: float
    rungs: tuple
    counts: tuple            # models at each rung
    k: int
    recall: Estimate
    regret: Estimate
    first_rung_recall: Estimate
    first_rung_regret: Estimate
    random_recall: float
    epochs: int              # what halving trains, each rung from scratch (the promote stage)
    epochs_resumed: int      # the same, each rung continuing the one before (the curves' view)
    epochs_full: int         # every model to the last rung
    finalists: tuple         # row indexes of the finalists
    level: float
    n_boot: int
    interval: str = INTERVAL

    def to_json(self) -> dict:
        return dict(n=self.n, eta=self.eta, rungs=list(self.rungs), counts=list(self.counts),
                    k=self.k, recall=self.recall.to_json(), regret=self.regret.to_json(),
                    first_rung=dict(recall=self.first_rung_recall.to_json(),
                                    regret=self.first_rung_regret.to_json()),
                    random_recall=self.random_recall, epochs=self.epochs,
                    epochs_resumed=self.epochs_resumed, epochs_full=self.epochs_full,
                    level=self.level, n_boot=self.n_boot, interval=self.interval)


def score(errors: np.ndarray, eta: float, k: int) -> tuple[float, float, float, float]:
    """(recall, regret) of halving and of one cut at the first rung, on one sample."""
    n = len(errors)
    full = np.where(np.isfinite(errors[:, -1]), errors[:, -1], np.inf)
    top = set(best(full, np.arange(n), k).tolist())
    fin = finalists(errors, eta)
    cut = best(errors[:, 0], np.arange(n), len(fin))
    low = full.min()

    def regret(chosen):
        r = full[chosen].min() - low
        return r if math.isfinite(r) else np.nan

    return (len(top & set(fin.tolist())) / k, regret(fin),
            len(top & set(cut.tolist())) / k, regret(cut))


def replay(errors, eta: float = 3, k: int | None = None, level: float = 0.95,
           n_boot: int = 2000, seed: int = 0, rungs=None) -> Replay:
    """Successive halving replayed on `errors` (models × rungs; the last column is full
    training), with percentile bootstrap intervals at `level` from `n_boot` resamples of the
    models. `rungs` (epochs of the columns) only count the epochs spent."""
    e = np.asarray(errors, dtype=float)
    if e.ndim != 2 or e.shape[1] < 2:
        raise DseError(f"errors must be a matrix of models × two or more rungs (got shape "
                       f"{e.shape})")
    n, r = e.shape
    if n < 2:
        raise DseError(f"successive halving needs at least 2 models (got {n})")
    eta = float(eta)
    rungs = tuple(rungs) if rungs is not None else tuple(range(1, r + 1))
    c = counts(n, eta, r)
    k = c[-1] if k is None else int(k)
    if not 1 <= k <= n:
        raise DseError(f"top k must lie between 1 and the {n} models (got {k})")
    point = score(e, eta, k)
    rng = np.random.default_rng(seed)
    boot = np.array([score(e[rng.integers(0, n, n)], eta, k) for _ in range(n_boot)])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def est(i):
        b = boot[:, i][np.isfinite(boot[:, i])]
        lo, hi = np.percentile(b, q) if len(b) else (np.nan, np.nan)
        return Estimate(float(point[i]), float(lo), float(hi))

    spent = sum(m * rr for m, rr in zip(c, rungs))
    resumed = sum(m * (rr - prev) for m, rr, prev in zip(c, rungs, (0, *rungs[:-1])))
    return Replay(n, eta, rungs, tuple(c), k, est(0), est(1), est(2), est(3),
                  min(1.0, c[-1] / n), spent, resumed, n * rungs[-1],
                  tuple(finalists(e, eta).tolist()), level, n_boot)


# ---- the matrix from stored results ---------------------------------------------------------

@dataclass(frozen=True)
class Rungs:
    """Errors of `model_ids` at each rung (epochs) and where they come from."""

    model_ids: tuple
    rungs: tuple
    errors: np.ndarray
    source: str


def _base(row) -> str:
    """A result's recipe settings but its epochs, as a label: what the rungs of one ladder
    share."""
    return label({k: row.get(k) for k in RECIPE_KEYS if k != "epochs"})


def default_rungs(results: pd.DataFrame, eta: float) -> tuple[int, ...]:
    """Rungs for a replay when none are given: 1, eta, eta², … below the longest curve (or
    recipe) the results hold, then that epoch itself."""
    longest = _longest_curve(results)
    if longest < 2:
        ep = sorted(set(results["epochs"].dropna().astype(int)))
        if len(ep) >= 2:
            return tuple(ep)
        raise DseError("no results with per-epoch test errors (history_error) and no "
                       "results at two or more epochs: nothing to replay; train with dse "
                       "train --curves (or give --rungs)")
    out, r = [], 1.0
    while round(r) < longest:
        if not out or round(r) > out[-1]:
            out.append(int(round(r)))
        r *= eta
    return (*out, longest)


def _longest_curve(results: pd.DataFrame) -> int:
    h = results["history_error"].map(lambda x: 0 if x is None else len(x))
    return int(h.max()) if len(h) else 0


def _from_curves(results: pd.DataFrame, rungs: tuple) -> tuple[pd.DataFrame, str]:
    """Per model, the error after each rung's epoch from the curves of results trained to the
    last rung or beyond (the recipe with the most of them; seeds averaged); diverged runs
    count as the worst from where they stopped."""
    last = rungs[-1]

    def reach(row):
        h = row.history_error
        if h is None or not len(h):
            return False
        return len(h) >= last or (row.status == "diverged" and row.epochs >= last)

    ok = results[[reach(r) for r in results.itertuples()]] if len(results) else results
    if not len(ok):
        return pd.DataFrame(), ""
    fp = ok["recipe"].value_counts().sort_index().idxmax()
    ok = ok[ok["recipe"] == fp]
    cols = {}
    for j, r in enumerate(rungs):
        cols[j] = ok["history_error"].map(
            lambda h, r=r: float(h[r - 1]) if len(h) >= r and h[r - 1] is not None else np.nan)
    m = pd.DataFrame(cols).assign(model_id=ok["model_id"].to_numpy())
    m = m.groupby("model_id", sort=True).mean()
    name = recipes(ok)["label"].iloc[0]
    return m, f"the per-epoch test errors of {len(ok)} results trained as {name}"


def _from_recipes(results: pd.DataFrame, rungs: tuple) -> tuple[pd.DataFrame, str]:
    """Per model, the final error of a result at each rung's epochs, the recipes alike but
    for their epochs (the ladder with the most models at every rung; seeds averaged)."""
    res = results[results["status"].isin(["done", "diverged"])]
    if not len(res):
        return pd.DataFrame(), ""
    res = res.assign(base=[_base(r) for r in res.to_dict(orient="records")])
    best_m, best_base = pd.DataFrame(), None
    for base, g in res.groupby("base", sort=True):
        cols = {}
        for j, r in enumerate(rungs):
            at = g[g["epochs"] == r]
            if not len(at):
                cols = None
                break
            cols[j] = at.groupby("model_id")["error"].mean()
        if cols is None:
            continue
        every = set.intersection(*(set(c.index) for c in cols.values()))
        m = pd.DataFrame(cols).loc[sorted(every)]  # models with a result at every rung
        if len(m) > len(best_m):
            best_m, best_base = m, base
    if best_base is None:
        return pd.DataFrame(), ""
    return best_m.sort_index(), (f"results at {', '.join(map(str, rungs))} epochs "
                                 f"({best_base})")


def rung_matrix(results: pd.DataFrame, rungs: tuple, space: str = "the space") -> Rungs:
    """The errors of a space's models at each rung, from whichever source covers more models:
    curves trained to the last rung, or results at each rung's epochs (ties: the results, as
    the promote stage trains each rung from scratch). `results` are the space's rows of
    Store.read_results; raises DseError when neither covers two models."""
    a, src_a = _from_curves(results, rungs)
    b, src_b = _from_recipes(results, rungs)
    m, src = (b, src_b) if len(b) >= len(a) else (a, src_a)
    if len(m) < 2:
        longest = _longest_curve(results) if len(results) else 0
        have = sorted(set(results["epochs"].dropna().astype(int))) if len(results) else []
        raise DseError(
            f"{space}: fewer than 2 models have errors at every rung ({', '.join(map(str, rungs))}"
            f" epochs): no curves reach epoch {rungs[-1]} (the longest holds {longest}) and "
            f"no models have results at each rung's epochs (results at "
            f"{', '.join(map(str, have)) or 'no'} epochs); train with dse train --curves "
            f"--epochs {rungs[-1]}, or give --rungs within the curves")
    return Rungs(tuple(m.index), tuple(rungs), m.to_numpy(dtype=float), src)
