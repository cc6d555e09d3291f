"""Successive halving: the replay's rule and numbers on a population whose ranking is known
(recall and regret worked by hand), its behaviour on simulated populations (no information:
the random pick's recall; informative rungs: better than one cut), the matrix read from
stored curves or per-rung results, `dse halving` and its one-line errors, the promote
stage's keys checked when the file is read, and a real store: every model at the first rung,
each rung's best at the next as a stored selection, a rerun that trains nothing and a lost
result trained again without choosing anew."""

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import ok, one_error, run, sampled, write_results

from dse.analysis import halving as hv
from dse.errors import DseError
from dse.method import experiment, halving, pipeline
from dse.store import recipes, selections
from dse.store.core import Store
from dse.train.recipe import Recipe

# 9 models; full training (the last rung) ranks them 0 (best) … 8. The first rung ranks them
# 3, 0, 5, 1, 2, 4, 6, 7, 8: with eta 3 the best 3 ({3, 0, 5}) go on; at the second rung 5
# beats 0 and 3, and is the one finalist.
FULL = np.arange(10.0, 19.0)
FIRST = np.empty(9)
FIRST[[3, 0, 5, 1, 2, 4, 6, 7, 8]] = np.arange(20.0, 29.0)
SECOND = np.full(9, 50.0)
SECOND[[5, 0, 3]] = [11.0, 12.0, 13.0]
KNOWN = np.column_stack([FIRST, SECOND, FULL])


def test_the_rule_on_a_known_ranking_gives_the_hand_worked_numbers():
    assert hv.counts(9, 3, 3) == [9, 3, 1] and hv.counts(48, 3, 3) == [48, 16, 5]
    assert hv.counts(5, 2, 4) == [5, 2, 1, 1]  # never fewer than one model
    assert hv.finalists(KNOWN, 3).tolist() == [5]
    r = hv.replay(KNOWN, eta=3, rungs=(1, 3, 9), n_boot=200)
    assert (r.n, r.counts, r.k, r.finalists) == (9, (9, 3, 1), 1, (5,))
    assert r.recall.value == 0.0  # the best model (0) fell at the second rung
    assert r.regret.value == 15.0 - 10.0  # model 5's full error against model 0's
    assert r.first_rung_recall.value == 0.0 and r.first_rung_regret.value == 13.0 - 10.0
    assert r.random_recall == pytest.approx(1 / 9)
    # each rung from scratch: 9·1 + 3·3 + 1·9; continuing: 9·1 + 3·2 + 1·6; all: 9·9
    assert (r.epochs, r.epochs_resumed, r.epochs_full) == (27, 21, 81)
    six = hv.replay(KNOWN, eta=3, k=6, n_boot=200)  # top 6 = models 0..5: 5 is one of them
    assert six.recall.value == pytest.approx(1 / 6)
    assert six.first_rung_recall.value == pytest.approx(1 / 6)  # the cut keeps 3 alone
    assert 0 <= six.recall.lo <= six.recall.value <= six.recall.hi <= 1


def test_diverged_models_rank_last_and_a_perfect_proxy_loses_nothing():
    e = np.column_stack([FULL, FULL, FULL])
    r = hv.replay(e, eta=3, n_boot=200)
    assert r.finalists == (0,) and r.recall.value == 1.0 and r.regret.value == 0.0
    assert (r.recall.lo, r.recall.hi, r.regret.lo, r.regret.hi) == (1.0, 1.0, 0.0, 0.0)
    e[0, 0] = np.nan  # model 0 diverged at the first rung: it is not promoted
    assert hv.finalists(e, 3).tolist() == [1]
    for bad, says in ((np.ones(5), "matrix"), (np.ones((1, 3)), "at least 2 models")):
        with pytest.raises(DseError, match=says):
            hv.replay(bad)
    with pytest.raises(DseError, match="top k must lie between 1 and the 9 models"):
        hv.replay(KNOWN, k=10)
    for eta, rungs, says in ((1, (1, 3), "eta must be a number above 1"),
                             (3, (3,), "two or more epochs"), (3, (3, 1), "rise strictly"),
                             (3, (0, 2), "whole epochs of at least 1")):
        with pytest.raises(DseError, match=says):
            hv.check(eta, rungs)


