"""How far a cheap training recipe can stand in for an expensive one, and how noisy a run is
(pure numpy/scipy/pandas, no I/O).

- `fidelity`: the same models trained under a proxy recipe (short schedule, small data) and a
  target recipe; how well the proxy ranks them (Spearman's ρ and Kendall's τ-b, each with a
  percentile bootstrap interval over models), how many of the target's best k the proxy's
  best k hold, and the regret of picking the proxy's best model;
- `noise`: models trained with several seeds; the seed standard deviation σ pooled within
  models, the share of the variance that lies between models (the one-way random-effects
  ICC(1) with its F interval), and the spread of the model means;
- `noise_floor_text`: the seed noise on a difference of two population means, as a phrase
  printed beside comparisons.

Errors are in percent (points), lower is better. Inputs a user can get wrong raise `DseError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dse.errors import DseError

MIN_PAIRS = 5
MIN_BOOT = 100
INTERVAL = "percentile bootstrap over models"


def _num(v: float) -> float | None:
    """A float for JSON: None in place of NaN or ±inf."""
    v = float(v)
    return v if math.isfinite(v) else None


def _check_level(level) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise DseError(f"level must be a number between 0 and 1, such as 0.95 (got {level!r})")


# ---- fidelity of a proxy recipe ------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A point estimate `value` with an interval `lo`..`hi` (NaN when it could not be had)."""

    value: float
    lo: float
    hi: float

    def to_json(self) -> dict:
        return dict(value=_num(self.value), lo=_num(self.lo), hi=_num(self.hi))


@dataclass(frozen=True)
class TopK:
    """The share `overlap` of the k models best under the target recipe that are also among
    the k best under the proxy, and the share `expected` by chance (k/n)."""

    k: int
    overlap: float
    expected: float

    def to_json(self) -> dict:
        return dict(k=self.k, overlap=self.overlap, expected=self.expected)


@dataclass(frozen=True)
class Fidelity:
    """How well a proxy recipe ranks `pairs` models as the target recipe does: rank
    correlations with intervals at `level` (from `n_boot` bootstrap resamples), the top-k
    overlap, and the `regret` in points of picking the proxy's best model."""

    pairs: int
    spearman: Interval
    kendall: Interval
    top_k: TopK
    regret: float
    level: float
    n_boot: int
    interval: str = INTERVAL

    def to_json(self) -> dict:
        return dict(pairs=self.pairs, spearman=self.spearman.to_json(),
                    kendall=self.kendall.to_json(), top_k=self.top_k.to_json(),
                    regret=_num(self.regret), level=self.level, n_boot=self.n_boot,
                    interval=self.interval)


