"""Which choices matter (dse.analysis.importance, `dse importance`): a planted error function
on RegNetX models drawn by dse's own sampler under a flops window (so d, w0, wa and wm are
dependent as sampled) and lr, wd drawn per model by the recipe's distributions, written to a
store as results, with seed reruns for the noise ceiling. The shares are checked against the
truth of that sample (computed here by least squares, independently of the module), the
lr × wd interaction must be found, and parameters outside the function must not be called
"matters" more often than α, over shuffled errors (the design as sampled) and redrawn noise.
"""

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import ok, one_error, run

from dse.analysis import fanova, stats
from dse.analysis import importance as imp
from dse.store import recipes
from dse.store.core import Store
from dse.train.recipe import Recipe, draw

DRAWS = {"lr": {"dist": "log_uniform", "low": 0.01, "high": 1},
         "wd": {"dist": "log_uniform", "low": 1e-5, "high": 1e-3}}
SIGMA = 0.7  # seed noise of one run, points
PLANTED = ["d", "w0", "wa", "wm", "g", "lr", "wd"]
OUTSIDE = ("d", "w0", "wa")
N, RERUN = 300, 60  # models; models with a second seed


def planted(m: pd.DataFrame) -> np.ndarray:
    """error − 30 = 12·(w_m − 2.5)² + 2·[g = 1] + 0.75·(log10 lr + log10 wd + 4)²."""
    return (12 * (m["wm"] - 2.5) ** 2 + 2.0 * (m["group_w"] == 1)
            + 0.75 * (np.log10(m["lr"]) + np.log10(m["wd"]) + 4) ** 2).to_numpy(float)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """N RegNetX models sampled in 1M:4M flops with planted errors, RERUN of them twice."""
    root = tmp_path_factory.mktemp("importance")
    ok("sample", "--space", "rx", "--n", N, "--dataset", "synthetic", "--flops", "1M:4M",
       "--store", root)
    s = Store(root)
    m = s.read_models("regnetx")
    drawn = [draw(Recipe(epochs=1), DRAWS, i) for i in m["model_id"]]
    m["lr"], m["wd"] = [r.lr for r in drawn], [r.wd for r in drawn]
    f = planted(m)
    fp = recipes.fingerprint(dict(epochs=1, **DRAWS))
    rng = np.random.default_rng(0)
    for i, r in m.iterrows():
        for seed in range(2 if i < RERUN else 1):
            s.write_result("regnetx", dict(
                model_id=r["model_id"], space="regnetx", status="done", recipe=fp,
                seed=seed, error=30 + f[i] + rng.normal(0, SIGMA), epochs=1, lr=r["lr"],
                wd=r["wd"]))
    return root


@pytest.fixture(scope="module")
def pop(store):
    return stats.population(Store(store).load(["regnetx"]), "regnetx")


