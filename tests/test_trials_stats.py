"""Fidelity of a proxy recipe and seed noise (dse.analysis.reruns) on simulated populations
whose truth is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dse.analysis import reruns
from dse.analysis.reruns import fidelity, noise, noise_floor_text
from dse.errors import DseError

SIGMA_P, SIGMA_T = 0.8, 0.3
R = 1 / math.sqrt((1 + SIGMA_P ** 2) * (1 + SIGMA_T ** 2))  # Pearson r of proxy, target
RHO = 6 / math.pi * math.asin(R / 2)  # Spearman's ρ of a bivariate normal
TAU = 2 / math.pi * math.asin(R)  # Kendall's τ of a bivariate normal


def planted(rng, n=40):
    q = rng.normal(size=n)
    return q + rng.normal(0, SIGMA_P, n), q + rng.normal(0, SIGMA_T, n)


def seeds_frame(rng, means, seeds, sigma):
    rows = [(f"m{i}", mu + rng.normal(0, sigma)) for i, (mu, s) in enumerate(zip(means, seeds))
            for _ in range(s)]
    return pd.DataFrame(rows, columns=["model_id", "error"])


# ---- fidelity ------------------------------------------------------------------------------


def test_planted_fidelity_intervals_cover_the_truth():
    rng = np.random.default_rng(7)
    draws, cover_s, cover_k, est = 200, 0, 0, []
    for d in range(draws):
        p, t = planted(rng)
        f = fidelity(p, t, n_boot=400, seed=d)
        cover_s += f.spearman.lo <= RHO <= f.spearman.hi
        cover_k += f.kendall.lo <= TAU <= f.kendall.hi
        est.append((f.spearman.value, f.kendall.value))
    assert 0.90 <= cover_s / draws <= 0.99
    assert 0.90 <= cover_k / draws <= 0.99
    mean_s, mean_k = np.mean(est, axis=0)
    assert abs(mean_s - RHO) < 0.05
    assert abs(mean_k - TAU) < 0.05


def test_fidelity_point_estimates_and_top_k_of_a_known_case():
    rng = np.random.default_rng(1)
    p, t = planted(rng, 40)
    f = fidelity(p, t, n_boot=400)
    assert f.pairs == 40
    assert f.spearman.value == pytest.approx(stats.spearmanr(p, t)[0])
    assert f.kendall.value == pytest.approx(stats.kendalltau(p, t)[0])
    assert f.spearman.lo < f.spearman.value < f.spearman.hi
    assert f.kendall.lo < f.kendall.value < f.kendall.hi
    assert f.top_k.k == 10 and f.top_k.expected == pytest.approx(0.25)
    top_p, top_t = set(np.argsort(p)[:10]), set(np.argsort(t)[:10])
    assert f.top_k.overlap == pytest.approx(len(top_p & top_t) / 10)
    assert f.regret == pytest.approx(t[np.argmin(p)] - t.min())
    assert f.regret >= 0
    assert fidelity(p, t, k=3, n_boot=400).top_k.k == 3
    assert fidelity(p, t, n_boot=400, seed=5) == fidelity(p, t, n_boot=400, seed=5)
    j = json.loads(json.dumps(f.to_json()))
    assert j["pairs"] == 40 and set(j["spearman"]) == {"value", "lo", "hi"}
    assert j["top_k"]["k"] == 10


def test_perfect_and_reversed_fidelity():
    e = np.array([31.0, 28.5, 40.2, 35.1, 29.9, 33.3, 38.0, 30.4])
    f = fidelity(e, e.copy(), n_boot=200)
    assert f.spearman.value == pytest.approx(1) and f.kendall.value == pytest.approx(1)
    assert f.spearman.lo == pytest.approx(1) and f.kendall.hi == pytest.approx(1)
    assert f.top_k.overlap == 1 and f.regret == 0
    r = fidelity(e, -e, n_boot=200)
    assert r.spearman.value == pytest.approx(-1) and r.kendall.value == pytest.approx(-1)
    assert r.regret == pytest.approx(e.max() - e.min())
    assert r.top_k.overlap == 0


def test_vectorized_bootstrap_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    p = np.round(rng.normal(size=25), 1)
    t = np.round(p + rng.normal(0, 0.5, 25), 1)
    idx = rng.integers(0, 25, size=(30, 25))
    kb, sb = reruns._kendall_boot(p, t, idx), reruns._spearman_boot(p, t, idx)
    assert kb == pytest.approx([stats.kendalltau(p[i], t[i])[0] for i in idx])
    assert sb == pytest.approx([stats.spearmanr(p[i], t[i])[0] for i in idx])


def test_fidelity_refuses_what_it_cannot_judge():
    with pytest.raises(DseError, match="at least 5 models trained under both recipes; "
                                       "found 4"):
        fidelity([1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(DseError, match="proxy errors hold 1 non-finite"):
        fidelity([1, 2, np.nan, 4, 5, 6], [1, 2, 3, 4, 5, 6])
    with pytest.raises(DseError, match="target errors hold 1 non-finite"):
        fidelity([1, 2, 3, 4, 5, 6], [1, 2, 3, np.inf, 5, 6])
    with pytest.raises(DseError, match="got 6 proxy and 5 target"):
        fidelity([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5])
    with pytest.raises(DseError, match="all target errors are equal"):
        fidelity([1, 2, 3, 4, 5], [3, 3, 3, 3, 3])
    with pytest.raises(DseError, match="k must be an integer from 1"):
        fidelity([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], k=6)
    with pytest.raises(DseError, match="n_boot must be"):
        fidelity([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], n_boot=10)
    with pytest.raises(DseError, match="level must be"):
        fidelity([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], level=95)


# ---- seed noise ----------------------------------------------------------------------------


def test_planted_noise_recovers_sigma_icc_and_between():
    rng = np.random.default_rng(11)
    truth_icc = 9 / (9 + 2.25)
    sig, icc, sb = [], [], []
    for _ in range(50):
        nz = noise(seeds_frame(rng, rng.normal(30, 3, 40), [3] * 40, 1.5))
        sig.append(nz.sigma_seed), icc.append(nz.icc), sb.append(nz.sigma_between)
    sig = np.array(sig)
    assert abs(sig.mean() / 1.5 - 1) < 0.10
    assert abs(sig[0] / 1.5 - 1) < 0.20
    assert np.mean(np.abs(sig / 1.5 - 1) < 0.20) >= 0.9
    assert abs(np.mean(icc) - truth_icc) < 0.05
    assert abs(np.mean(sb) / 3 - 1) < 0.10
    cover = cover_f = 0
    for _ in range(100):  # the bootstrap over models covered 91%, the F interval 94% of 200
        nz = noise(seeds_frame(rng, rng.normal(30, 3, 40), [3] * 40, 1.5))
        cover += nz.icc_lo <= truth_icc <= nz.icc_hi
        cover_f += nz.f_lo <= truth_icc <= nz.f_hi
    assert cover >= 85 and cover_f >= 88


def test_the_bootstrap_icc_interval_holds_where_model_effects_are_not_normal():
    """15% of 40 models 8 points worse (a recipe some models fail under), seed noise 1.5:
    the bootstrap over models covered the true ICC 0.79 in 93.5% of 200 populations, the
    normal-theory F interval in 88%."""
    rng = np.random.default_rng(14)
    v = 0.15 * 0.85 * 64 + 0.25
    truth, cover, cover_f = v / (v + 2.25), 0, 0
    for _ in range(100):
        effect = np.where(rng.random(40) < 0.15, 8.0, 0.0) + rng.normal(0, 0.5, 40)
        nz = noise(seeds_frame(rng, 30 + effect, [3] * 40, 1.5))
        cover += nz.icc_lo <= truth <= nz.icc_hi
        cover_f += nz.f_lo <= truth <= nz.f_hi
    assert cover >= 88 and cover >= cover_f - 2


def test_noise_without_differences_between_models_has_icc_near_zero():
    rng = np.random.default_rng(12)
    cover, icc = 0, []
    for _ in range(100):
        nz = noise(seeds_frame(rng, [30.0] * 40, [3] * 40, 1.5))
        cover += nz.icc_lo <= 0 <= nz.icc_hi
        icc.append(nz.icc)
        assert nz.icc_lo >= -1 / (nz.n0 - 1) and nz.icc_hi <= 1
    assert cover >= 90
    assert abs(np.mean(icc)) < 0.05


def test_noise_of_unbalanced_seeds_and_its_report():
    rng = np.random.default_rng(13)
    seeds = [2] * 10 + [4] * 10 + [1] * 7
    df = seeds_frame(rng, rng.normal(30, 3, len(seeds)), seeds, 1.5)
    nz = noise(df.sample(frac=1, random_state=0))
    assert nz.models == 20 and nz.runs == 60 and nz.models_single == 7
    pm = nz.per_model
    assert list(pm.columns) == ["model_id", "n", "mean", "sd", "min", "max"]
    assert len(pm) == 20 and pm["mean"].is_monotonic_increasing
    assert sorted(pm["n"].unique()) == [2, 4]
    pooled = math.sqrt(((pm["n"] - 1) * pm["sd"] ** 2).sum() / (pm["n"] - 1).sum())
    assert nz.sigma_seed == pytest.approx(pooled)
    n_i = pm["n"].to_numpy(float)
    assert nz.n0 == pytest.approx((60 - (n_i ** 2).sum() / 60) / 19)
    assert nz.icc_lo < nz.icc < nz.icc_hi
    assert nz.floor(4) == pytest.approx(nz.sigma_seed / 2)
    assert nz.line() == f"seed noise σ = {nz.sigma_seed:.2f} points (20 models × 2–4 seeds)"
    assert nz.line(1.1, n=3).startswith("median difference 1.10 points; seed noise σ = ")
    assert nz.line(1.1, n=3).endswith(f", σ/√n = {nz.sigma_seed / math.sqrt(3):.2f} for n = 3")
    j = json.loads(json.dumps(nz.to_json()))
    assert j["models_single"] == 7 and len(j["per_model"]) == 20


def test_noise_line_of_balanced_seeds():
    df = pd.DataFrame({"model_id": ["a"] * 3 + ["b"] * 3,
                       "error": [30.0, 31.0, 32.0, 40.0, 41.0, 42.0]})
    nz = noise(df)
    assert nz.sigma_seed == pytest.approx(1.0)
    assert nz.line(n=3) == "seed noise σ = 1.00 points (2 models × 3 seeds), σ/√n = 0.58 for n = 3"
    one = noise(df[df.model_id == "a"])
    assert one.models == 1 and math.isnan(one.icc) and one.to_json()["icc"] is None


def test_noise_refuses_what_it_cannot_judge():
    with pytest.raises(DseError, match="noise needs models with at least two seeds; "
                                       "train reruns with dse train --seeds 3"):
        noise(pd.DataFrame({"model_id": ["a", "b", "c"], "error": [30.0, 31.0, 29.0]}))
    with pytest.raises(DseError, match="at least two seeds"):
        noise(pd.DataFrame({"model_id": [], "error": []}))
    with pytest.raises(DseError, match="missing error"):
        noise(pd.DataFrame({"model_id": ["a", "a"]}))
    with pytest.raises(DseError, match="1 runs have a non-finite error"):
        noise(pd.DataFrame({"model_id": ["a", "a", "b"], "error": [30.0, np.nan, 29.0]}))
    with pytest.raises(DseError, match="n must be an integer"):
        noise(pd.DataFrame({"model_id": ["a", "a"], "error": [30.0, 31.0]})).floor(0)


def test_noise_floor_text():
    assert noise_floor_text(1.4, 24, 2) == ("seed noise σ = 1.40 per run; ≈ 0.29 on a "
                                            "difference of two means of 24 models × 2 seeds")
    assert noise_floor_text(1.4, 24, 1).endswith("≈ 0.40 on a difference of two means of "
                                                 "24 models")
    with pytest.raises(DseError, match="n_models must be"):
        noise_floor_text(1.4, 0, 1)
    with pytest.raises(DseError, match="sigma must be"):
        noise_floor_text(float("nan"), 24, 1)
