"""Flop regimes: windows and ladders, labels in the store, sampling and experiments in several
regimes, and trends across regimes (planted constant and rising best values, null
populations) with their claims."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from cli_helpers import ROOT, ok, one_error, reanalyzed, run

from dse.analysis import scaling as trends
from dse.analysis import stats
from dse.errors import DseError
from dse.method import claims as expect
from dse.method import experiment, stages
from dse.space import regimes
from dse.space.sampling import Window
from dse.store.core import Store

# RegNetX on the synthetic task (32×32, CIFAR stem) spans about 1.3M to 6G flops
WINDOWS = ("1M:2M", "3M:4M", "6M:8M")


def sample(store, window, n=6, *more):
    return ok("sample", "--space", "rx", "--n", n, "--dataset", "synthetic", "--flops", window,
              "--store", store, *more)


# ---- windows, ladders, resolution ------------------------------------------------------------

def test_a_ladder_is_named_by_its_rungs_with_the_papers_windows():
    rs = regimes.ladder(2e6, 8e6, 3, 0.25)
    assert [r.name for r in rs] == ["2M", "4M", "8M"]
    assert [(r.flops.lo, r.flops.hi) for r in rs] == [(1.5e6, 2e6), (3e6, 4e6), (6e6, 8e6)]
    paper = regimes.parse({"from": "400M", "to": "400M", "count": 1, "width": 0.1})
    assert (paper[0].name, paper[0].flops.lo, paper[0].flops.hi) == ("400M", 3.6e8, 4e8)
    listed = regimes.parse(["1M:2M", {"name": "big", "flops": "3M:4M"}])
    assert [r.label for r in listed] == ["1M:2M", "big"]


@pytest.mark.parametrize("value, message", [
    (["1M:2M", "1.5M:3M"], "overlap"),
    (["1M:2M", "2M:3M"], "overlap"),            # inclusive windows touch at 2M
    (["2M:2M"], "empty"),
    (["1M:2M", "1M:2M"], "listed twice"),
    ({"from": "1M", "to": "8M", "count": 4, "width": 0.6}, "overlap"),
    ({"from": "1M", "to": "8M", "count": 4, "width": 1.5}, "width"),
    ({"from": "1M", "to": "8M", "count": 4}, "missing width"),
    ([], "must be a list"),
])
def test_bad_regimes_say_what_is_wrong(value, message):
    with pytest.raises(DseError, match=message):
        regimes.parse(value)


def test_resolve_joins_the_regime_of_a_window_and_refuses_overlaps():
    have = [regimes.Stored("2M", Window(1.5e6, 2e6), 1.6e6, 1.9e6)]
    assert regimes.resolve(regimes.Regime(None, Window(1.5e6, 2e6)), have).name == "2M"
    assert regimes.resolve(regimes.Regime(None, Window(3e6, 4e6)), have).name == "3M:4M"
    assert regimes.resolve(regimes.Regime("big", Window(3e6, 4e6)), have).name == "big"
    for want, message in ((regimes.Regime(None, Window(1.8e6, 3e6)), "overlaps regime 2M"),
                          (regimes.Regime("2M", Window(3e6, 4e6)), "sampled in 1.5M:2M"),
                          (regimes.Regime("x", Window(1.5e6, 2e6)), "is the window of")):
        with pytest.raises(DseError, match=message):
            regimes.resolve(want, have)
    # models sampled before regimes: a window holding them all continues them
    base = [regimes.Stored(regimes.UNLABELLED, None, 1.6e6, 1.9e6)]
    assert regimes.resolve(regimes.Regime(None, Window(1.5e6, 2e6)), base).name == "base"
    with pytest.raises(DseError, match="overlaps regime base"):
        regimes.resolve(regimes.Regime(None, Window(1.8e6, 4e6)), base)


# ---- the store -------------------------------------------------------------------------------

def test_sampling_three_windows_labels_three_regimes_and_appends(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for store in (a, b):
        for w in WINDOWS:
            sample(store, w)
    r = sample(a, "3M:4M", 4)
    assert "regime 3M:4M: 10 models" in r.output and "3 regimes" in r.output
    m = Store(a).read_models("regnetx")
    assert m["regime"].value_counts().to_dict() == {"1M:2M": 6, "3M:4M": 10, "6M:8M": 6}
    for w in WINDOWS:
        lo, hi = (float(x[:-1]) * 1e6 for x in w.split(":"))
        rows = m[m["regime"] == w]
        assert (rows["regime_lo"] == lo).all() and (rows["regime_hi"] == hi).all()
        assert rows["flops"].between(lo, hi).all()
    first = Store(b).read_models("regnetx")   # seeded: the same draws in the same order
    assert list(first["model_id"]) == list(m["model_id"][:18])
    assert list(first["regime"]) == list(m["regime"][:18])
    assert list(m["sample_index"]) == list(range(22))


def test_a_named_regime_and_bad_windows_are_one_line_and_keep_the_store(tmp_path):
    sample(tmp_path, "1M:2M", 6, "--regime", "small")
    before = (tmp_path / "regnetx" / "models.parquet").read_bytes()
    for window, more, message in (("1.5M:3M", (), "overlaps regime small"),
                                  ("3M:4M", ("--regime", "small"), "sampled in 1M:2M"),
                                  ("2M:2M", (), "empty"),
                                  ("3M:4M", ("--regime", "a b"), "not a word")):
        r = run("sample", "--space", "rx", "--n", 3, "--dataset", "synthetic", "--flops",
                window, "--store", tmp_path, *more)
        assert message in one_error(r)
    assert (tmp_path / "regnetx" / "models.parquet").read_bytes() == before
    sample(tmp_path, "1M:2M", 2)              # its window: the same regime, named small
    assert set(Store(tmp_path).read_models("regnetx")["regime"]) == {"small"}


def test_a_store_from_before_regimes_opens_unchanged_as_one_regime(tmp_path):
    sample(tmp_path, "1M:2M", 5)
    path = tmp_path / "regnetx" / "models.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop(["regime", "regime_lo", "regime_hi"]), path)
    before = path.read_bytes()
    df = Store(tmp_path).load(["rx"])
    assert set(df["regime"]) == {"base"} and len(df) == 5
    assert path.read_bytes() == before
    sample(tmp_path, "6M:8M", 3)              # a disjoint window: a second regime
    m = Store(tmp_path).read_models("regnetx")
    assert list(regimes.labels(m)) == ["base"] * 5 + ["6M:8M"] * 3
    r = run("sample", "--space", "rx", "--n", 3, "--dataset", "synthetic", "--flops",
            "1.5M:7M", "--store", tmp_path)
    assert "overlaps regime" in one_error(r)


# ---- experiments -----------------------------------------------------------------------------

def exp_file(tmp_path, **changes):
    cfg = dict(name="r", dataset="synthetic", n=4, spaces=["regnetx"],
               regimes={"from": "2M", "to": "8M", "count": 3, "width": 0.25}, seed=0,
               train=dict(epochs=1, train_subset=200, batch_size=50, device="cpu", jobs=1))
    cfg.update(changes)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))
    return p


def test_an_experiment_samples_n_per_regime_and_resumes(tmp_path):
    p, store = exp_file(tmp_path), tmp_path / "s"
    e = experiment.load(p)
    assert [r.name for r in e.regimes] == ["2M", "4M", "8M"]
    assert stages.plan(e, Store(store)).total["to_sample"] == 12
    ok("run", p, "--store", store, "--only", "sample")
    m = Store(store).read_models("regnetx")
    assert m["regime"].value_counts().to_dict() == {"2M": 4, "4M": 4, "8M": 4}
    ok("run", p, "--store", store, "--only", "sample", "--set", "n=5")  # tops each up by one
    again = Store(store).read_models("regnetx")
    assert again["regime"].value_counts().to_dict() == {"2M": 5, "4M": 5, "8M": 5}
    assert list(again["model_id"][:12]) == list(m["model_id"])
    plan = stages.plan(experiment.load(p, ["n=5"]), Store(store))
    assert plan.total["to_sample"] == 0 and plan.total["to_train"] == 15


@pytest.mark.parametrize("changes, message", [
    (dict(flops="1M:2M"), "regimes: give `flops:`"),
    (dict(regimes=["1M:2M", "1.5M:3M"]), "regimes: regime windows 1M:2M"),
    (dict(regimes=["1M:1M"]), "empty"),
    (dict(regimes=None, flops="2M:2M"), "flops: flops window 2M:2M is empty"),
    (dict(expect=["regnetx good d rises with flops"]), "cannot read the claim"),
    (dict(expect=["regnetx better than regnetx@no/such/store"]), "store no/such/store of"),
])
def test_bad_regimes_in_an_experiment_are_one_line(tmp_path, changes, message):
    assert message in one_error(run("run", exp_file(tmp_path, **changes), "--dry-run"))


# ---- trends across regimes -------------------------------------------------------------------

def population(rng, n=32, regimes_=4, error=None):
    """A RegNetX-like population over `regimes_` regimes (flops 2M·2^j) with d uniform in
    12..28 and g in 1..16; error(d, g, j) adds to noise of 1 point."""
    rows = []
    for j in range(regimes_):
        d, g = rng.integers(12, 29, n), 2 ** rng.integers(0, 5, n)
        e = 30 + rng.normal(0, 1, n) + (error(d, g, j) if error else 0)
        rows += [dict(space="regnetx", kind="regnet", ds=[1, 2, 3, int(d[i]) - 6],
                      ws=[8, 16, 32, 64], bs=[1] * 4, gs=[int(g[i])] * 4, d=int(d[i]),
                      group_w=int(g[i]), w0=8, wa=8.0, wm=2.5, b=1, status="done",
                      flops=2e6 * 2 ** j * (1 + 0.1 * rng.random()), error=e[i],
                      regime=f"{2 ** (j + 1)}M") for i in range(n)]
    return pd.DataFrame(rows)


def test_the_exact_good_range_is_what_the_bootstrap_estimates():
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, e = rng.integers(12, 29, 40).astype(float), rng.normal(30, 1, 40)
        exact = trends.good_range(x, e)
        drawn = stats.bootstrap_range(x, e, repeats=40_000, rng=1)
        assert exact["best"] == drawn["best"] and exact["median"] == drawn["median"]
        assert abs(exact["lo"] - drawn["lo"]) <= 1 and abs(exact["hi"] - drawn["hi"]) <= 1
    w = trends.best_weights(rng.normal(size=17))
    assert w.sum() == pytest.approx(1) and (w > 0).all()


def test_a_constant_best_depth_is_in_every_range_and_stable():
    """Best d = 20 in 4 regimes (error grows 0.25 per block away from it)."""
    rng = np.random.default_rng(0)
    for seed in range(10):
        pop = population(rng, error=lambda d, g, j: 0.25 * np.abs(d - 20))
        (row,) = trends.by_regime(pop, ["d"], repeats=500, seed=seed)
        assert all(r["lo"] <= 20 <= r["hi"] for r in row["regimes"])
        assert row["slope"]["lo"] <= 0 <= row["slope"]["hi"] and row["trend"] == "stable"


def test_a_rising_best_group_width_is_increasing():
    """The best g doubles with each doubling of flops (1, 2, 4, 8): called increasing in
    each of 10 populations."""
    rng = np.random.default_rng(1)
    for seed in range(10):
        pop = population(rng, error=lambda d, g, j: np.abs(np.log2(g) - j))
        (row,) = trends.by_regime(pop, ["g"], repeats=500, seed=seed)
        assert row["trend"] == "increasing" and row["slope"]["unit"].startswith("doublings")
        assert row["slope"]["lo"] > 0


def test_null_populations_are_called_increasing_at_about_alpha_or_less():
    """No parameter matters: over 60 populations × 2 parameters the 95% interval lies above
    0 in at most 2.5% of the cases in expectation (measured 0.5% over 200)."""
    rng = np.random.default_rng(2)
    calls = [r["trend"] for seed in range(60)
             for r in trends.by_regime(population(rng), ["d", "g"], repeats=300, seed=seed)]
    assert calls.count("increasing") <= 6 and calls.count("decreasing") <= 6  # ≤ 5% of 120


def test_trends_need_two_regimes_of_enough_models():
    rng = np.random.default_rng(0)
    with pytest.raises(DseError, match="one regime"):
        trends.by_regime(population(rng, regimes_=1))
    with pytest.raises(DseError, match="fewer than 8"):
        trends.by_regime(population(rng, n=5))


def test_the_top_models_complexity_exponents():
    """params = c·flops and acts = c·√flops exactly: exponents 1 and 0.5 with R² 1."""
    rng = np.random.default_rng(0)
    pop = population(rng)
    pop["params"] = 3 * pop["flops"]
    pop["acts"] = 7 * np.sqrt(pop["flops"])
    pop["images_per_second"] = 1e9 / pop["flops"]
    cx = trends.complexity(pop, top=5)
    assert cx["n"] == 20
    assert cx["params"]["exponent"] == pytest.approx(1) and cx["params"]["r2"] == pytest.approx(1)
    assert cx["acts"]["exponent"] == pytest.approx(0.5)
    assert cx["time"]["exponent"] == pytest.approx(1)


def test_trend_claims_are_judged_from_the_slope():
    rng = np.random.default_rng(4)
    pop = population(rng, error=lambda d, g, j: np.abs(np.log2(g) - j) + 0.25 * np.abs(d - 20))
    judged = {c: expect.judge(expect.parse_claim(c), {}, {"regnetx": pop}).verdict
              for c in ("regnetx good g increases with flops",
                        "regnetx good d stable across regimes within 2",
                        "regnetx good d stable across regimes",
                        "regnetx good g decreases with flops",
                        "regnetx good g stable across regimes")}
    # stability holds only within a stated tolerance; no detected trend alone is inconclusive
    assert list(judged.values()) == ["holds", "holds", "inconclusive", "contradicted",
                                     "contradicted"]
    few = expect.judge(expect.parse_claim("regnetx good d increases with flops"), {},
                       {"regnetx": population(rng, regimes_=1)})
    assert few.verdict == "untestable" and "one regime" in few.detail


# ---- the command line ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One store for the command-line tests below (they only add figures to it)."""
    return trained_store(tmp_path_factory.mktemp("trained")).root


