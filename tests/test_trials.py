"""Trials: results keyed by (model, recipe fingerprint, training seed). The fingerprint, a
real run that promotes, reruns seeds and reruns nothing twice, the analyses that read one
recipe, bad input, experiment files with promote: stages and drawn lr/wd, a planted lr·wd
optimum, a kill -9 mid --seeds, and a store written by dse 0.2.0 (before trials)."""

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import killed_midway, ok, one_error, run

from dse.analysis import stats
from dse.method import experiment
from dse.store import recipes
from dse.store.core import Store
from dse.store.schema import RESULTS_SCHEMA
from dse.train.recipe import Recipe, draw

ROOT = Path(__file__).resolve().parents[1]
OLD_STORE = ROOT / "tests" / "fixtures" / "store-0.2.0"  # see its README.md
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
SHORT = ["--epochs", "1", "--train-subset", "300"]
LONGER = ["--epochs", "2", "--train-subset", "300"]
ONE, TWO = Recipe(epochs=1, train_subset=300), Recipe(epochs=2, train_subset=300)


def settings(recipe: Recipe) -> dict:
    """A recipe's settings as a result row records them (its seed aside)."""
    return {k: v for k, v in recipe.asdict().items() if k != "seed"}


def fp(recipe: Recipe) -> str:
    return recipes.fingerprint(recipe.asdict())


def result_bytes(root) -> dict:
    return {p: p.read_bytes() for p in Path(root).rglob("results/**/*.parquet")}


# ---- the fingerprint -------------------------------------------------------------------------

def test_a_fingerprint_is_stable_and_leaves_the_seed_out():
    assert fp(ONE) == "0876654477"  # in every result file's name: it must never change
    assert fp(Recipe()) == "af68dabe76"
    assert fp(Recipe(epochs=1, train_subset=300, seed=7)) == fp(ONE)
    assert recipes.fingerprint(dict(settings(ONE), lr=0.05 + 1e-15)) == fp(ONE)  # 12 digits
    assert len({fp(ONE), fp(TWO), fp(Recipe(epochs=1)), fp(Recipe(epochs=1, lr=0.1,
                                                                  train_subset=300))}) == 4


def old_file(path, row, schema):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}],
                                        schema=schema), path)


def test_a_result_written_before_trials_reads_as_the_trial_of_its_recipe(tmp_path):
    s = Store(tmp_path)
    row = dict(space="s", status="done", dataset="synthetic", seed=0, finished_at=T0,
               **settings(ONE))
    before = pa.schema([f for f in RESULTS_SCHEMA  # the columns of dse 0.2.0
                        if f.name not in ("recipe", "history_error", "history_loss")])
    old_file(s.result_path("s", "m0"), dict(row, model_id="m0", error=12.5), before)
    # the first stores: no momentum .. augment columns, which stood for the defaults
    first = pa.schema([f for f in before if f.name not in (
        "momentum", "nesterov", "warmup_epochs", "zero_init_final_gamma", "augment")])
    old_file(s.result_path("s", "m1"), dict(row, model_id="m1", error=13.5), first)
    s.write_result("s", dict(row, model_id="m2", error=14.5))  # as dse writes one now
    res = s.read_results("s").set_index("model_id")
    assert res["recipe"].tolist() == [fp(ONE)] * 3 and res["seed"].tolist() == [0] * 3
    assert res["error"].tolist() == [12.5, 13.5, 14.5]
    assert s.trial_statuses("s") == {recipes.trial_id(m, fp(ONE), 0): "done"
                                     for m in ("m0", "m1", "m2")}
    assert s.result_status("s", "m0") == "done"  # by model id, any trial
    assert s.result_status("s", recipes.trial_id("m0", fp(ONE), 0)) == "done"
    assert s.result_status("s", recipes.trial_id("m0", fp(TWO), 0)) is None
    assert pq.read_schema(s.result_path("s", "m0")).names == before.names  # never rewritten
    assert recipes.parse_trial(s.write_result("s", dict(row, model_id="m3")).stem) == \
        ("m3", fp(ONE), 0)


