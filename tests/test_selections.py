"""Selections: `dse train --top K` / `--sample M` store the models they chose, so the same
command again, after a kill -9 too, an experiment's promote stage run again and the later
tasks of a cluster array train nothing new; `dse status` lists each selection's models.

The populations here are 6 AnyNetX_A models on synthetic data whose seed-0 errors are planted
(1%, 2%, ... 6%) under the recipe the command trains. A real 1-epoch training of a seed errs
near 80%, so once a model's second seed is trained, its mean over seeds ranks it last: a
ranking redone on the current results would choose other models on every rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from cli_helpers import killed_midway, ok, one_error, run

from dse.errors import DseWarning
from dse.runner import pending
from dse.runner.options import TrainOptions
from dse.store import recipes, selections
from dse.store.core import Store
from dse.system import HOST
from dse.train.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SPACE = "anynetxa"
SHORT = Recipe(epochs=1, train_subset=300)
ARGS = ["--epochs", 1, "--train-subset", 300]


def planted(root, recipe: Recipe = SHORT, n: int = 6) -> list[str]:
    """Sample n AnyNetX_A models and store a seed-0 result of `recipe` for each, erring
    1%, 2%, ...; returns the model ids, best first."""
    ok("sample", "--space", "xa", "--n", n, "--dataset", "synthetic", "--flops", "0.5M:2M",
       "--store", root)
    plant(root, recipe)
    return sorted(Store(root).read_models(SPACE)["model_id"])


def plant(root, recipe: Recipe) -> None:
    """A seed-0 result of `recipe` for each model of the store, erring 1%, 2%, ... in the
    order of the model ids, trained in a second on this host's CPU (so a plan measures its
    speed instead of calibrating it)."""
    store = Store(root)
    settings = {k: v for k, v in recipe.asdict().items() if k != "seed"}
    for i, m in enumerate(sorted(store.read_models(SPACE)["model_id"])):
        store.write_result(SPACE, dict(settings, model_id=m, space=SPACE, status="done",
                                       dataset="synthetic", seed=0, error=float(i + 1),
                                       epochs_run=recipe.epochs, train_seconds=1.0,
                                       device="cpu", host=HOST))


def trials_of(root, recipe: Recipe = SHORT) -> set:
    """(model, seed) of every stored result of `recipe`."""
    res = Store(root).read_results(SPACE)
    res = res[res["recipe"] == recipes.fingerprint(recipe.asdict())]
    return set(zip(res["model_id"], res["seed"].astype(int)))


def trained_ids(output: str) -> list[str]:
    return [ln.split()[2] for ln in output.splitlines() if ln.startswith("[")]


# ---- the same command twice ----------------------------------------------------------------

def test_the_same_top_with_seeds_twice_trains_nothing_the_second_time(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ids = planted(tmp_path)
    first = ok("train", "--store", tmp_path, "--top", 2, "--seeds", 2, *ARGS).output
    assert sorted(trained_ids(first)) == ids[:2]
    assert trials_of(tmp_path) == {(m, 0) for m in ids} | {(m, 1) for m in ids[:2]}
    res = Store(tmp_path).read_results(SPACE)
    assert (res[res["seed"] == 1]["error"] > 6).all()  # the ranking by mean would move
    again = ok("train", "--store", tmp_path, "--top", 2, "--seeds", 2, *ARGS).output
    assert not trained_ids(again) and "nothing to train" in again
    assert Store(tmp_path).read_results(SPACE).equals(res)

    (row,) = json.loads(ok("status", "--store", tmp_path, "--json").output)
    (sel,) = row["selections"]
    fp = recipes.fingerprint(SHORT.asdict())
    assert sel["name"] == f"{fp}-top2" and sel["models"] == ids[:2] and sel["done"] == 2
    assert (sel["top"], sel["sample"], sel["ranked_by"]) == (2, None, fp)
    text = ok("status", "--store", tmp_path).output
    assert f"{fp}-top2" in text and f"    {ids[0]} {ids[1]}\n" in text
    assert "top 2 ranked under epochs=1 batch_size=128" in text


def test_a_dry_run_stores_no_selection_and_a_new_recipe_chooses_afresh(tmp_path):
    ids = planted(tmp_path)
    store = Store(tmp_path)
    opts = TrainOptions(recipe=SHORT, top=2, seeds=2)
    assert pending.chosen_models(store, SPACE, opts, keep=False) == ids[:2]
    assert not store.selections_dir(SPACE).exists()  # a dry run plans, stores nothing
    assert pending.chosen_models(store, SPACE, opts) == ids[:2]
    for m in ids[:3]:  # results that move the mean-of-seeds ranking: ids[3], ids[4] lead
        store.write_result(SPACE, dict(model_id=m, space=SPACE, status="done", seed=1,
                                       error=90.0, **{k: v for k, v in SHORT.asdict().items()
                                                      if k != "seed"}))
    assert pending.chosen_models(store, SPACE, opts) == ids[:2]
    for seeds in (None, 3):  # the seeds are not part of a selection
        assert pending.chosen_models(store, SPACE, TrainOptions(recipe=SHORT, top=2,
                                                                seeds=seeds)) == ids[:2]
    longer = TrainOptions(recipe=Recipe(epochs=2, train_subset=300), top=2)
    assert pending.chosen_models(store, SPACE, longer) == ids[3:5]  # ranked now
    names = {s.name for s in selections.held(store, SPACE)[0]}
    assert names == {f"{recipes.fingerprint(SHORT.asdict())}-top2",
                     f"{recipes.fingerprint(longer.recipe.asdict())}-top2"}


def test_sample_is_stored_too_and_the_first_to_store_a_selection_wins(tmp_path):
    ids = planted(tmp_path)
    store = Store(tmp_path)
    opts = TrainOptions(recipe=SHORT, top=1, sample=2, sample_seed=3)
    sel = pending.selection(store, SPACE, opts)
    assert sel.name == f"{recipes.fingerprint(SHORT.asdict())}-top1-sample2-s3"
    assert sel.top_models == (ids[0],) and len(set(sel.sample_models) - {ids[0]}) == 2
    ok("sample", "--space", "xa", "--n", 12, "--dataset", "synthetic", "--flops", "0.5M:2M",
       "--store", tmp_path)  # more models to draw from: the stored draw stays
    assert pending.selection(store, SPACE, opts) == sel
    longer = TrainOptions(recipe=Recipe(epochs=2, train_subset=300), top=1)
    with pytest.warns(DseWarning, match=r"--top 1: 12 of the 18 anynetxa models have no "
                      r"result under epochs=1 .* chosen once and for all \(delete .*-top1\.json"):
        assert pending.selection(store, SPACE, longer).top_models == (ids[0],)
    other = selections.Selection(sel.recipe, top=1, sample=2, sample_seed=3,
                                 top_models=("x",), sample_models=("y", "z"))
    assert selections.keep(store, SPACE, other) == sel  # a run that chose first is kept


def test_a_damaged_selection_is_one_line_and_left_as_it_is(tmp_path):
    planted(tmp_path)
    store = Store(tmp_path)
    path = store.selection_path(SPACE, f"{recipes.fingerprint(SHORT.asdict())}-top2")
    path.parent.mkdir(parents=True)
    path.write_text('{"recipe": "08766')
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    err = one_error(run("train", "--store", tmp_path, "--top", 2, *ARGS))
    assert f"{path} is not a readable selection" in err and "delete it" in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    (row,) = json.loads(ok("status", "--store", tmp_path, "--json").output)
    assert row["selections"][0]["error"].startswith(f"{path} is not a readable selection")
    assert selections.name("0876654477", top=2, sample=3) == "0876654477-top2-sample3-s0"


# ---- kill -9 during the first run ------------------------------------------------------------

@pytest.mark.slow
def test_a_kill_9_during_the_first_run_then_a_rerun_trains_the_same_models(tmp_path):
    recipe = Recipe(epochs=2, train_subset=1000)
    ids = planted(tmp_path, recipe)
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "train", "--store",
           str(tmp_path), "--top", "2", "--seeds", "2", "--epochs", "2", "--train-subset",
           "1000"]
    results = Store(tmp_path).results_dir(SPACE)
    first = killed_midway(cmd, ENV, lambda: bool(list(results.glob("*-s1.parquet"))),
                          timeout=120, poll=0.05)
    (done,) = [pq.read_table(f).column("model_id")[0].as_py()
               for f in results.glob("*-s1.parquet")]
    assert done in ids[:2]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert trained_ids(first) == [done] and trained_ids(r.stdout) == [
        m for m in ids[:2] if m != done]
    assert trials_of(tmp_path, recipe) == {(m, 0) for m in ids} | {(m, 1) for m in ids[:2]}
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and not trained_ids(again.stdout), again.stdout


# ---- an experiment's promote stage ---------------------------------------------------------

@pytest.mark.slow
def test_a_promote_stage_run_again_trains_nothing_new(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = Recipe(epochs=1, train_subset=300, batch_size=50)
    exp = dict(name="p", dataset="synthetic", n=6, spaces=["anynetxa"], flops="0.5M:2M",
               seed=0, train=dict(epochs=1, train_subset=300, batch_size=50, device="cpu"),
               promote=[dict(top=1, sample=1, seeds=2)])
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump(exp))
    store = tmp_path / "s"
    ok("run", f, "--store", store, "--only", "sample")
    plant(store, recipe)  # the train stage's results
    ids = sorted(Store(store).read_models(SPACE)["model_id"])
    out = ok("run", f, "--store", store, "--only", "train").output
    new = trained_ids(out)
    (sel,) = selections.held(Store(store), SPACE)[0]
    assert sel.top_models == (ids[0],) and len(sel.sample_models) == 1
    assert sorted(new) == sorted(sel.models)
    assert trials_of(store, recipe) == {(m, 0) for m in ids} | {(m, 1) for m in sel.models}
    again = ok("run", f, "--store", store, "--only", "train").output
    assert not trained_ids(again)
    assert trials_of(store, recipe) == {(m, 0) for m in ids} | {(m, 1) for m in sel.models}


# ---- the tasks of a cluster array ------------------------------------------------------------

@pytest.mark.slow
def test_the_tasks_of_a_cluster_array_train_one_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ids = planted(tmp_path)
    r = ok("train", "--store", tmp_path, "--top", 2, "--seeds", 2, *ARGS, "--cluster", "debug",
           "--tasks", 2).output  # the tasks run one after the other: the second starts late
    assert sorted(trained_ids(r)) == ids[:2]
    assert "nothing to train" in r[r.index("task 1 of 2"):]
    assert trials_of(tmp_path) == {(m, 0) for m in ids} | {(m, 1) for m in ids[:2]}
