"""dse.analysis.stats on arrays with known answers: EDF/KS against scipy, complexity weights,
bootstrap good ranges, search efficiency, and fit-linear on RegNet-generated widths."""


import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dse.analysis import search
from dse.analysis import stats as A
from dse.errors import DseError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---- EDF and KS ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 200])
def test_edf_equals_scipy_ecdf(rng, n):
    e = np.round(rng.normal(10, 2, n), 1)  # rounding makes ties
    x, y = A.edf(e)
    assert np.all(np.diff(x) > 0)
    np.testing.assert_allclose(y, stats.ecdf(e).cdf.evaluate(x), rtol=0, atol=1e-12)
    pts = np.linspace(e.min() - 1, e.max() + 1, 101)
    pts = np.r_[pts, e]  # at the data points F counts strictly smaller errors
    np.testing.assert_allclose(A.edf_at(e, pts), [(e < p).mean() for p in pts], atol=1e-12)


def test_weighted_edf_is_the_weighted_fraction_below(rng):
    e, w = rng.normal(size=50), rng.uniform(size=50)
    pts = np.r_[e, 0.0, 5.0, -5.0]
    expect = [(w * (e < p)).sum() / w.sum() for p in pts]
    np.testing.assert_allclose(A.edf_at(e, pts, w), expect, atol=1e-12)
    x, y = A.edf(e, w)
    assert y[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("na,nb", [(1, 1), (1, 30), (40, 25), (500, 480), (12_000, 15_000)])
def test_ks_equals_scipy_ks_2samp(rng, na, nb):
    a = np.round(rng.normal(10, 1, na), 1)
    b = np.round(rng.normal(10.3, 1.2, nb), 1)
    ref = stats.ks_2samp(a, b)
    d, p = A.ks(a, b)
    assert d == ref.statistic and p == ref.pvalue
    assert A.ks_statistic(a, b) == pytest.approx(ref.statistic, abs=1e-12)


def test_weighted_ks_with_uniform_weights_is_the_asymptotic_test(rng):
    a, b = rng.normal(0, 1, 3000), rng.normal(0.1, 1, 2000)
    ref = stats.ks_2samp(a, b, method="asymp")
    d, p = A.ks(a, b, np.full(3000, 2.0), np.ones(2000))
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_weighted_ks_statistic_is_the_sup_of_weighted_edf_differences(rng):
    a, b = np.round(rng.normal(0, 1, 60), 1), np.round(rng.normal(0.5, 1, 40), 1)
    wa, wb = rng.uniform(size=60), rng.uniform(size=40)
    pts = np.r_[a, b]
    brute = max(abs((wa * (a <= p)).sum() / wa.sum() - (wb * (b <= p)).sum() / wb.sum())
                for p in pts)
    assert A.ks_statistic(a, b, wa, wb) == pytest.approx(brute, abs=1e-12)


def test_ks_needs_models_on_both_sides():
    with pytest.raises(DseError):
        A.ks([], [1.0])


# ---- complexity normalization --------------------------------------------------------------


def test_complexity_weights_sum_to_one_and_flatten_the_histogram(rng):
    c = np.exp(rng.normal(np.log(2e7), 0.3, 4000))  # skewed: most models in the middle bins
    lo, hi = np.quantile(c, [0.02, 0.98])
    w = A.complexity_weights(c, lo, hi, bins=8)
    inside = (c >= lo) & (c <= hi)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w[~inside] == 0) and np.all(w[inside] > 0)
    counts, _ = np.histogram(c[inside], bins=A.bin_edges(lo, hi, 8))
    assert counts.max() > 3 * counts.min()  # the raw histogram is far from flat ...
    hist, _ = np.histogram(c[inside], bins=A.bin_edges(lo, hi, 8), weights=w[inside])
    np.testing.assert_allclose(hist, np.full(8, 1 / 8))  # ... the weighted one is flat
    m = counts[np.clip(np.searchsorted(A.bin_edges(lo, hi, 8), c[inside], "right") - 1, 0, 7)]
    np.testing.assert_allclose(w[inside], 1 / (8 * m))


def test_complexity_weights_name_the_empty_bin():
    c = np.array([1.0, 1.1, 1.2, 9.0, 10.0])
    with pytest.raises(DseError, match=r"bins 6 leave complexity bin \d+ .* holding no xa models"):
        A.complexity_weights(c, 1.0, 10.0, bins=6, name="xa")


def _pop(space, c, e):
    n = len(c)
    return pd.DataFrame(dict(model_id=[f"{space}{i}" for i in range(n)], space=space,
                             kind="anynet", status="done", error=e, flops=c, params=c, acts=c))


def test_normalization_removes_a_difference_due_to_complexity_alone(rng):
    # same error-vs-flops law, different flops distributions: raw EDFs differ, normalized agree
    ca = np.exp(rng.uniform(np.log(1e7), np.log(4e7), 3000))
    cb = np.exp(rng.triangular(np.log(1e7), np.log(4e7), np.log(4e7), 3000))
    law = lambda c: 20 - 3 * np.log(c / 1e7)  # noqa: E731
    df = pd.concat([_pop("a", ca, law(ca) + rng.normal(0, 0.5, 3000)),
                    _pop("b", cb, law(cb) + rng.normal(0, 0.5, 3000))], ignore_index=True)
    raw = A.compare(df, ["a", "b"])
    norm = A.compare(df, ["a", "b"], normalize="flops", bins=10)
    assert raw.pairs[0].D > 0.15 and raw.pairs[0].p < 1e-10
    assert norm.pairs[0].D < 0.05
    for s in "ab":
        e, w = norm.curves[s]
        assert w.sum() == pytest.approx(1.0)
        assert norm.spaces[s]["mean"] == pytest.approx((e * w).sum())