# ---- a real run: promote, seeds, nothing twice -----------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """6 RegNetX (synthetic data: its 2,000 test images keep each evaluation short) trained
    with SHORT; the top 2 and 1 random one promoted to 2 epochs with curves; a second seed of
    every model; the same command again. Returns the store and each step's output and
    results."""
    root = tmp_path_factory.mktemp("trials") / "store"
    steps = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        ok("sample", "--space", "rx", "--n", 6, "--dataset", "synthetic", "--flops",
           "0.5M:2M", "--store", root)
        for args in (SHORT, ["--top", 2, "--sample", 1, *LONGER, "--curves"],
                     ["--seeds", 2, *SHORT], ["--seeds", 2, *SHORT]):
            out = ok("train", "--store", root, *args).stdout
            steps.append((out, Store(root).read_results("regnetx")))
    return root, steps


def test_promote_seeds_and_a_rerun_train_each_trial_once(trained):
    root, steps = trained
    (_, first), (_, promoted), (_, seeded), (again, final) = steps
    assert [len(r) for _, r in steps] == [6, 9, 15, 15]
    assert "nothing to train" in again and final.equals(seeded)
    assert set(first["recipe"]) == {fp(ONE)} and set(first["seed"]) == {0}
    new = promoted[promoted["recipe"] == fp(TWO)]
    top2 = first.sort_values(["error", "model_id"])["model_id"].head(2)
    assert len(new) == 3 and set(top2) <= set(new["model_id"])
    assert new["history_error"].map(len).tolist() == [2, 2, 2]  # --curves
    assert new["epochs_run"].tolist() == [2, 2, 2]
    assert first["history_error"].isna().all()  # without --curves
    key = ["model_id", "recipe", "seed"]
    had = set(map(tuple, promoted[key].to_numpy()))
    added = seeded[[k not in had for k in map(tuple, seeded[key].to_numpy())]]
    assert len(added) == 6 and set(added["seed"]) == {1} and set(added["recipe"]) == {fp(ONE)}
    assert not seeded.duplicated(["model_id", "recipe", "seed"]).any()
    for row in seeded.to_dict(orient="records"):  # a result row names its recipe
        assert recipes.fingerprint(row) == row["recipe"]
    names = {p.stem for p in (root / "regnetx" / "results").glob("*.parquet")}
    assert all(recipes.parse_trial(n)[1] in (fp(ONE), fp(TWO)) for n in names)


def test_the_analyses_read_one_recipe_and_say_which(trained):
    root, _ = trained
    out = ok("status", "--store", root).stdout
    assert "regnetx: 2 recipes" in out and fp(ONE) in out and fp(TWO) in out
    out = ok("edf", "compare", "regnetx", "--store", root).stdout
    assert f"(recipe epochs=1 batch_size=128 lr=0.05 wd=5e-05 train_subset=300 [{fp(ONE)}], " \
           "the one with the most results; error = mean of 2 seeds per model)" in out
    assert "(seed noise σ = " in out and re.search(r"^regnetx\s+6\s", out, re.M)
    out = ok("edf", "compare", "regnetx", "--recipe", "epochs=2", "--store", root).stdout
    assert f"[{fp(TWO)}], named by --recipe)" in out
    assert re.search(r"^regnetx\s+3\s.*\s3$", out, re.M)  # 3 read, 3 untrained under it
    nz = json.loads(ok("noise", "regnetx", "--store", root, "--json").stdout)
    assert {"sigma_seed", "icc", "icc_lo", "icc_hi"} <= set(nz)
    assert nz["models"] == 6 and nz["runs"] == 12 and nz["sigma_seed"] > 0
    cv = json.loads(ok("curves", "regnetx", "--store", root, "--json").stdout)
    assert cv["recipe"].startswith("epochs=2 ") and len(cv["results"]) == 3
    assert all(r["epochs"] == 2 and r["best_epoch"] in (1, 2) for r in cv["results"])
    msg = one_error(run("fidelity", "regnetx", "--from", "epochs=1", "--to", "epochs=2",
                        "--store", root))
    assert "at least 5 models trained under both recipes; found 3" in msg


@pytest.mark.parametrize("args, says", [
    (["train", "--top", 0], "'--top': 0 is not in the range"),
    (["train", "--seeds", 1000], "'--seeds': 1000 is not in the range 1<=x<=100"),
    (["edf", "compare", "regnetx", "--recipe", "epochs=abc"], "epochs must be an integer"),
    (["edf", "compare", "regnetx", "--recipe", "epochs=5"],
     "--recipe epochs=5: no results in regnetx were trained with it; the recipes held: "
     "epochs=1 batch_size=128 lr=0.05 wd=5e-05 train_subset=300 (12 results); epochs=2 "
     "batch_size=128 lr=0.05 wd=5e-05 train_subset=300 (3 results)"),
    (["edf", "compare", "regnetx", "--recipe", "foo=1"], "write KEY=VALUE,... with keys epochs"),
    (["fidelity", "regnetx", "--from", "epochs=1", "--to", "epochs=9"],
     "--to epochs=9: no results in regnetx were trained with it"),
])
def test_bad_input_is_one_line_and_changes_nothing(trained, args, says):
    root, _ = trained
    before = result_bytes(root)
    assert says in one_error(run(*args, "--store", root))
    assert result_bytes(root) == before


# ---- experiment files, draws, a planted lr·wd optimum -----------------------------------------

BASE = dict(name="t", dataset="synthetic", n=4, spaces=["regnetx"],
            train=dict(epochs=2, train_subset=300))


def test_promote_stages_drawn_recipes_and_trial_claims_parse():
    e = experiment.check(dict(BASE, promote=[dict(top=2, sample=1, seeds=2, epochs=8)],
                              expect=["regnetx ranks alike at epochs=2 and epochs=8",
                                      "regnetx[g == 8] better than regnetx[g == 1]"]), "t.yaml")
    (p,) = e.promotes
    assert (p.top, p.sample, p.seeds, p.curves) == (2, 1, 2, False)
    assert p.recipe == Recipe(epochs=8, train_subset=300)  # train:, then the stage's keys
    ranks, sub = e.claims
    assert (ranks.kind, str(ranks.a), ranks.recipes) == (
        "ranks", "regnetx", ({"epochs": 2}, {"epochs": 8}))
    assert (sub.kind, str(sub.a), str(sub.b)) == ("better", "regnetx[g == 8]", "regnetx[g == 1]")
    lr = {"dist": "log_uniform", "low": 0.01, "high": 1}
    e = experiment.check(dict(BASE, train=dict(epochs=1, lr=lr)), "t.yaml")
    assert e.options.draws == {"lr": lr} and e.recipe.epochs == 1
    for bad, key in ((dict(promote=[dict(top=2, bogus=1)]), "promote[1].bogus"),
                     (dict(promote=[dict(top=2), dict(top=0)]), "promote[2].top"),
                     (dict(train=dict(lr={"dist": "normal"})), "train.lr")):
        with pytest.raises(experiment.ExperimentError) as info:
            experiment.check(dict(BASE, **bad), "t.yaml")
        assert str(info.value).startswith(f"t.yaml: {key}: "), str(info.value)


def test_a_draw_is_the_models_own_and_within_its_bounds():
    cfg = {"lr": {"dist": "log_uniform", "low": 0.01, "high": 1},
           "wd": {"dist": "log_uniform", "low": 1e-5, "high": 1e-3}}
    got = [draw(Recipe(), cfg, f"{i:016x}") for i in range(200)]
    assert got[0] == draw(Recipe(), cfg, f"{0:016x}")  # the same model draws the same
    lr, wd = np.array([r.lr for r in got]), np.array([r.wd for r in got])
    assert ((0.01 <= lr) & (lr <= 1)).all() and ((1e-5 <= wd) & (wd <= 1e-3)).all()
    assert len(set(lr[:20])) == 20 and len(set(wd[:20])) == 20  # (4 significant digits)
    assert abs(np.median(np.log10(lr)) + 1) < 0.25  # log-uniform: half below 0.1
    assert {(r.epochs, r.batch_size, r.seed) for r in got} == {(10, 128, 0)}


def test_a_planted_lr_wd_optimum_is_found_in_lr_times_wd():
    """Error depends on lr·wd only (NDS): its good range holds the optimum and is narrower
    than lr's, since any lr pairs with some wd. The optimum sits at the centre of lr·wd's
    range (1e-5); at a corner (5e-4 with these ranges) the best models need both lr and wd
    near their tops and lr's own range narrows as much."""
    rng = np.random.default_rng(0)
    n, best = 200, 1e-5
    lr, wd = 10 ** rng.uniform(-2, 0, n), 10 ** rng.uniform(-5, -3, n)
    pop = pd.DataFrame(dict(kind="regnet", space="regnetx", ds=[[1, 2, 4, 7]] * n, lr=lr,
                            wd=wd, error=30 + 4 * (np.log10(lr * wd) - np.log10(best)) ** 2
                            + rng.normal(0, 0.5, n)))
    out = {t["param"]: t for t in stats.trends(pop, ["lr", "wd", "lrwd"], repeats=2000)}
    width = {k: np.log10(out[k]["hi"] / out[k]["lo"]) for k in out}
    assert out["lrwd"]["lo"] <= best <= out["lrwd"]["hi"]
    assert width["lrwd"] < width["lr"] / 2 and width["lrwd"] < width["wd"] / 2