def simulate(rng, n, noise):
    """Errors of n models at each rung: a true quality plus noise of each rung's sd (the last
    rung is full training: no noise)."""
    true = rng.normal(30, 3, n)
    return np.column_stack([true + rng.normal(0, s, n) for s in noise] + [true])


def test_uninformative_rungs_do_no_better_than_chance_and_informative_ones_beat_one_cut():
    rng = np.random.default_rng(0)
    # rungs that know nothing (noise only, 27 models, eta 3: 3 finalists): the finalists are
    # a random 3, so the top-3 recall averages 3/27 = 0.111 (se ≈ 0.012 over 300 draws)
    blind = [hv.score(np.column_stack([rng.normal(0, 1, (27, 2)), rng.normal(30, 3, 27)]),
                       3, 3)[0] for _ in range(300)]
    assert np.mean(blind) == pytest.approx(3 / 27, abs=0.04)
    # rungs that know more as they go (noise sd 4, then 1, against a spread of 3): halving
    # finds more of the top 3 than one cut at the first rung, in 300 draws
    scores = np.array([hv.score(simulate(rng, 27, (4.0, 1.0)), 3, 3) for _ in range(300)])
    assert scores[:, 0].mean() > scores[:, 2].mean() + 0.1
    assert scores[:, 1].mean() < scores[:, 3].mean()  # and lower regret


def curves_results(errors, recipe="aaaaaaaaaa", epochs=None, status="done"):
    """Result rows of dse train --curves: one per model, its per-epoch errors."""
    n, r = errors.shape
    return pd.DataFrame(dict(model_id=[f"m{i}" for i in range(n)], recipe=recipe,
                             status=status, epochs=epochs or r,
                             history_error=[list(row) for row in errors],
                             error=errors[:, -1], batch_size=128, lr=0.1, wd=5e-5,
                             train_subset=300, seed=0))


def test_the_matrix_comes_from_curves_or_from_each_rungs_results():
    curves = np.arange(9 * 9, dtype=float).reshape(9, 9)[::-1]  # 9 models, 9 epochs
    m = hv.rung_matrix(curves_results(curves), (1, 3, 9))
    assert m.model_ids == tuple(f"m{i}" for i in range(9))
    assert m.errors.tolist() == curves[:, [0, 2, 8]].tolist()
    assert "per-epoch test errors of 9 results" in m.source
    assert hv.default_rungs(curves_results(curves), 3) == (1, 3, 9)
    assert hv.default_rungs(curves_results(curves[:, :8]), 3) == (1, 3, 8)
    # no curves: results whose recipes differ in their epochs only, one per rung
    per = pd.concat([curves_results(KNOWN[:, [j]], recipe=f"r{j}", epochs=e).assign(
        history_error=None) for j, e in enumerate((1, 3, 9))], ignore_index=True)
    m = hv.rung_matrix(per.drop(index=[0]), (1, 3, 9))  # m0 has no result at 1 epoch
    assert m.model_ids == tuple(f"m{i}" for i in range(1, 9))
    assert m.errors.tolist() == KNOWN[1:].tolist()
    assert m.source.startswith("results at 1, 3, 9 epochs")
    with pytest.raises(DseError, match=r"no curves reach epoch 27 \(the longest holds 9\)"):
        hv.rung_matrix(curves_results(curves), (1, 9, 27), "regnetx")