def trained_store(tmp_path, n=16):
    """RegNetX in the three windows with errors: g = 1 costs 1.5 points, best d ≈ 20."""
    rng = np.random.default_rng(0)
    for w in WINDOWS:
        sample(tmp_path, w, n)
    store = Store(tmp_path)
    for _, r in store.read_models("regnetx").iterrows():
        e = 30 + rng.normal(0, 1) + 1.5 * (r["group_w"] == 1) + 0.2 * abs(r["d"] - 20)
        store.write_result("regnetx", dict(model_id=r["model_id"], space="regnetx",
                                           status="done", error=e, epochs=1,
                                           images_per_second=2e9 / r["flops"]))
    return store


def test_trends_by_regime_json_and_figure(trained):
    import json

    tmp_path = trained
    out = json.loads(ok("trends", "rx", "--by", "regime", "--param", "d", "--param", "g",
                        "--json", "--repeats", "300", "--store", tmp_path).output)
    d = out["params"]["d"]
    assert [r["name"] for r in d["regimes"]] == list(WINDOWS)
    assert set(d["regimes"][0]) >= {"name", "flops", "lo", "hi", "best"}
    assert set(d["slope"]) >= {"value", "lo", "hi"} and d["trend"] in ("stable", "increasing",
                                                                       "decreasing")
    assert out["complexity"]["time"]["exponent"] == pytest.approx(1)
    assert (tmp_path / "regnetx" / "analysis" / "trends_regimes.png").is_file()
    text = ok("trends", "rx", "--by", "regime", "--param", "g", "--repeats", "200", "--top",
              "2", "--out", tmp_path / "g.svg", "--store", tmp_path).output
    assert "1M:2M (" in text and "params ∝ flops^" in text and (tmp_path / "g.svg").is_file()
    r = run("trends", "rx", "--by", "regime", "--regime", "3M:4M", "--store", tmp_path)
    assert "--by regime reads every regime" in one_error(r)
    r = run("trends", "rx", "--by", "regime", "--where", "regime == '3M:4M'", "--store",
            tmp_path)
    assert "one regime (3M:4M)" in one_error(r)


