"""Experiments in rounds (`rounds:`, `dse run --until-decided`) and `dse plan`: the looks and
their record, stopping once decided, resuming, the replay on the committed dds-cpu store,
the planner on a store with known spreads, and a real run on synthetic data killed with
kill -9 in its second round and resumed."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_helpers import ROOT, ok, one_error, run, write_results

from dse.analysis.sequential import Schedule
from dse.errors import DseError
from dse.method import experiment, pipeline, rounds
from dse.store.core import Store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
BASE = dict(name="r", dataset="synthetic", n=8, spaces=["anynetxa", "anynetxe"],
            flops="0.5M:2M", seed=0, rounds=dict(size=8, max_n=32),
            train=dict(epochs=1, train_subset=200, batch_size=50, device="cpu", jobs=1),
            expect=["anynetxe better than anynetxa", "anynetxa better than anynetxe"],
            analyze=dict(report=True))
MEANS = {"anynetxa": 40.0, "anynetxe": 30.0}  # planted: E is 10 points (3.3 SD) better


def write(tmp_path, **changes):
    cfg = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def fake_train(store, means=MEANS, sd=3.0, seed=0):
    """A train stage that writes results with planted errors instead of training; records
    how many models each call trained."""
    calls = []

    def train(spaces):
        s, n = Store(store), 0
        for space in spaces:
            models = s.read_models(space)
            done = set(s.read_results(space)["model_id"])
            todo = models[~models["model_id"].isin(done)]
            rng = np.random.default_rng([seed, len(done), len(space)])
            write_results(store, space, todo, means[space] + sd * rng.standard_normal(len(todo)),
                          dataset="synthetic", train_loss=0.5)
            n += len(todo)
        calls.append(n)
    return train, calls


def test_rounds_stop_once_every_claim_is_decided_and_a_rerun_trains_nothing(tmp_path):
    exp = experiment.load(write(tmp_path))
    store = Store(tmp_path / "s")
    train, calls = fake_train(store.root)
    state = rounds.run(exp, store, train, echo=lambda s: None)
    # look 1 (8 per space) spends 0.2% of α: p = 1/C(16, 8) is not enough under Holm over 2;
    # look 2 (16) decides both: one holds, its mirror is contradicted
    assert [lk["n"] for lk in state["looks"]] == [8, 16]
    last = {c["claim"]: c for c in state["looks"][-1]["claims"]}
    assert last[BASE["expect"][0]]["status"] == "holds"
    assert last[BASE["expect"][1]]["status"] == "contradicted"
    assert all(c["look_decided"] == 2 for c in last.values())
    assert state["stopped"] == "every claim decided" and calls == [16, 16]
    assert [len(store.read_models(s)) for s in exp.spaces] == [16, 16]  # not 32
    first = state["looks"][0]["claims"][0]
    assert first["status"] == "open" and first["p"] == pytest.approx(1 / 12870)
    assert first["boundary"] == pytest.approx(0.05 / 2 * Schedule.of(8, 8, 32, 0.05).shares[0])
    on_disk = json.loads(store.rounds_path("r").read_text())
    assert on_disk["looks"] == json.loads(json.dumps(state["looks"]))
    # the analysis gives the rounds' verdicts and lists the looks
    out = pipeline.run(exp, store, only="analyze", echo=lambda s: None)
    assert [c["verdict"] for c in out["claims"]] == ["holds", "contradicted"]
    assert "decided at look 2" in out["claims"][0]["detail"]
    assert len(out["rounds"]["looks"]) == 2
    page = (store.experiment_dir("r") / "report.html").read_text()
    assert "<h2>Rounds</h2>" in page and "sequential p" in page
    # a rerun trains nothing; a changed schedule is refused
    again = rounds.run(exp, store, train, echo=lambda s: None)
    assert calls == [16, 16] and len(again["looks"]) == 2
    with pytest.raises(DseError, match="would make the looks invalid"):
        rounds.read_state(experiment.load(write(tmp_path, rounds=dict(size=4, max_n=32))),
                          store)


def test_an_interrupted_round_resumes_where_it_stopped(tmp_path):
    """A run that dies in round 2 (after sampling, before its look) resumes: the same models,
    none trained twice, and the look it had not taken is taken."""
    exp = experiment.load(write(tmp_path, expect=["anynetxe better than anynetxa"],
                                rounds=dict(size=8, max_n=24)))
    store = Store(tmp_path / "s")
    means = {"anynetxa": 30.0, "anynetxe": 30.0}  # no effect: runs to the budget
    train, calls = fake_train(store.root, means)

    def dies_in_round_2(spaces):
        if calls:
            raise KeyboardInterrupt
        train(spaces)

    with pytest.raises(KeyboardInterrupt):
        rounds.run(exp, store, dies_in_round_2, echo=lambda s: None)
    ids = {s: list(store.read_models(s)["model_id"]) for s in exp.spaces}
    assert [len(v) for v in ids.values()] == [16, 16]
    assert len(json.loads(store.rounds_path("r").read_text())["looks"]) == 1
    state = rounds.run(exp, store, train, echo=lambda s: None)
    assert calls == [16, 16, 16]  # 8 + 8 per round: nothing twice
    assert [lk["n"] for lk in state["looks"]] == [8, 16, 24]
    assert state["stopped"] == "budget spent: 24 models per space"
    assert all(list(store.read_models(s)["model_id"])[:16] == ids[s] for s in exp.spaces)


@pytest.mark.parametrize("changes,message", [
    (dict(rounds=dict(size=8)), "rounds: must be a mapping {size: K, max_n: N}"),
    (dict(rounds=dict(size=8, max_n=8)), "rounds.max_n: must exceed n (8)"),
    (dict(rounds=dict(size=0, max_n=16)), "rounds.size:"),
    (dict(expect=["anynetxe ranks alike at epochs=1 and epochs=2"]),
     "expect[1]: is judged by an interval"),
    (dict(promote=dict(top=2, epochs=2)), "cannot have `promote:` as well"),
])
def test_mistakes_in_rounds_are_one_line(tmp_path, changes, message):
    err = one_error(run("run", write(tmp_path, **changes), "--dry-run", "--store",
                        tmp_path / "s"))
    assert message in err, err


def test_until_decided_sets_the_rounds_and_the_dry_run_shows_them(tmp_path):
    p = write(tmp_path, rounds=None)
    store = tmp_path / "s"
    assert "--max-n and --round go with --until-decided" in one_error(
        run("run", p, "--max-n", "9", "--store", store))
    err = one_error(run("run", p, "--until-decided", "--store", store, "--dry-run"))
    assert "--until-decided needs --max-n N and --round K" in err
    r = ok("run", p, "--until-decided", "--max-n", "24", "--round", "8", "--dry-run",
           "--store", store, "--json")
    plan = json.loads(r.output)
    assert plan["rounds"]["looks"] == [8, 16, 24]
    out = ok("run", p, "--until-decided", "--max-n", "24", "--round", "8", "--dry-run",
             "--store", store).output
    assert "in rounds: looks at 8, 16, 24 models per space" in out
    assert not store.exists()


# ---- dse plan ------------------------------------------------------------------------------

def test_dse_plan_reads_the_spread_from_a_pilot_and_costs_the_n(tmp_path):
    """A pilot of 24 models per space whose errors scatter with SD 2: "E better than A" by a
    planted 2 points needs n where the pilot's spread gives 80%; the file's n gives less."""
    from cli_helpers import sampled

    pilot = tmp_path / "pilot"
    rng = np.random.default_rng(0)
    for space in ("anynetxa", "anynetxe"):
        models = sampled(pilot, 24, space)
        write_results(pilot, space, models, 35 + 2 * rng.standard_normal(24),
                      dataset="synthetic", train_loss=0.5, train_seconds=2.0)
    p = write(tmp_path, rounds=None, expect=["anynetxe better than anynetxa",
                                             "anynetxe at least as good as anynetxa within 2",
                                             "anynetxe good depth contains 3"])
    out = json.loads(ok("plan", p, "--pilot", pilot, "--store", tmp_path / "s", "--effect",
                        "1=2", "--reps", "1000", "--json").output)
    better, atleast, rng_claim = out["claims"]
    assert better["effect"] == 2 and better["level"] == pytest.approx(0.05 / 3)
    assert 1.5 < better["spread"] < 2.6 and "pilot" in better["spread_from"]
    assert 15 < better["n"] < 60 and better["power_now"] < 0.8
    assert atleast["effect"] == 0 and atleast["n"] > 8
    assert rng_claim["n"] is None and "no power model" in rng_claim["note"]
    rows = {r["space"]: r for r in out["spaces"]}
    assert rows["anynetxe"]["n"] == max(better["n"], atleast["n"])
    assert rows["anynetxe"]["to_train"] == rows["anynetxe"]["n"]  # none sampled in the store
    assert out["rate"] > 0 and rows["anynetxe"]["eta_s"] > 0
    text = ok("plan", p, "--pilot", pilot, "--store", tmp_path / "s", "--reps", "500").output
    assert "n needed" in text and "anynetxe better than anynetxa" in text
    # without a pilot: a spread from --sd, or a note saying what is missing
    out = json.loads(ok("plan", p, "--store", tmp_path / "s", "--sd", "2", "--reps", "500",
                        "--effect", "0.5sd", "--json").output)
    assert out["claims"][0]["effect"] == pytest.approx(1.0)
    out = json.loads(ok("plan", p, "--store", tmp_path / "s", "--json").output)
    assert "give the spread with --sd" in out["claims"][0]["note"]
    for bad, says in ((["--effect", "x=1"], "write VALUE or K=VALUE"),
                      (["--effect", "7=1"], "the experiment has 3 claims"),
                      (["--effect", "abc"], "a number of points")):
        assert says in one_error(run("plan", p, "--sd", "2", "--store", tmp_path / "s",
                                      *bad))


def test_dse_plan_plans_one_run_per_model_from_a_pilot_of_seed_means(tmp_path):
    """A pilot whose errors are means of 3 seeds (models' own spread 1 point, seed noise 3):
    its means scatter by about 2 points, one run per model by √(1 + 9) ≈ 3.2, and the plan
    is for one run per model."""
    from cli_helpers import sampled

    pilot = tmp_path / "pilot"
    rng = np.random.default_rng(2)
    for space in ("anynetxa", "anynetxe"):
        models = sampled(pilot, 40, space)
        own = 30 + rng.standard_normal(40)
        for seed in range(3):
            write_results(pilot, space, models, own + 3 * rng.standard_normal(40),
                          dataset="synthetic", train_loss=0.5, seed=seed)
    p = write(tmp_path, rounds=None, expect=["anynetxe better than anynetxa"])
    c = json.loads(ok("plan", p, "--pilot", pilot, "--store", tmp_path / "s", "--reps", "500",
                      "--json").output)["claims"][0]
    assert 2.6 < c["spread"] < 3.8 and "σ_seed" in c["spread_from"], c


# ---- the replay on dds-cpu -----------------------------------------------------------------

def test_the_dds_cpu_replay_in_finished_order_matches_its_doc():
    """docs/experiments.md, "Rounds": the C → D claim, replayed in the order its models
    finished with looks at 8, 16, 24 and 32 models per space, is not decided within 32
    under Holm over the file's nine claims (the claim alone: decided at 32 only)."""
    exp = experiment.load(ROOT / "experiments" / "dds-cpu.yaml",
                          [(["expect"], ["anynetxd better than anynetxc"]),
                           (["spaces"], ["anynetxc", "anynetxd"]), (["analyze"], {})])
    store = Store(ROOT / "experiments" / "results" / "dds-cpu")
    state = rounds.replay(exp, store, Schedule.of(8, 8, 32, 0.05))
    seq = [lk["claims"][0]["p_seq"] for lk in state["looks"]]
    assert [lk["n"] for lk in state["looks"]] == [8, 16, 24, 32]
    assert seq[-1] == pytest.approx(0.0203, abs=5e-4)
    assert [lk["claims"][0]["status"] for lk in state["looks"]] == ["open"] * 3 + ["holds"]
    doc = (ROOT / "docs" / "experiments.md").read_text()
    assert "sequential p 1, 0.159, 0.0939, 0.0203" in doc
    assert seq[-1] * 9 > 0.05  # Holm's strictest step over the file's nine claims


# ---- a real run ----------------------------------------------------------------------------

def dse_run(*args):
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "run", *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


@pytest.mark.slow  # trains 12 tiny models; the rounds' resume: the test above, no training
def test_a_real_run_in_rounds_killed_in_its_second_round_resumes(tmp_path):
    p = write(tmp_path, n=3, rounds=dict(size=3, max_n=6))
    store = Store(tmp_path / "s")
    proc = dse_run(p, "--store", store)
    deadline = time.time() + 300
    while time.time() < deadline and not (
            store.rounds_path("r").exists() and sum(
                len(store.read_results(s)) for s in ("anynetxa", "anynetxe")
                if (store.root / s).exists()) > 6):
        time.sleep(0.2)
    os.killpg(proc.pid, 9)  # kill -9 in the second round, some of its models trained
    first = proc.communicate()[0]
    assert "look 1 at 3 models per space" in first and "look 2" not in first, first
    state = json.loads(store.rounds_path("r").read_text())
    assert len(state["looks"]) == 1 and state["stopped"] is None
    trained = {s: set(store.read_results(s)["model_id"]) for s in ("anynetxa", "anynetxe")}
    assert 6 < sum(map(len, trained.values())) < 12

    r = dse_run(p, "--store", store)
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    assert "look 2 at 6 models per space" in out
    state = json.loads(store.rounds_path("r").read_text())
    assert [lk["n"] for lk in state["looks"]] == [3, 6] and state["stopped"]
    for s in ("anynetxa", "anynetxe"):
        assert len(store.read_models(s)) == 6
        res = store.read_results(s)
        assert len(res) == 6 and res["model_id"].is_unique  # none trained twice
    summary = json.loads((store.experiment_dir("r") / "summary.json").read_text())
    assert len(summary["rounds"]["looks"]) == 2
    again = dse_run(p, "--store", store)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "nothing to train" in out and "[1/" not in out, out