def test_dse_halving_replays_stored_curves_and_says_what_is_missing(tmp_path):
    models = sampled(tmp_path, 9)
    rng = np.random.default_rng(1)
    hist = simulate(rng, 9, (3.0, 1.0, 0.5))  # 4 epochs of curves
    for (_, row), h in zip(models.iterrows(), hist):
        Store(tmp_path).write_result("regnetx", dict(
            model_id=row["model_id"], space="regnetx", status="done", error=float(h[-1]),
            epochs=4, dataset="synthetic", train_subset=300, history_error=list(h)))
    out = json.loads(ok("halving", "rx", "--store", tmp_path, "--rungs", "1,2,4", "--json",
                        "--seed", 3).output)
    assert out["counts"] == [9, 3, 1] and out["rungs"] == [1, 2, 4] and out["k"] == 1
    ids = models["model_id"].tolist()
    m = np.array([hist[ids.index(i)] for i in sorted(ids)])[:, [0, 1, 3]]
    r = hv.replay(m, 3, seed=3, rungs=(1, 2, 4))
    assert out["recall"] == r.recall.to_json() and out["regret"] == r.regret.to_json()
    assert out["finalists"] == [sorted(ids)[i] for i in r.finalists]
    text = ok("halving", "rx", "--store", tmp_path, "--eta", 2).output
    assert "successive halving at 1, 2, 4 epochs, eta 2: 9 → 4 → 2 models" in text
    for args, says in ((["--rungs", "1,2,8"], "no curves reach epoch 8 (the longest holds 4)"),
                       (["--rungs", "2,1"], "--rungs: rungs must rise strictly"),
                       (["--eta", "1"], "--eta: eta must be a number above 1"),
                       (["--top", "10"], "--top 10 exceeds the 9 models"),
                       (["--rungs", "1,x"], "is not a list of epochs such as 1,3,9")):
        assert says in one_error(run("halving", "rx", "--store", tmp_path, *args))
    empty = tmp_path / "empty"
    sampled(empty, 2)
    assert "has no results yet" in one_error(run("halving", "rx", "--store", empty))


BASE = dict(name="h", dataset="synthetic", n=6, spaces=["regnetx"], flops="0.5M:2M",
            train=dict(epochs=1, train_subset=300, device="cpu"))


def test_a_halving_stage_is_checked_when_the_file_is_read():
    e = experiment.check(dict(BASE, promote=[dict(halving=dict(eta=2, rungs=[1, 2, 4]),
                                                  curves=True, lr=0.05)]), "h.yaml")
    (h,) = e.promotes
    assert isinstance(h, halving.Halving) and (h.eta, h.rungs) == (2.0, (1, 2, 4))
    assert h.at(2, top=1).recipe == Recipe(epochs=4, train_subset=300, lr=0.05)
    assert h.at(2, top=1).top == 1 and h.options.curves and h.counts(6) == [6, 3, 1]
    assert experiment.check(dict(BASE, promote={"halving": {"rungs": [1, 3]}}),
                            "h.yaml").promotes[0].eta == 3.0  # eta defaults to 3
    for bad, key, says in (
            (dict(halving=[1, 3]), "promote[1].halving", "must be a mapping"),
            (dict(halving=dict(eta=3)), "promote[1].halving.rungs", "missing"),
            (dict(halving=dict(rungs=[1, 3], step=2)), "promote[1].halving.step",
             "unknown key"),
            (dict(halving=dict(eta=1, rungs=[1, 3])), "promote[1].halving", "above 1"),
            (dict(halving=dict(rungs=[3, 1])), "promote[1].halving", "rise strictly"),
            (dict(halving=dict(rungs=[1, 3]), top=2), "promote[1].top", "not with halving"),
            (dict(halving=dict(rungs=[1, 3]), epochs=9), "promote[1].epochs",
             "not with halving"),
            (dict(halving=dict(rungs=[1, 3]), warmup=2), "promote[1].warmup",
             "exceeds epochs (1)")):
        with pytest.raises(experiment.ExperimentError) as info:
            experiment.check(dict(BASE, promote=[bad]), "h.yaml")
        assert str(info.value).startswith(f"h.yaml: {key}: "), str(info.value)
        assert says in str(info.value) and "\n" not in str(info.value)