def _as_errors(v, name: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as e:
        raise DseError(f"{name} errors must be numbers ({e})") from None
    if a.ndim != 1:
        raise DseError(f"{name} errors must be a 1-D array, one error per model "
                       f"(got shape {a.shape})")
    bad = int((~np.isfinite(a)).sum())
    if bad:
        raise DseError(f"{name} errors hold {bad} non-finite values (NaN or inf); fidelity "
                       "needs a finite error for every model; drop the models that diverged")
    return a


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ of x and y along their last axis: the Pearson correlation of their ranks
    (ties averaged, as duplicates of a model are ties); NaN where either is constant."""
    rx = stats.rankdata(x, axis=-1)
    ry = stats.rankdata(y, axis=-1)
    rx -= rx.mean(axis=-1, keepdims=True)
    ry -= ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=-1) / den, np.nan)


def _spearman_boot(p: np.ndarray, t: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each resample (a row of `idx`), constant ones dropped."""
    r = spearman_rows(p[idx], t[idx])
    return r[~np.isnan(r)]


def _kendall_boot(p: np.ndarray, t: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each resample, all at once. A resample is the counts c of each model
    in it; with S_x, S_y the sign matrices of the models' pairwise differences, twice its
    concordant − discordant pairs is cᵀ(S_x∘S_y)c and twice its pairs untied in x is cᵀ|S_x|c
    (copies of one model are tied in both), so τ-b = cᵀ(S_x∘S_y)c / √(cᵀ|S_x|c · cᵀ|S_y|c).
    Time O(n_boot·n²), memory O(n² + n_boot·n); constant resamples dropped."""
    n_boot, n = idx.shape
    flat = (idx + n * np.arange(n_boot)[:, None]).ravel()
    c = np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)
    sx = np.sign(p[:, None] - p[None, :])
    sy = np.sign(t[:, None] - t[None, :])

    def quad(m: np.ndarray) -> np.ndarray:
        return np.einsum("bi,bi->b", c @ m, c)

    num, dx, dy = quad(sx * sy), quad(np.abs(sx)), quad(np.abs(sy))
    ok = (dx > 0) & (dy > 0)
    return num[ok] / np.sqrt(dx[ok] * dy[ok])


def _percentile(value: float, boot: np.ndarray, level: float) -> Interval:
    if len(boot) < MIN_BOOT // 2:
        return Interval(float(value), math.nan, math.nan)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(value), float(lo), float(hi))


def fidelity(proxy: np.ndarray, target: np.ndarray, *, k: int | None = None,
             n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Fidelity:
    """How well the errors of models under a proxy recipe rank them as their errors under a
    target recipe do (index i is the same model in both; errors in %, lower is better).

    - `spearman`, `kendall` (τ-b): the rank correlations of the n pairs, each with a
      percentile bootstrap interval at `level`: models are resampled with replacement
      `n_boot` times (seeded by `seed`; the same resamples for both), and resamples whose
      proxy or target errors are all equal are skipped (the interval is NaN when fewer than
      50 remain). Assumes the models are a random sample of the population the proxy is
      judged on. In simulated bivariate normal populations of 30 and 40 models (ρ ≈ 0.73,
      τ ≈ 0.54) the 95% intervals covered the true ρ and τ in 95–96% of 500 draws each, as
      the BCa and the Fisher-z intervals (Bonett–Wright, Fieller–Hartley–Pearson) did, so
      the simpler percentile one is used. Cost O(n_boot·n²): well under a second for n ≤ 500.
    - `top_k`: the share of the k models with the lowest target errors that are among the k
      with the lowest proxy errors (k defaults to max(1, round(n/4))), against k/n by chance.
      Ties are broken by index.
    - `regret`: the target error of the model with the lowest proxy error (the first, if
      several tie) minus the lowest target error, in points (≥ 0; 0 when the proxy picks the
      target's best).
    """
    p, t = _as_errors(proxy, "proxy"), _as_errors(target, "target")
    if len(p) != len(t):
        raise DseError(f"proxy and target must hold one error per model each; got {len(p)} "
                       f"proxy and {len(t)} target errors")
    n = len(p)
    if n < MIN_PAIRS:
        raise DseError(f"fidelity needs at least {MIN_PAIRS} models trained under both "
                       f"recipes; found {n}")
    for a, name in ((p, "proxy"), (t, "target")):
        if np.all(a == a[0]):
            raise DseError(f"all {name} errors are equal ({a[0]:g}); fidelity needs models "
                           "whose errors differ")
    if k is None:
        k = max(1, round(n / 4))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise DseError(f"k must be an integer from 1 to the number of models, {n} (got {k!r})")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) \
            or n_boot < MIN_BOOT:
        raise DseError(f"n_boot must be an integer ≥ {MIN_BOOT} (got {n_boot!r})")
    _check_level(level)

    rho = float(stats.spearmanr(p, t)[0])
    tau = float(stats.kendalltau(p, t)[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n))
    spearman = _percentile(rho, _spearman_boot(p, t, idx), level)
    kendall = _percentile(tau, _kendall_boot(p, t, idx), level)

    best_p = np.argsort(p, kind="stable")[:k]
    best_t = np.argsort(t, kind="stable")[:k]
    top = TopK(int(k), len(np.intersect1d(best_p, best_t)) / k, k / n)
    regret = float(t[np.argmin(p)] - t.min())
    return Fidelity(n, spearman, kendall, top, regret, float(level), int(n_boot))


# ---- seed noise ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Noise:
    """Seed noise of `models` models trained with ≥ 2 seeds (`runs` runs in all); models
    with one run are only counted (`models_single`).

    sigma_seed: pooled within-model standard deviation in points; icc, icc_lo, icc_hi: the
    ICC(1) (share of variance between models) and its interval at `level`; sigma_between:
    the standard deviation of the models' true errors; n0: the average group size the ICC
    uses; per_model: model_id, n, mean, sd, min, max of each model, sorted by mean. The ICC
    fields and sigma_between are NaN with a single model (no between-model variance)."""

    sigma_seed: float
    icc: float
    icc_lo: float
    icc_hi: float
    sigma_between: float
    models: int
    runs: int
    models_single: int
    n0: float
    level: float
    per_model: pd.DataFrame
    f_lo: float = math.nan       # the normal-theory F interval, beside the bootstrap one
    f_hi: float = math.nan
    n_boot: int = 0

    def floor(self, n: int) -> float:
        """The seed noise of the mean of n seed runs of one model: σ_seed/√n, in points."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise DseError(f"n must be an integer ≥ 1, a number of seeds (got {n!r})")
        return self.sigma_seed / math.sqrt(n)

    def line(self, diff: float | None = None, n: int = 1) -> str:
        """One line for a terminal: "seed noise σ = 1.40 points (12 models × 3 seeds),
        σ/√n = 0.81 for n = 3" (the σ/√n part only for n > 1), after "median difference
        1.10 points; " when `diff` is given."""
        lo, hi = int(self.per_model["n"].min()), int(self.per_model["n"].max())
        seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"
        s = (f"seed noise σ = {self.sigma_seed:.2f} points "
             f"({self.models} model{'s' if self.models != 1 else ''} × {seeds} seeds)")
        if n != 1:
            s += f", σ/√n = {self.floor(n):.2f} for n = {n}"
        if diff is not None:
            s = f"median difference {diff:.2f} points; " + s
        return s

    def to_json(self) -> dict:
        return dict(sigma_seed=_num(self.sigma_seed), icc=_num(self.icc),
                    icc_lo=_num(self.icc_lo), icc_hi=_num(self.icc_hi),
                    sigma_between=_num(self.sigma_between), models=self.models,
                    runs=self.runs, models_single=self.models_single, n0=_num(self.n0),
                    level=self.level, icc_interval=f"percentile bootstrap over models "
                    f"({self.n_boot} resamples)", icc_f_lo=_num(self.f_lo),
                    icc_f_hi=_num(self.f_hi),
                    per_model=[{k: (v.item() if hasattr(v, "item") else v)
                                for k, v in r.items()}
                               for r in self.per_model.to_dict(orient="records")])


def _icc_interval(msb: float, msw: float, k: int, big_n: int, n0: float,
                  level: float) -> tuple[float, float]:
    """The F interval of ICC(1) (Searle; Shrout & Fleiss 1979), with n0 for unbalanced
    groups (then approximate), clipped to [−1/(n0−1), 1]."""
    if msw == 0:
        return 1.0, 1.0
    f = msb / msw
    df1, df2 = k - 1, big_n - k
    q = (1 + level) / 2
    fl = f / stats.f.ppf(q, df1, df2)
    fu = f * stats.f.ppf(q, df2, df1)
    floor = -1 / (n0 - 1) if n0 > 1 else -1.0
    lo = (fl - 1) / (fl + n0 - 1)
    hi = (fu - 1) / (fu + n0 - 1)
    return float(min(max(lo, floor), 1.0)), float(min(max(hi, floor), 1.0))


def _icc_boot(n_i: np.ndarray, m_i: np.ndarray, s_i: np.ndarray, level: float,
              n_boot: int, seed: int) -> tuple[float, float]:
    """The percentile interval of ICC(1) over `n_boot` resamples of the models (with
    replacement, each keeping its runs); resamples with no between-model spread dropped."""
    idx = np.random.default_rng(seed).integers(0, len(n_i), size=(n_boot, len(n_i)))
    n, m, v = n_i[idx], m_i[idx], s_i[idx] ** 2
    big_n, k = n.sum(axis=1), len(n_i)
    msw = ((n - 1) * v).sum(axis=1) / (big_n - k)
    grand = (n * m).sum(axis=1) / big_n
    msb = (n * (m - grand[:, None]) ** 2).sum(axis=1) / (k - 1)
    n0 = (big_n - (n ** 2).sum(axis=1) / big_n) / (k - 1)
    den = msb + (n0 - 1) * msw
    ok = den > 0
    if ok.sum() < MIN_BOOT // 2:
        return math.nan, math.nan
    lo, hi = np.quantile((msb - msw)[ok] / den[ok], [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def noise(errors: pd.DataFrame, *, level: float = 0.95, n_boot: int = 2000,
          seed: int = 0) -> Noise:
    """Seed noise from finished runs, one row each, with columns `model_id` and `error` (%).

    From the k models with n_i ≥ 2 runs (N in all; models with one run are only counted):
    σ_seed = √(Σ(n_i−1)s_i² / Σ(n_i−1)), the pooled within-model standard deviation (MSW =
    σ_seed²); MSB = Σ n_i(m_i − m)²/(k−1) with m the mean of all N runs; n0 = (N − Σn_i²/N)/
    (k−1); the one-way random-effects ICC(1) = (MSB − MSW)/(MSB + (n0−1)·MSW), reported raw
    (it can be negative), with its F interval at `level` (exact for equal n_i under normal
    model and seed effects, approximate otherwise; clipped to [−1/(n0−1), 1]); and
    σ_between = √max(0, (MSB − MSW)/n0). The ICC's interval (icc_lo, icc_hi) is a
    percentile bootstrap over models (`n_boot` resamples, seeded by `seed`), which does not
    assume normal model effects; the F interval is kept beside it (f_lo, f_hi). Assumes
    the models are a random sample and the seed noise is the same for every model.
    """
    if not isinstance(errors, pd.DataFrame):
        raise DseError("noise needs a DataFrame with columns model_id and error, one row per "
                       f"run (got {type(errors).__name__})")
    missing = [c for c in ("model_id", "error") if c not in errors.columns]
    if missing:
        raise DseError(f"noise needs columns model_id and error, one row per run; missing "
                       f"{', '.join(missing)}")
    _check_level(level)
    df = errors[["model_id", "error"]]
    if df["model_id"].isna().any():
        raise DseError(f"{int(df['model_id'].isna().sum())} runs have no model_id; noise "
                       "needs the model of every run")
    try:
        err = pd.to_numeric(df["error"]).to_numpy(dtype=float)
    except (TypeError, ValueError) as e:
        raise DseError(f"error must hold numbers, in % ({e})") from None
    bad = int((~np.isfinite(err)).sum())
    if bad:
        raise DseError(f"{bad} runs have a non-finite error (NaN or inf); noise needs the "
                       "error of every finished run; drop the runs that diverged")
    df = pd.DataFrame({"model_id": df["model_id"].to_numpy(), "error": err})
    g = df.groupby("model_id", sort=False)["error"].agg(
        n="count", mean="mean", sd="std", min="min", max="max").reset_index()
    single = int((g["n"] == 1).sum())
    g = g[g["n"] >= 2].sort_values(["mean"], kind="stable").reset_index(drop=True)
    if g.empty:
        raise DseError("noise needs models with at least two seeds; train reruns with "
                       "dse train --seeds 3")
    g["n"] = g["n"].astype(int)

    n_i, m_i, s_i = g["n"].to_numpy(float), g["mean"].to_numpy(), g["sd"].to_numpy()
    k, big_n = len(g), int(n_i.sum())
    msw = float(((n_i - 1) * s_i ** 2).sum() / (big_n - k))
    sigma = math.sqrt(msw)
    icc = lo = hi = f_lo = f_hi = sb = n0 = math.nan
    if k >= 2:
        grand = float((n_i * m_i).sum() / big_n)
        msb = float((n_i * (m_i - grand) ** 2).sum() / (k - 1))
        n0 = float((big_n - (n_i ** 2).sum() / big_n) / (k - 1))
        if msb + (n0 - 1) * msw > 0:
            icc = (msb - msw) / (msb + (n0 - 1) * msw)
            f_lo, f_hi = _icc_interval(msb, msw, k, big_n, n0, level)
            lo, hi = _icc_boot(n_i, m_i, s_i, level, int(n_boot), seed)
        sb = math.sqrt(max(0.0, (msb - msw) / n0))
    return Noise(sigma, icc, lo, hi, sb, k, big_n, single, n0, float(level), g, f_lo, f_hi,
                 int(n_boot))


def noise_floor_text(sigma: float, n_models: int, n_seeds: float) -> str:
    """A phrase printed beside a comparison of two populations: the seed noise σ per run and
    σ·√(2/(n_models·n_seeds)), the standard deviation that seed noise alone gives the
    difference of the means of two populations of n_models models each, every model's error
    a mean of n_seeds seed runs (independent noise; the sampling of the models themselves
    adds more). A difference of medians is about 1.25× noisier under normal noise.
    E.g. "seed noise σ = 1.40 per run; ≈ 0.29 on a difference of two means of 24 models"
    (with " × 2 seeds" appended when n_seeds ≠ 1)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating)) \
            or not math.isfinite(sigma) or sigma < 0:
        raise DseError(f"sigma must be a finite number ≥ 0, in points (got {sigma!r})")
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)) \
            or n_models < 1:
        raise DseError(f"n_models must be an integer ≥ 1 (got {n_models!r})")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, float, np.number)) \
            or not math.isfinite(n_seeds) or n_seeds <= 0:
        raise DseError(f"n_seeds must be a number > 0, seeds per model (got {n_seeds!r})")
    d = sigma * math.sqrt(2 / (n_models * n_seeds))
    s = (f"seed noise σ = {sigma:.2f} per run; ≈ {d:.2f} on a difference of two means of "
         f"{n_models} model{'s' if n_models != 1 else ''}")
    return s + (f" × {n_seeds:g} seeds" if n_seeds != 1 else "")