def test_a_planted_group_width_penalty_is_found_by_split(trained):
    import json

    tmp_path = trained
    out = json.loads(ok("edf", "compare", "rx", "--split", "g == 1", "g > 1", "--json",
                        "--store", tmp_path).output)
    (pair,) = out["pairs"]
    assert (pair["a"], pair["b"]) == ("regnetx[g == 1]", "regnetx[g > 1]") and pair["p"] < 0.05
    assert out["spaces"]["regnetx[g == 1]"]["median"] > out["spaces"]["regnetx[g > 1]"]["median"]
    one = ok("edf", "compare", "rx", "--split", "g == 1", "--store", tmp_path).output
    assert "regnetx[not (g == 1)]" in one and "edf_regnetx-g-eq-1_" in one
    for args, message in (
            (("--split", "g >= 1", "g > 1"), "more than one"),
            (("--split", "g == 3"), "keeps none"),
            (("--split", "q == 1"), "unknown column 'q'; columns: flops"),
            (("--where", "g == 1 and", "--split", "d > 3"), "not an expression")):
        assert message in one_error(run("edf", "compare", "rx", *args, "--store", tmp_path))


def test_split_power_and_null_rate():
    """64 models (4 regimes × 16), about a fifth with g = 1: a 1.5-point (1.5 SD) penalty on
    g = 1 is found in ≥ 80% of populations (measured 98% over 200); without it the split
    rejects at about α (measured 5.0% over 200; here ≤ 10% of 60)."""
    from dse.analysis import select

    rng = np.random.default_rng(5)

    def p_value(penalty):
        df, labels = select.split(population(rng, n=16, error=lambda d, g, j: penalty * (g == 1)),
                                  "regnetx", ["g == 1", "g > 1"])
        return stats.ks(*(df[df["space"] == s]["error"] for s in labels))[1]

    assert np.mean([p_value(1.5) < 0.05 for _ in range(40)]) >= 0.8
    assert np.mean([p_value(0.0) < 0.05 for _ in range(60)]) <= 0.10