def test_compare_rejects_disjoint_ranges():
    df = pd.concat([_pop("a", np.array([1.0, 2.0]), [1.0, 2.0]),
                    _pop("b", np.array([3.0, 4.0]), [1.0, 2.0])], ignore_index=True)
    with pytest.raises(DseError, match="do not overlap"):
        A.compare(df, ["a", "b"], normalize="flops")


# ---- finished models and the reasons there are none ----------------------------------------


def test_population_keeps_done_models_with_finite_errors():
    df = pd.DataFrame(dict(space="s", model_id=list("abcde"),
                           status=["done", "done", "diverged", None, "failed"],
                           error=[10.0, np.nan, np.nan, np.nan, np.nan]))
    assert list(A.population(df, "s")["model_id"]) == ["a"]
    assert A.counts(df, "s") == dict(sampled=5, trained=4, finished=1, diverged=1, failed=1,
                                     no_error=1)
    with pytest.raises(DseError, match="1 diverged, 1 failed, 1 done without an error"):
        A.population(df[df["model_id"] != "a"], "s")
    with pytest.raises(DseError, match="no results yet"):
        A.population(df[df["status"].isna()], "s")


# ---- bootstrap good ranges ----------------------------------------------------------------


def test_bootstrap_range_contains_the_known_optimum(rng):
    x = rng.uniform(0, 10, 500)
    e = 10 + 0.5 * (x - 6.3) ** 2 + rng.normal(0, 0.3, 500)  # best region around x = 6.3
    r = A.bootstrap_range(x, e, rng=1)
    assert r["lo"] <= 6.3 <= r["hi"]
    assert r["hi"] - r["lo"] < 3  # informative: well inside [0, 10]
    assert abs(r["median"] - 6.3) < 1
    assert r["lo"] <= r["median"] <= r["hi"]


def test_bootstrap_range_on_a_discrete_parameter(rng):
    g = rng.choice([1, 2, 4, 8, 16, 32], 400)
    e = 10 + np.abs(np.log2(g) - 3) + rng.normal(0, 0.2, 400)  # g = 8 is best
    r = A.bootstrap_range(g, e, rng=2)
    assert r["lo"] <= 8 <= r["hi"] and r["median"] == 8 and r["best"] == 8


def test_bootstrap_follows_the_reference_procedure(rng):
    e = rng.normal(size=40)
    best = A.bootstrap_best(e, repeats=3000, rng=3)
    # every kept index is the argmin of some 25% resample: its error beats ~75% of the models
    assert best.shape == (3000,)
    assert np.mean(stats.rankdata(e)[best] <= 20) > 0.9
    assert A.bootstrap_best(np.array([5.0]), repeats=10).tolist() == [0] * 10


# ---- search efficiency ------------------------------------------------------------------------


def test_search_efficiency_endpoints_and_monotonicity(rng):
    e = rng.normal(10, 1, 100)
    df = search.search_efficiency(e, rng=0)
    assert df["k"].tolist() == [1, 2, 4, 8, 16, 32, 64, 100]
    assert df["mean"].iloc[0] == pytest.approx(e.mean())  # every model drawn once per round
    assert df["mean"].iloc[-1] == e.min() and df["std"].iloc[-1] == 0
    assert np.all(np.diff(df["mean"]) <= 1e-12)


def test_weighted_search_draws_by_weight():
    e = np.array([5.0, 9.0, 10.0, 11.0])
    df = search.search_efficiency(e, w=[0.0, 0.0, 0.0, 1.0], rng=0)
    assert np.all(df["mean"] == 11.0)


def test_rank_correlation_is_spearman(rng):
    x, y = rng.normal(size=30), rng.normal(size=30)
    r = A.rank_correlation(x, y)
    ref = stats.spearmanr(x, y)
    assert r["rho"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    assert A.rank_correlation([1.0, 2.0], [2.0, 1.0])["rho"] is None


# ---- trends ---------------------------------------------------------------------------------


def test_trends_on_a_regnet_population(rng):
    n = 300
    d = rng.integers(12, 29, n)
    df = pd.DataFrame(dict(space="regnetx", kind="regnet", status="done", d=d,
                           w0=rng.choice([16, 24, 32], n), wa=rng.uniform(8, 64, n),
                           wm=rng.uniform(2, 3, n), group_w=rng.choice([8, 16], n), b=1,
                           ds=[[1, 2, 3, 4]] * n, ws=[[8, 16, 32, 64]] * n, flops=1, params=1,
                           acts=1, model_id=[str(i) for i in range(n)],
                           error=10 + np.abs(d - 20) + rng.normal(0, 0.3, n)))
    tr = A.trends(df, repeats=2000)
    assert [t["param"] for t in tr] == ["d", "w0", "wa", "wm", "g"]  # b = 1 is constant
    depth = tr[0]
    assert depth["lo"] <= 20 <= depth["hi"] and depth["median"] == 20
    with pytest.raises(DseError, match="unknown parameter"):
        A.trends(df, ["depth"])
