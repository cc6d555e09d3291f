"""`dse suggest` on populations whose errors come from a known rule (it must find the rule and
rank it first) and on pure noise (it must propose nothing); the JSON and the space file it
writes, which `dse sample` loads."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import ok, one_error, run

from dse.method import suggest
from dse.space import definition as spaces
from dse.space import sampling
from dse.space.spec import Task
from dse.store.core import Store
from dse.train.recipe import Recipe

TASK = Task(32, "cifar", 3, 10)
WINDOW = sampling.Window(1e6, 50e6)


def population(space_name, n, rule, seed=0, noise=1.0):
    space = spaces.load(space_name)
    pop = pd.DataFrame(sampling.sample(space, n, TASK, WINDOW, seed=seed))
    pop["space"], pop["kind"] = space.name, space.kind
    rng = np.random.default_rng(seed + 100)
    pop["error"] = 20 + rule(pop) + noise * rng.normal(size=n)
    return space, pop


def stage_share(col, test):
    return lambda df: 3.0 * df[col].map(lambda v: np.mean([not test(x) for x in v]))


RULES = [  # (space, rule making errors, the constraint that must come first)
    ("anynetxa", stage_share("bs", lambda b: b == 1), {"params": {"b": 1}}),
    ("anynetxc", lambda df: 3.0 * df["ws"].map(lambda w: np.mean(np.diff(w) < 0)),
     {"non_decreasing": ["w"]}),
    ("anynetxd", lambda df: 3.0 * df["ds"].map(lambda d: np.mean(np.diff(d) < 0)),
     {"non_decreasing": ["d"]}),
    ("anynetxa", lambda df: 2.0 * df["gs"].map(lambda g: len(set(g)) - 1),
     {"shared": ["g"]}),
    ("regnetx", lambda df: 3.0 * (df["group_w"] != 8), {"params": {"g": 8}}),
]


@pytest.mark.parametrize("space_name, rule, want", RULES)
def test_a_known_rule_is_found_and_ranked_first(space_name, rule, want):
    space, pop = population(space_name, 240, rule)
    out = suggest.suggest(space, pop)
    first = out.candidates[0]
    assert first.constraint == want, [c.summary for c in out.candidates[:3]]
    assert first.significant and first.p_adjusted < 0.01
    assert first.better == "obeying" and first.top_score > first.all_score
    assert first.log10_size_after < first.log10_size_before


def test_a_regnet_range_rule_is_narrowed_around_the_optimum():
    space, pop = population("regnetx", 240, lambda df: 0.4 * (df["d"] - 18).abs())
    first = suggest.suggest(space, pop).candidates[0]
    d = first.constraint["params"]["d"]
    assert first.significant and d["low"] <= 18 <= d["high"]
    assert d["high"] - d["low"] < 16 - 0  # narrower than 12..28
    assert first.range_chosen_on + first.tested_on == 240  # chosen on one half only


@pytest.mark.parametrize("space_name, seed", [("anynetxa", 1), ("anynetxc", 2),
                                              ("regnetx", 3), ("anynetxe", 4)])
def test_pure_noise_supports_nothing(space_name, seed):
    space, pop = population(space_name, 200, lambda df: 0.0 * df["flops"], seed=seed)
    out = suggest.suggest(space, pop, seed=seed)
    assert out.candidates and not any(c.significant for c in out.candidates)
    # Holm's adjustment: never below the raw p, monotone in it
    ps = sorted((c.p, c.p_adjusted) for c in out.candidates)
    assert all(pa >= p for p, pa in ps)
    assert [pa for _, pa in ps] == sorted(pa for _, pa in ps)


def test_fixing_g_scores_stages_capped_at_their_bottleneck_width_as_obeying():
    """A stage of bottleneck width 8 builds g = 8 from any drawn g ≥ 8: "fix g = 16" keeps
    it, so it obeys; a stage with g = 4 below its width 8 does not."""
    space = spaces.load("anynetxa")
    n = 16
    pop = pd.DataFrame(dict(ds=[[1, 1, 2, 2]] * n, ws=[[8, 64, 128, 256]] * n,
                            bs=[[1, 1, 1, 1]] * n, error=np.arange(n, dtype=float),
                            gs=[[8, 16, 16, 16]] * (n // 2) + [[4, 16, 16, 16]] * (n // 2)))
    cands = suggest._candidates(space, pop, np.ones(n, bool), 0.25, np.random.default_rng(0))
    score = next(c[2] for c in cands if c[1] == {"params": {"g": 16}})
    assert score.tolist() == [1.0] * (n // 2) + [0.75] * (n // 2)
    score = next(c[2] for c in cands if c[1] == {"params": {"g": 4}})
    assert score.tolist() == [0.0] * (n // 2) + [0.25] * (n // 2)


def test_a_second_look_at_a_grown_sample_tests_only_the_fresh_models(tmp_path):
    """The refine loop looked at 100 models and found nothing; n was raised to 120: the
    next look sees only the 20 models sampled since (a fresh confirmation sample), and a
    growth of fewer than 12 models makes no new look."""
    from dse.method import refine

    store = stored(tmp_path, "anynetxa", stage_share("bs", lambda b: b == 1), n=120)
    space = spaces.load("anynetxa")
    pop, looks, said = refine._look(store, space, ())
    assert len(pop) == 120 and looks == (120,) and said == "first look: all 120 models"
    pop, looks, said = refine._look(store, space, (100,))
    assert len(pop) == 20 and (pop["sample_index"] >= 100).all() and looks == (100, 120)
    assert "the 20 models sampled since the look at 100 (a fresh confirmation" in said
    pop, looks, said = refine._look(store, space, (110,))
    assert pop is None and looks == (110,) and "needs at least 12 fresh" in said


def test_the_refine_loop_reads_the_results_the_analysis_reads(tmp_path):
    """With --recipe, the refine loop's looks read that recipe's results, as the analysis
    does, not the recipe with the most results."""
    from dse.method import refine
    from dse.store.recipes import Pick

    store = stored(tmp_path, "anynetxa", stage_share("bs", lambda b: b == 1), n=120)
    space = spaces.load("anynetxa")
    longer = {k: v for k, v in Recipe(epochs=2).asdict().items() if k != "seed"}
    for m in store.read_models("anynetxa")["model_id"][:20]:
        store.write_result("anynetxa", dict(model_id=m, space="anynetxa", status="done",
                                            error=50.0, **longer))
    assert len(refine._look(store, space, ())[0]) == 120  # the recipe with the most results
    pop = refine._look(store, space, (), Pick({"epochs": "2"}))[0]
    assert len(pop) == 20 and (pop["error"] == 50.0).all()


def test_an_exact_p_matches_the_hypergeometric_tail():
    # 40 models, 10 obey a whole-model rule, all of them among the best 10 (frac 0.25)
    e = np.arange(40.0)
    score = (e < 10).astype(float)
    r = suggest._evidence(score, e, 0.25, np.random.default_rng(0), {})
    from math import comb
    assert r["p"] == pytest.approx(1 / comb(40, 10))
    assert r["top_share"] == 1 and r["all_share"] == 0.25 and r["better"] == "obeying"


def stored(tmp_path, space_name, rule, n=120, recipe=None):
    """A store of n models whose errors follow `rule`, trained (as it were) with `recipe`
    (a Recipe; default: epochs=1)."""
    space, pop = population(space_name, n, rule)
    store = Store(tmp_path / "s")
    rows = pop.drop(columns=["space", "kind", "error"]).to_dict(orient="records")
    store.add_models(space, "synthetic", TASK, rows, 0)
    settings = {k: v for k, v in (recipe or Recipe(epochs=1)).asdict().items() if k != "seed"}
    for m, err in zip(pop["model_id"], pop["error"]):
        store.write_result(space.name, dict(model_id=m, space=space.name, status="done",
                                            error=float(err), **settings))
    return store


def test_cli_json_and_write_a_space_that_sample_loads(tmp_path):
    store = stored(tmp_path, "anynetxa", stage_share("bs", lambda b: b == 1))
    out = json.loads(ok("suggest", "xa", "--store", store, "--json").output)
    assert out["space"] == "anynetxa" and out["n"] == 120
    keys = {"constraint", "significant", "p", "p_adjusted", "top_share", "all_share", "ks_D",
            "log10_size_before", "log10_size_after", "summary"}
    assert all(keys <= set(c) for c in out["candidates"])
    assert out["candidates"][0]["constraint"] == {"params": {"b": 1}}
    path = tmp_path / "xa_b1.yaml"
    r = ok("suggest", "anynetxa", "--store", store, "--write", path)
    assert "wrote" in r.output and "1. *" in r.output
    cfg = yaml.safe_load(path.read_text())
    assert cfg["extends"] == "anynetxa" and cfg["params"] == {"b": 1}
    assert spaces.load(str(path)).params["b"].size == 1
    ok("sample", "--space", path, "--n", "3", "--dataset", "synthetic", "--flops", "1M:50M",
       "--store", tmp_path / "s2")


def test_cli_on_noise_writes_nothing_and_says_so(tmp_path):
    store = stored(tmp_path, "regnetx", lambda df: 0.0 * df["flops"])
    path = tmp_path / "next.yaml"
    r = ok("suggest", "rx", "--store", store, "--write", path)
    assert "nothing is supported" in r.output and "no file written" in r.output
    assert not path.exists()


def test_cli_errors(tmp_path):
    store = stored(tmp_path, "regnetx", lambda df: 0.0 * df["flops"], n=12)
    assert "unknown space 'xq'" in one_error(run("suggest", "xq", "--store", store))
    assert "does not exist" in one_error(run("suggest", "rx", "--store", tmp_path / "none"))
    assert "--frac" in one_error(run("suggest", "rx", "--store", store, "--frac", "2"))
    (store.root / "regnetx" / "results").rename(store.root / "regnetx" / "r")
    assert "12 sampled models but no results yet" in one_error(
        run("suggest", "rx", "--store", store))


def test_refine_suggests_writes_trains_and_refuses_a_worse_space(tmp_path):
    """One round of the loop on a store whose AnyNetX_A errors follow "b = 1 is better":
    the refinement b = 1 is written, sampled and trained for real (synthetic data, short),
    and refused: one epoch on 200 images leaves its models at chance, so the comparison
    with the generated errors is untestable (dse.analysis.health), not a verdict."""
    train = dict(epochs=1, train_subset=200, batch_size=50)
    # the stored models count as trained with the experiment's recipe: it trains only its own
    store = stored(tmp_path, "anynetxa", stage_share("bs", lambda b: b == 1), n=150,
                   recipe=Recipe(**train))
    exp = tmp_path / "refine.yaml"
    exp.write_text(yaml.safe_dump(dict(
        name="loop", dataset="synthetic", n=6, refine=dict(start="xa", rounds=1),
        flops="0.5M:1.5M", seed=0,
        train=dict(train, device="cpu", jobs=1))))
    r = ok("run", exp, "--store", store.root)
    assert "refine round 1: anynetxa → anynetxa-r1: fix b = 1" in r.output, r.output
    d = store.experiment_dir("loop") / "refine"
    cfg = yaml.safe_load((d / "anynetxa-r1.yaml").read_text())
    assert cfg["extends"] == "anynetxa" and cfg["params"] == {"b": 1}
    new = store.load(["anynetxa-r1"])
    assert len(new) == 6 and (new["status"] == "done").all()
    assert all(set(b) == {1} for b in new["bs"])
    chain = json.loads((d / "chain.json").read_text())
    assert [c["space"] for c in chain] == ["anynetxa", "anynetxa-r1"]
    assert chain[1]["verdict"] == "refused: untestable" and chain[1]["p"] is None
    assert "did not learn" in r.output
    # 150 stored models plus the 6 the experiment samples in its own flops regime
    assert chain[1]["looks"] == [156]
    assert chain[1]["tested_on"] == "first look: all 156 models"
    summary = json.loads((store.experiment_dir("loop") / "summary.json").read_text())
    assert [s["space"] for s in summary["spaces"]] == ["anynetxa", "anynetxa-r1"]
    # rerun: the loop reuses its file and trains nothing again
    again = ok("run", exp, "--store", store.root)
    assert "done error" not in again.output


@pytest.mark.parametrize("n, k, seed", [(40, 10, 0), (301, 75, 1), (1000, 1, 2), (12, 12, 3)])
def test_random_top_sets_are_those_a_full_ranking_gives(n, k, seed):
    fast = suggest.random_sets(np.random.default_rng(seed), n, k, count=600, rows=97)
    full = np.argsort(np.random.default_rng(seed).random((600, n)), axis=1)[:, :k]
    assert fast.shape == (600, k)
    assert (np.sort(fast, axis=1) == np.sort(full, axis=1)).all()


def test_the_permutation_p_is_the_one_a_full_ranking_gives():
    # graded scores (not 0/1): the permutation test; the p of ranking every random ordering
    # (np.argsort, the straightforward way) for the same seeds
    rng = np.random.default_rng(7)
    for seed in range(5):
        n = int(rng.integers(30, 400))
        e = rng.normal(size=n)
        score = np.clip(rng.random(n) + 0.3 * (e < np.quantile(e, 0.3)) * seed / 4, 0, 1) \
            .round(2)
        k = max(1, int(round(0.25 * n)))
        t = score[np.argsort(e, kind="stable")[:k]].mean()
        sets = np.argsort(np.random.default_rng(seed).random((suggest.PERMUTATIONS, n)),
                          axis=1)[:, :k]
        want = (1 + (score[sets].mean(1) >= t - 1e-12).sum()) / (suggest.PERMUTATIONS + 1)
        got = suggest._evidence(score, e, 0.25, np.random.default_rng(seed), {})["p"]
        assert got == want