def test_every_analysis_takes_regime_and_where(trained):
    import json

    tmp_path = trained
    both = json.loads(ok("edf", "compare", "rx", "--json", "--store", tmp_path).output)
    assert "3 regimes (1M:2M, 3M:4M, 6M:8M) read together" in both["selection"]["notes"][0]
    one = json.loads(ok("edf", "compare", "rx", "--regime", "3M:4M", "--where", "d >= 14",
                        "--json", "--store", tmp_path).output)
    m = Store(tmp_path).load(["rx"])
    keep = (m["regime"] == "3M:4M") & (m["ds"].map(sum) >= 14)
    assert one["spaces"]["regnetx"]["n"] == int(keep.sum()) < 16
    two = json.loads(ok("suggest", "rx", "--where", "regime != '1M:2M'", "--json",
                        "--store", tmp_path).output)
    assert two["n"] == 32
    for cmd in (("edf", "compare", "rx"), ("search-efficiency", "rx"), ("trends", "rx"),
                ("fit-linear", "--space", "rx"), ("suggest", "rx"), ("report",)):
        assert "does not exist in regnetx; its regimes: 1M:2M, 3M:4M, 6M:8M" in one_error(
            run(*cmd, "--regime", "9M", "--store", tmp_path)) or cmd == ("report",)
        assert "unknown column 'depth'" in one_error(
            run(*cmd, "--where", "depth > 3", "--store", tmp_path))
    assert "no space of the store has a regime" in one_error(
        run("report", "--regime", "9M", "--store", tmp_path))
    assert "keeps none of the regnetx models; columns: flops, params" in one_error(
        run("trends", "rx", "--where", "flops > 1G", "--store", tmp_path))
    assert "quote text values" in one_error(
        run("edf", "compare", "rx", "--where", "regime == 2M", "--store", tmp_path))