def _rss(x: np.ndarray, y: np.ndarray) -> float:
    x = np.column_stack([np.ones(len(y)), x])
    return float(((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2).sum())


def truth(pop: pd.DataFrame, cols: dict, k: int, pair=("lr", "wd")) -> dict:
    """The shares the planted function has in this sample, by least squares on the same
    columns: first-order, beyond the others, and the pair's cells beyond the additive model
    (the denominator adds the seed noise of each model's mean)."""
    f = planted(pop)
    seeds = pop["n_seeds"].to_numpy(float)
    total = ((f - f.mean()) ** 2).sum() + (SIGMA ** 2 / seeds).sum()
    b = {p: fanova.basis(v, k) for p, v in cols.items()}
    every = np.hstack(list(b.values()))
    rss_all = _rss(every, f)
    c = {p: fanova.codes(cols[p], min(imp.PAIR_BINS, k)) for p in pair}
    cells = fanova.onehot(np.unique(c[pair[0]] * 10 + c[pair[1]], return_inverse=True)[1],
                          drop=False)
    return dict(
        first={p: (((f - f.mean()) ** 2).sum() - _rss(b[p], f)) / total for p in cols},
        total={p: (_rss(np.hstack([b[q] for q in cols if q != p]), f) - rss_all) / total
               for p in cols},
        pair=(rss_all - _rss(np.hstack([every, cells]), f)) / total)


def test_planted_shares_are_recovered_within_their_intervals(pop):
    cols, constant = imp.parameters(pop, PLANTED)
    assert constant == [] and len(pop) == N
    got = imp.importance(cols, pop["error"], pairs=True, n_perm=199, seed=1)
    k = imp._auto_bins(cols, N)
    t = truth(pop, cols, k)
    for s in got.shares:
        assert s.first.lo <= t["first"][s.param] <= s.first.hi, (s, t["first"][s.param])
    for p in PLANTED:  # no interaction of p is found but lr × wd, so total = beyond the others
        s = got.share(p)
        extra = got.pair("lr", "wd").share.value if p in ("lr", "wd") else 0.0
        assert s.total.lo - extra <= t["total"][p] <= s.total.hi - extra, (s, t["total"][p])
    assert {s.param for s in got.shares if s.matters} == {"wm", "g", "lr", "wd"}
    # dependence as sampled: w0 moves with wm (a flops window), so it shares wm's effect alone
    # but adds nothing beyond it
    assert t["first"]["w0"] > 0.02 and got.share("w0").first.lo > 0
    assert got.share("w0").total.lo <= 0 <= got.share("w0").total.hi
    found = [(p.a, p.b) for p in got.pairs if p.interact]
    assert found == [("lr", "wd")], got.pairs
    lw = got.pair("lr", "wd")
    assert lw.share.lo <= t["pair"] <= lw.share.hi and lw.share.lo > 0.02
    assert got.explained.lo > 0.8 and got.test == "permutation"


def test_shuffled_errors_call_nothing_in_most_draws(pop):
    """A cheap version of the slow calibration below: 10 shuffles of the errors over the
    sampled design, 10 redraws of the noise; at most 2 false calls in each set of 10 (at
    α = 0.05 the chance of 3 or more is about 1%)."""
    cols, _ = imp.parameters(pop, PLANTED)
    rng = np.random.default_rng(7)
    f = planted(pop)
    shuffled = redrawn = 0
    for i in range(10):
        y = rng.permutation(pop["error"].to_numpy(float))
        shuffled += any(s.matters for s in imp.importance(cols, y, n_perm=199, n_boot=20,
                                                           seed=i).shares)
        y = 30 + f + rng.normal(0, SIGMA, len(f))
        got = imp.importance(cols, y, n_perm=199, n_boot=20, seed=i)
        redrawn += any(got.share(p).matters for p in OUTSIDE)
        assert all(got.share(p).matters for p in ("wm", "g", "lr", "wd"))
    assert shuffled <= 2 and redrawn <= 2, (shuffled, redrawn)


@pytest.mark.slow
def test_calibration_over_200_shuffled_draws(pop):
    """Over 200 draws: shuffled errors (the design as sampled) call any parameter or any
    pair "matters" in at most α of them (plus two binomial standard errors, 0.081);
    redrawn noise on the planted function calls a parameter outside it in at most that."""
    cols, _ = imp.parameters(pop, PLANTED)
    rng = np.random.default_rng(11)
    f = planted(pop)
    draws, shuffled, pairs, outside = 200, 0, 0, {p: 0 for p in OUTSIDE}
    for i in range(draws):
        y = rng.permutation(pop["error"].to_numpy(float))
        got = imp.importance(cols, y, pairs=True, n_perm=199, n_boot=20, seed=i)
        shuffled += any(s.matters for s in got.shares)
        pairs += any(p.interact for p in got.pairs)
        got = imp.importance(cols, 30 + f + rng.normal(0, SIGMA, len(f)), n_perm=199,
                             n_boot=20, seed=i)
        for p in OUTSIDE:
            outside[p] += got.share(p).matters
    bound = draws * (0.05 + 2 * np.sqrt(0.05 * 0.95 / draws))
    assert shuffled <= bound and pairs <= bound, (shuffled, pairs)
    assert sum(outside.values()) <= bound, outside


@pytest.mark.slow
def test_the_f_distribution_past_exact_max_holds_alpha():
    """Past EXACT_MAX models the F distribution stands in for the permutations: 100 null
    populations of 6,000 models with dependent parameters call something in ≤ α + 2 se."""
    rng = np.random.default_rng(3)
    calls = 0
    for i in range(100):
        z = rng.normal(size=(6000, 2))
        cols = dict(a=z[:, 0], b=0.6 * z[:, 0] + 0.8 * z[:, 1],
                    c=rng.integers(0, 3, 6000).astype(float))
        got = imp.importance(cols, rng.normal(size=6000), n_boot=20, seed=i)
        assert got.test == "F"
        calls += any(s.matters for s in got.shares)
    assert calls <= 100 * (0.05 + 2 * np.sqrt(0.05 * 0.95 / 100))


def test_a_large_population_uses_the_f_distribution_and_finds_a_planted_effect():
    rng = np.random.default_rng(4)
    n = 6000
    cols = dict(a=rng.uniform(0, 1, n), b=rng.integers(0, 4, n).astype(float))
    got = imp.importance(cols, 3 * cols["a"] ** 2 + rng.normal(size=n), n_boot=20)
    assert got.test == "F" and got.share("a").matters and not got.share("b").matters
    share = 9 * (1 / 5 - 1 / 9) / (9 * (1 / 5 - 1 / 9) + 1)  # Var(3a²) / (Var(3a²) + 1)
    assert got.share("a").first.lo <= share <= got.share("a").first.hi


def test_the_noise_ceiling_from_reruns(store, pop):
    from dse.cli.importance import noise_ceiling
    from dse.store.recipes import Pick

    c = noise_ceiling(Store(store), "regnetx", pop, Pick())
    seeds = pop["n_seeds"].to_numpy(float)
    assert c.models == RERUN and abs(c.sigma_seed - SIGMA) < 0.15
    expect = 1 - np.mean(c.sigma_seed ** 2 / seeds) / pop["error"].var()
    assert c.value == pytest.approx(expect) and 0.9 < c.value < 1
    assert c.seeds == pytest.approx(seeds.mean()) and c.icc.lo <= c.icc.value <= c.icc.hi


def test_the_same_seed_gives_the_same_numbers(pop):
    cols, _ = imp.parameters(pop, ["wm", "g"])
    a, b = (imp.importance(cols, pop["error"], n_perm=99, n_boot=50, seed=5).to_json()
            for _ in range(2))
    assert a == b
    c = imp.importance(cols, pop["error"], n_perm=99, n_boot=50, seed=6).to_json()
    assert c["shares"][0]["first"]["value"] == a["shares"][0]["first"]["value"]
    assert c["shares"][0]["first"]["lo"] != a["shares"][0]["first"]["lo"]


def test_parameters_by_default_and_by_name(pop):
    cols, constant = imp.parameters(pop)
    assert list(cols) == ["d", "w0", "wa", "wm", "g", "lr", "wd"]
    assert constant == ["b", "block", "activation", "resolution"]  # epochs: one, not shown
    cols, constant = imp.parameters(pop, ["lrwd", "w", "d2", "epochs"])
    assert list(cols) == ["lrwd", "w", "d2"] and constant == ["epochs"]
    np.testing.assert_allclose(cols["lrwd"], pop["lr"] * pop["wd"])
    with pytest.raises(imp.DseError, match="params names an unknown parameter 'depth'"):
        imp.parameters(pop, ["depth"])


def test_bins_splines_holm_and_bad_input():
    x = np.array([1.0, 2, 2, 3, np.nan, 5, 8, 13, 21, 34])
    assert fanova.codes(x, 3).tolist() == [0, 0, 0, 1, 3, 1, 1, 2, 2, 2]
    assert fanova.basis(np.array(["relu", "silu", "relu", None], dtype=object), 4).shape == \
        (4, 2)
    sp = fanova.basis(x, 4)  # log scale (1..34), 2 inner knots, a missing-value column
    assert sp.shape == (10, 4) and sp[4, 3] == 1 and sp[:, 3].sum() == 1
    np.testing.assert_allclose(fanova.holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    cols = dict(a=np.arange(20.0))
    with pytest.raises(imp.DseError, match="at least 10 finished models"):
        imp.importance(dict(a=np.arange(5.0)), np.arange(5.0))
    with pytest.raises(imp.DseError, match="all 20 errors are equal"):
        imp.importance(cols, np.ones(20))
    with pytest.raises(imp.DseError, match="finite error"):
        imp.importance(cols, np.r_[np.arange(19.0), np.nan])
    with pytest.raises(imp.DseError, match="no parameter varies.*b, g"):
        imp.importance({}, np.arange(20.0), constant=["b", "g"])
    with pytest.raises(imp.ArgumentError, match="n_perm must be an integer ≥ 19"):
        imp.importance(cols, np.arange(20.0), n_perm=5)
    with pytest.raises(imp.ArgumentError, match="n_perm 99 is too few.*at least 139"):
        imp.importance({p: np.arange(20.0) for p in "abcdefg"}, np.arange(20.0), n_perm=99)


# ---- the command line ------------------------------------------------------------------------

def test_importance_command(store, tmp_path):
    args = ("importance", "rx", "--store", store, "--perms", 199, "--boot", 20)
    out = json.loads(ok(*args, "--pairs", "--params", "wm,g", "--params", "lr", "--params",
                        "wd", "--json").output)
    shares = {s["param"]: s for s in out["shares"]}
    assert list(shares) == ["wm", "g", "lr", "wd"]
    assert all(s["matters"] for s in shares.values())
    assert [(p["a"], p["b"]) for p in out["pairs"] if p["interact"]] == [("lr", "wd")]
    assert 0.9 < out["ceiling"]["value"] < 1 and out["ceiling"]["models"] == RERUN
    assert out["figure"].endswith("regnetx/analysis/importance.png")
    again = json.loads(ok(*args, "--pairs", "--params", "wm,g,lr,wd", "--json").output)
    assert again["shares"] == out["shares"] and again["pairs"] == out["pairs"]
    text = ok(*args, "--where", "g == 1", "--out", tmp_path / "imp.svg").output
    assert "(models where g == 1)" in text and "one value here (untestable): g, b" in text
    assert "noise ceiling 0." in text and (tmp_path / "imp.svg").is_file()
    assert "unknown parameter 'depth'" in one_error(run(*args, "--params", "depth"))
    assert one_error(run(*args, "--params", "depth")).startswith("Error: --params ")
    assert "regime 'x' does not exist" in one_error(run(*args, "--regime", "x"))
    assert "extension must be one of" in one_error(run(*args, "--out", tmp_path / "i.txt"))


# ---- claims ----------------------------------------------------------------------------------

def test_importance_claims_parse_and_are_judged(pop):
    from dse.method import claims

    c = claims.parse_claim("regnetx[g > 1]: wm does not matter within 0.05")
    assert (c.kind, str(c.a), c.params, c.value) == ("negligible", "regnetx[g > 1]", ("wm",), 0.05)
    assert claims.parse_claim("rx: lr and wd interact").params == ("lr", "wd")
    for bad, why in (("rx: g does not matter within 5", "between 0 and 1"),
                     ("rx: g and g interact", "does not interact with itself")):
        with pytest.raises(claims.DseError, match=why):
            claims.parse_claim(bad)
    texts = ["regnetx: wm matters", "regnetx: lr and wd interact", "regnetx: d matters",
             "regnetx: w0 does not matter within 0.05", "regnetx: g does not matter within 0.01",
             "regnetx: b matters", "regnetx: depth matters", "regnetx: d and wa interact"]
    got = claims.judge_all([claims.parse_claim(t) for t in texts], {}, {"regnetx": pop},
                           permutations=199)
    verdicts = {v.claim: v.verdict for v in got}
    assert verdicts == {
        "regnetx: wm matters": "holds", "regnetx: lr and wd interact": "holds",
        "regnetx: d matters": "inconclusive",
        "regnetx: w0 does not matter within 0.05": "holds",
        "regnetx: g does not matter within 0.01": "contradicted",
        "regnetx: b matters": "untestable", "regnetx: depth matters": "untestable",
        "regnetx: d and wa interact": "inconclusive"}, got
    by = {v.claim: v for v in got}
    assert "single value" in by["regnetx: b matters"].detail
    assert "unknown parameter 'depth'" in by["regnetx: depth matters"].detail
    assert by["regnetx: wm matters"].p_adjusted < 0.05 and by["regnetx: wm matters"].effect
    assert by["regnetx: g does not matter within 0.01"].effect.lo > 0.01


def test_suggest_constrains_what_matters_and_fixes_what_is_negligible(store, pop):
    from dse.method import importancehints

    cols, _ = imp.parameters(pop, PLANTED)
    y = pop["error"].to_numpy(float)
    rng = np.random.default_rng(2)
    cols["noise"] = rng.normal(size=len(y))  # a parameter the error ignores
    got = imp.importance(cols, y, n_perm=199, n_boot=100, seed=3)
    hs = importancehints.hints(got, margin=0.05)
    constrain = [h.param for h in hs if h.action == "constrain"]
    assert sorted(constrain) == ["g", "lr", "wd", "wm"]
    assert constrain == sorted(constrain, key=lambda p: -got.share(p).total.value)
    fixed = {h.param for h in hs if h.action == "fix"}
    assert "noise" in fixed and not fixed & {"wm", "g", "lr", "wd"}
    assert all(got.share(p).first.hi < 0.05 for p in fixed)
    out = json.loads(ok("suggest", "rx", "--store", store, "--json").output)["importance"]
    assert {h["param"] for h in out["hints"] if h["action"] == "constrain"} == \
        {"wm", "g", "lr", "wd"}
    assert "matters (p = " in out["hints"][0]["why"]


def test_what_docs_findings_says_about_the_committed_stores():
    """docs/findings.md, "Which choices matter": the numbers of findings-cpu, recomputed."""
    from cli_helpers import ROOT

    from dse.analysis import ceiling

    store = Store(ROOT / "experiments" / "results" / "findings-cpu")
    got = {}
    for space in ("regnetx", "xc-choices"):
        p = stats.population(store.load([space]), space)
        cols, _ = imp.parameters(p)
        got[space] = imp.importance(cols, p["error"], pairs=True,
                                    ceiling=ceiling.from_reruns(store.read_results(space), p))
    rx, xc = got["regnetx"], got["xc-choices"]
    assert [s.param for s in rx.shares] == ["d", "wa", "wm", "g"]
    assert [s.param for s in rx.shares if s.matters] == ["wm"] and rx.share("wm").p == 0.004
    assert (round(rx.share("wm").first.value, 2), round(rx.share("wm").total.value, 2)) == \
        (0.36, 0.38)
    assert min(s.p for s in rx.shares if not s.matters) >= 0.11
    assert not any(p.interact for p in rx.pairs) and min(p.p for p in rx.pairs) >= 0.25
    assert round(rx.explained.value, 2) == 0.54 and round(rx.ceiling.value, 2) == 0.60
    assert round(rx.ceiling.sigma_seed, 2) == 1.06 and rx.ceiling.models == 24
    assert [s.param for s in xc.shares if s.matters] == ["d4", "w4", "activation"]
    act, g = xc.share("activation"), xc.share("g")
    assert (round(act.first.value, 2), round(act.total.value, 2)) == (0.75, 0.39)
    assert round(g.first.value, 2) == 0.12 and g.p == 1 and g.total.hi < 0.02
    assert not any(p.interact for p in xc.pairs) and xc.ceiling is None
    assert round(xc.explained.value, 2) == 0.88


def test_the_python_example_in_docs_analysis_runs(monkeypatch):
    from cli_helpers import ROOT

    text = (ROOT / "docs" / "analysis.md").read_text()
    code = text.split("Which choices matter, on the committed findings-cpu store")[1]
    code = code.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    scope = {}
    exec(compile(code, "docs/analysis.md", "exec"), scope)
    assert scope["got"].share("wm").matters and round(scope["got"].ceiling.value, 2) == 0.60