# ---- kill -9 while training seeds ----------------------------------------------------------------

@pytest.mark.slow  # the kill -9 property: tests/test_train_runner.py in the default tier
def test_kill_9_mid_seeds_then_a_rerun_trains_each_trial_once(tmp_path):
    ok("sample", "--space", "rx", "--n", 2, "--dataset", "synthetic", "--flops", "0.5M:2M",
       "--store", tmp_path)
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "train", "--store",
           str(tmp_path), "--epochs", "2", "--train-subset", "1000", "--seeds", "2"]
    results = Store(tmp_path).results_dir("regnetx")
    first = killed_midway(  # once a trial is stored, inside the next
        cmd, ENV, lambda: results.is_dir() and bool(list(results.glob("*.parquet"))),
        timeout=120, pause=0.5)
    before = {f.stem: f.read_bytes() for f in results.glob("*.parquet")}
    assert 1 <= len(before) < 4
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln.split()[2] for out in (first, r.stdout) for ln in out.splitlines()
             if ln.startswith("[")]
    res = Store(tmp_path).read_results("regnetx")
    assert len(lines) == len(res) == 4 and set(Counter(lines).values()) == {2}
    assert sorted(res["seed"]) == [0, 0, 1, 1] and set(res["recipe"]) == {
        fp(Recipe(epochs=2, train_subset=1000))}
    for trial, data in before.items():  # finished before the kill: kept, not trained again
        old = pq.read_table(pa.BufferReader(data)).to_pandas().iloc[0]
        m, recipe, seed = recipes.parse_trial(trial)
        (new,) = res[(res["model_id"] == m) & (res["seed"] == seed)].itertuples()
        assert new.finished_at == old["finished_at"] and new.error == old["error"]
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))