def test_spaces_across_stores_and_transfer(trained, tmp_path):
    import json

    a, b = trained, tmp_path / "b"
    for w in WINDOWS:   # the same architectures, trained elsewhere
        sample(b, w, 10)
    rng = np.random.default_rng(1)
    sb = Store(b)
    for _, r in sb.read_models("regnetx").iterrows():  # worse by 3 points, same g rule
        sb.write_result("regnetx", dict(model_id=r["model_id"], space="regnetx", status="done",
                                        error=33 + rng.normal(0, 1) + 1.5 * (r["group_w"] == 1),
                                        epochs=1))
    out = json.loads(ok("edf", "compare", f"rx@{a}", f"rx@{b}", "--json",
                        "--store", a).output)
    (pair,) = out["pairs"]
    assert pair["a"] == f"regnetx@{a}" and pair["p"] < 1e-4
    assert f"store {tmp_path / 'nowhere'} does not exist" in one_error(
        run("edf", "compare", "rx", f"rx@{tmp_path / 'nowhere'}", "--store", a))
    exp = tmp_path / "x.yaml"
    exp.write_text(yaml.safe_dump(dict(name="x", dataset="synthetic", n=16, spaces=["regnetx"],
                                       analyze=dict(report=False),
                                       expect=["regnetx better than regnetx@b",
                                               "regnetx good g above 1"])))
    res = json.loads(ok("run", exp, "--only", "analyze", "--store", a, "--json").output)
    assert [c["verdict"] for c in res["claims"]][0] == "holds"
    t = json.loads(ok("transfer", a, b, "--experiment", exp, "--repeats", "500",
                      "--json").output)
    (row,) = t["spaces"]
    assert row["space"] == "regnetx" and row["b"]["median"] > row["a"]["median"] + 1
    assert row["ranges"]["g"]["agree"] and t["rank_correlation"]["rho"] is None
    assert [c["claim"] for c in t["claims"]] == ["regnetx better than regnetx@b",
                                                 "regnetx good g above 1"]
    assert "hold no space in common" in one_error(run("transfer", a / "regnetx", b))