def test_a_rung_is_chosen_only_once_the_rung_below_is_complete(tmp_path):
    models = sampled(tmp_path, 6)
    stage = experiment.check(dict(BASE, promote=[dict(halving=dict(eta=2, rungs=[1, 2]))]),
                             "h.yaml").promotes[0]
    one = stage.at(0).recipe
    row = {k: v for k, v in one.asdict().items() if k != "seed"}
    write_results(tmp_path, "regnetx", models.head(5), [30, 20, 40, 10, 50], **row,
                  dataset="synthetic")
    store = Store(tmp_path)
    with pytest.raises(DseError, match="1 of the 6 models at 1 epochs have no result yet"):
        halving.promote(store, "regnetx", stage, 1, 3)
    assert not store.selections_dir("regnetx").exists()  # nothing chosen
    write_results(tmp_path, "regnetx", models.tail(1), [None], status="diverged", **row,
                  dataset="synthetic")
    sel = halving.promote(store, "regnetx", stage, 1, 3)
    ids = models["model_id"].tolist()
    assert sel.top_models == (ids[3], ids[1], ids[0])  # errors 10, 20, 30; diverged last
    assert sel.ranked_by == recipes.fingerprint(one.asdict())
    assert sel.recipe == stage.recipe_of(1)[0] and sel.top == 3
    assert selections.read(store, "regnetx", sel.name) == sel  # stored before training


@pytest.mark.slow  # the stage's choice without training: the test above
def test_a_halving_stage_trains_each_rung_once_and_resumes(tmp_path, monkeypatch):
    """4 RegNetX on synthetic data (300 images: seconds each), rungs of 1, 2 and 3 epochs with
    eta 2: 4, then the best 2, then the best 1. The stage stopped after one model of rung 2
    (as a killed run leaves it) continues: the same 2, each trial once, and a rerun trains
    nothing."""
    from dataclasses import replace

    from dse.runner import loop
    from dse.train import trainer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(trainer, "CALIBRATE_S", 0.2)
    path = tmp_path / "h.yaml"
    halves = dict(halving=dict(eta=2, rungs=[1, 2, 3]))
    path.write_text(json.dumps(dict(BASE, n=4, promote=[halves])))
    exp = experiment.load(path)
    stage = exp.promotes[0]
    store = Store(tmp_path / "s")
    pipeline.run(exp, store, only="sample", echo=lambda *a: None)
    loop.run(store, ["regnetx"], exp.options)  # the train stage: rung 1 is its recipe
    chosen = halving.promote(store, "regnetx", stage, 1, 2)
    loop.run(store, ["regnetx"], replace(stage.at(1, top=2), max_models=1))  # then stopped
    pipeline.run(exp, store, only="train")
    res = store.read_results("regnetx")
    fps = [stage.recipe_of(j)[0] for j in range(3)]
    assert [int((res["recipe"] == fp).sum()) for fp in fps] == [4, 2, 1]
    assert not res.duplicated(["model_id", "recipe", "seed"]).any()
    first = res[res["recipe"] == fps[0]].sort_values(["error", "model_id"])
    second = res[res["recipe"] == fps[1]]
    assert set(second["model_id"]) == set(first["model_id"].head(2)) == set(chosen.models)
    third = res[res["recipe"] == fps[2]]
    best = second.sort_values(["error", "model_id"])["model_id"].iloc[0]
    assert third["model_id"].tolist() == [best] and third["epochs_run"].tolist() == [3]
    held, _ = selections.held(store, "regnetx")
    assert sorted((s.top, s.ranked_by) for s in held) == [(1, fps[1]), (2, fps[0])]
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob("results/**/*.parquet")}
    pipeline.run(exp, store, only="train")  # again: nothing is trained
    assert len(store.read_results("regnetx")) == 7
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").rglob(
        "results/**/*.parquet")} == files
    runs = json.loads(ok("status", "--store", tmp_path / "s", "--runs", "--json").output)
    assert [r["models"] for r in runs] == [4, 1, 1, 1]
    assert all(r["status"] == "done" and r["actual_s"] > 0 and r["predicted_s"] > 0
               for r in runs)
    plan = ok("run", path, "--store", tmp_path / "s", "--dry-run").output
    assert ("then promote[1]: successive halving at 1, 2, 3 epochs, keeping the best 1/2 at "
            "each rung: 4 → 2 → 1 models per space, about 11 models of the table above per "
            "space") in plan