# ---- a store written by dse 0.2.0 ----------------------------------------------------------------

@pytest.fixture
def old_store(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)
    return root


def everything(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in Path(root).rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_a_store_of_0_2_0_reads_unchanged_and_its_recipe_trains_nothing(old_store):
    root = old_store
    files = everything(root)
    results = root / "regnetx" / "results"
    assert len(list(results.glob("*.parquet"))) == 1 and len(list(results.rglob("*"))) == 3
    direct = pd.concat([pq.read_table(p).to_pandas() for p in results.rglob("*.parquet")])
    assert set(direct["dse_version"]) == {"0.2.0"} and "recipe" not in direct
    df = Store(root).load()
    assert dict(zip(df["model_id"], df["error"])) == dict(zip(direct["model_id"],
                                                              direct["error"]))
    assert len(df) == 5 and set(df["n_seeds"]) == {1} and set(df["train_seed"]) == {0}
    recipe = Recipe(epochs=1, train_subset=200, lr=float(direct["lr"].iloc[0]),
                    wd=float(direct["wd"].iloc[0]))
    assert set(df["recipe"]) == {fp(recipe)}
    out = ok("status", "--store", root).stdout
    # its 5 models (1 epoch on 200 images) stayed at chance: they did not learn
    assert re.search(r"^regnetx\s+fashion-mnist\s+5\s+5\s+0\s+0\s+0\s+0\s+5$", out, re.M)
    same = ["--epochs", 1, "--train-subset", 200, "--lr", recipe.lr, "--wd", recipe.wd]
    assert "nothing to train" in ok("train", "--store", root, *same, "--dry-run").stdout
    assert everything(root) == files  # read, never written
    assert "nothing to train" in ok("train", "--store", root, *same).stdout
    now = everything(root)
    assert {k: v for k, v in now.items() if "results" not in k.parts} == \
        {k: v for k, v in files.items() if "results" not in k.parts}
    pd.testing.assert_frame_equal(  # the results themselves unchanged (perhaps compacted)
        Store(root).read_results("regnetx").sort_values("model_id").reset_index(drop=True)
        [direct.columns],
        direct.sort_values("model_id").reset_index(drop=True), check_dtype=False)


def test_a_new_recipe_on_a_store_of_0_2_0_adds_its_result_beside_the_old(old_store):
    root = old_store
    old = Store(root).read_results("regnetx")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        ok("train", "--store", root, "--epochs", 2, "--train-subset", 200, "--max-models", 1)
    res = Store(root).read_results("regnetx")
    assert len(res) == 6
    new = res[res["recipe"] == fp(Recipe(epochs=2, train_subset=200))]
    (m,) = new["model_id"]
    assert new["status"].iloc[0] == "done" and new["dse_version"].iloc[0] != ""
    kept = res[res["recipe"] != fp(Recipe(epochs=2, train_subset=200))]
    pd.testing.assert_frame_equal(
        kept.sort_values("model_id").reset_index(drop=True)[["model_id", "error", "epochs",
                                                             "finished_at"]],
        old.sort_values("model_id").reset_index(drop=True)[["model_id", "error", "epochs",
                                                            "finished_at"]])
    assert m in set(kept["model_id"])  # the model's old result is still there
    df = Store(root).load()  # the old recipe still has the most results: analyses read it
    assert dict(zip(df["model_id"], df["error"])) == dict(zip(old["model_id"], old["error"]))


def test_sampling_warns_about_a_choice_that_rarely_fits_the_window(tmp_path):
    """b = 1/4 in AnyNetX_C at 1.5–2 MF: almost every draw costs too much, so the population
    holds almost none; `dse sample` says so in one warning. Built-in spaces say nothing."""
    from dse.space import checks
    from dse.space import definition as spaces

    root = Path(__file__).parents[1]
    r = ok("sample", "--space", root / "experiments" / "findings-choices.yaml", "--n", "32",
           "--dataset", "fashion-mnist", "--flops", "1.5M:2M", "--store", tmp_path)
    assert "Warning: b = 0.25 is" in r.output and "drawn with probability 50%" in r.output
    for name in ("anynetxa", "anynetxc", "regnetx"):
        r = ok("sample", "--space", name, "--n", "32", "--dataset", "fashion-mnist",
               "--flops", "1.5M:2M", "--store", tmp_path)
        assert "Warning" not in r.output, r.output
    models = Store(tmp_path).read_models("xc-choices")
    space = spaces.load(root / "experiments" / "findings-choices.yaml")
    assert checks.rare_choices(space, models.head(checks.RARE_MIN_N - 1)) == []