def test_the_python_example_of_the_docs_runs(trained, tmp_path, monkeypatch):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "analysis.md").read_text()
    code = next(b.split("```", 1)[0] for b in text.split("```python\n")[1:]
                if "scaling.by_regime" in b)
    (tmp_path / "runs").symlink_to(trained)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "docs/analysis.md", "exec"), scope)
    assert [r["param"] for r in scope["rows"]] == ["d", "g"]
    assert set(scope["mid"]["regime"]) == {"3M:4M"} and (scope["mid"]["group_w"] > 1).all()


def test_the_committed_regimes_run_gives_the_numbers_of_its_doc(tmp_path):
    """docs/reproduction.md ("Flop regimes") reads experiments/results/regimes-cpu: its
    analysis, rerun on a copy, gives the doc's verdicts, good ranges, sampled medians, slopes,
    excesses over the sampling and exponents."""
    out = reanalyzed(tmp_path, "regimes-cpu", "--set", "analyze.report=false")
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    for c in out["claims"]:
        assert f"| {c['claim']} | **{c['verdict']}** |" in doc, c
    tr = out["regime_trends"]["regnetx"]
    for p, v in tr["params"].items():
        cells = " | ".join(f"{r['median']:.4g} [{r['lo']:.4g}, {r['hi']:.4g}]"
                           for r in v["regimes"])
        sampled = ", ".join(f"{r['sampled']:.4g}" for r in v["regimes"])
        s, x = v["slope"], v["excess"]
        row = (f"| {p} | {cells} | {sampled} | {s['value']:.2g} [{s['lo']:.2g}, {s['hi']:.2g}]"
               f" | {x['value']:.2g} [{x['lo']:.2g}, {x['hi']:.2g}] | {v['trend']} |")
        assert row in doc, row
    for k in ("params", "acts"):
        fit = tr["complexity"][k]
        assert f"flops^{fit['exponent']:.2f}\n(R² {fit['r2']:.2f})" in doc or \
            f"flops^{fit['exponent']:.2f} (R² {fit['r2']:.2f})" in doc, k
    df = Store(tmp_path / "regimes-cpu").load(["rx"])
    for name, g in df.groupby("regime", sort=False):
        row = (f"| {name} | {len(g)} | {g['flops'].min() / 1e6:.2f}–{g['flops'].max() / 1e6:.2f}"
               f" | {g['error'].min():.2f} | {g['error'].median():.2f} | {g['error'].mean():.2f} |")
        assert row in doc, row
