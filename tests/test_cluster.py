"""`dse train --cluster`: job arrays of trainer tasks on one store through submitit's local
executor (processes on this machine) and in-process `debug`; a task killed hard, preempted,
cancelled, or unable to read its data. The same against a real Slurm: tests/test_slurm.py."""

import json
import os
import re
import signal
import time

import pyarrow.parquet as pq
import pytest
from cli_helpers import ok, one_error, run, sampled

from dse.errors import ArgumentError
from dse.runner import cluster
from dse.store.core import Store
from dse.store.schema import RESULTS_SCHEMA

FAST = ["--epochs", "1", "--train-subset", "500"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tasks share this machine's cores


def sample(store, n, dataset="synthetic"):
    return set(sampled(store, n, dataset=dataset)["model_id"])


def finished_lines(store) -> list[str]:
    """Model ids of the per-model lines `[k/n] space model_id status ...` of every task log."""
    ids = []
    for log in Store(store).jobs_dir.glob("*/logs/*_log.out"):
        ids += [m.group(1) for m in re.finditer(r"^\[\d+/\d+\] regnetx (\w+) ", log.read_text(),
                                                re.M)]
    return ids


def wait_for_claim(store, seconds=120) -> dict:
    d = Store(store).claims_dir("regnetx")
    deadline = time.time() + seconds
    while time.time() < deadline:
        for f in d.glob("*.json"):
            try:
                return json.loads(f.read_text())
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError("no model was claimed")


def the_job(store) -> cluster.Submission:
    (rec,) = cluster.jobs(store)
    return rec


def test_local_tasks_train_every_model_exactly_once(tmp_path):
    ids = sample(tmp_path, 4)
    r = ok("train", "--store", tmp_path, *FAST, "--cluster", "local", "--tasks", 2, "--wait")
    assert "2 tasks on local" in r.output and "4/4 models trained" in r.output
    assert sorted(finished_lines(tmp_path)) == sorted(ids)  # each once, none twice
    logs = [p.read_text() for p in Store(tmp_path).jobs_dir.glob("*/logs/*_log.out")]
    assert any(re.search(r"^plan: \d models? .*\nETA .* × 1 trainer × 2 tasks, ", log, re.M)
               for log in logs), logs  # the ETA of a task counts both
    assert not any("Warning:" in log for log in logs)
    res = Store(tmp_path).read_results("regnetx")
    assert set(res["model_id"]) == ids and set(res["status"]) == {"done"}
    files = list(Store(tmp_path).results_dir("regnetx").rglob("*.parquet"))
    assert files  # per-model files, or the segment each task's end folded them into
    for f in files:
        assert pq.read_schema(f).remove_metadata() == RESULTS_SCHEMA
    rec = the_job(tmp_path)
    assert rec.cluster == "local" and rec.tasks == 2 and rec.pending == 4
    assert [t.state for t in rec.task_states] == ["done", "done"]
    assert sum(rec.task_records[k]["done"] for k in (0, 1)) == 4
    assert rec.options["train"]["recipe"]["train_subset"] == 500
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))
    status = ok("status", "--store", tmp_path).output
    assert "cluster jobs:" in status and "2 done" in status


@pytest.mark.slow  # default tier: local tasks train every model once (above)
def test_debug_runs_the_tasks_in_process_with_the_results_of_a_plain_run(tmp_path):
    ids = sample(tmp_path / "a", 2)
    sample(tmp_path / "b", 2)
    r = ok("train", "--store", tmp_path / "a", *FAST, "--cluster", "debug", "--tasks", 2)
    assert f"pid {os.getpid()}" in r.output  # in this process
    task1 = r.output[r.output.index("task 1 of 2"):]
    assert "nothing to train: every sampled model has a result" in task1  # ends at once
    assert "2/2 models trained, 0 in flight; tasks: 2 done" in r.output
    ok("train", "--store", tmp_path / "b", *FAST)
    a = Store(tmp_path / "a").read_results("regnetx").sort_values("model_id")
    b = Store(tmp_path / "b").read_results("regnetx").sort_values("model_id")
    assert set(a["model_id"]) == ids and list(a.columns) == list(b.columns)
    assert list(a["error"]) == list(b["error"])  # the same seed, the same models, same result
    assert [t.state for t in the_job(tmp_path / "a").task_states] == ["done", "done"]


@pytest.mark.slow  # the kill -9 property: tests/test_train_runner.py in the default tier
def test_a_task_killed_mid_model_leaves_it_to_the_other_task_or_a_rerun(tmp_path):
    ids = sample(tmp_path, 3)
    r = ok("train", "--store", tmp_path, "--epochs", "2", "--train-subset", "500",
           "--cluster", "local", "--tasks", 2)
    assert "follow: dse status" in r.output
    victim = wait_for_claim(tmp_path)
    os.kill(victim["pid"], signal.SIGKILL)
    states = cluster.follow(tmp_path, the_job(tmp_path).name, lambda line: None, poll=0.5)
    assert sorted(t.state for t in states) == ["done", "killed"]
    killed = next(t for t in states if t.state == "killed")
    assert "without recording an outcome" in killed.message
    assert "killed: ended without recording" in ok("status", "--store", tmp_path).output
    ok("train", "--store", tmp_path, "--epochs", "2", "--train-subset", "500", "--cluster",
       "local", "--wait")  # the rerun, with the same recipe
    res = Store(tmp_path).read_results("regnetx")
    assert set(res["model_id"]) == ids and set(res["status"]) == {"done"}
    assert sorted(finished_lines(tmp_path)) == sorted(ids)  # the victim's model once, later
    assert victim["model_id"] in ids


@pytest.mark.slow  # the claim given back: test_train_runner.py (SIGTERM) in the default tier
def test_a_preempted_task_gives_its_claim_back_and_is_requeued(tmp_path):
    ids = sample(tmp_path, 3)
    ok("train", "--store", tmp_path, *FAST, "--cluster", "local")
    victim = wait_for_claim(tmp_path)
    os.kill(victim["pid"], signal.SIGUSR2)  # Slurm's signal before preemption / time limit
    (task,) = cluster.follow(tmp_path, the_job(tmp_path).name, lambda line: None, poll=0.5)
    assert task.state == "done"
    rec = the_job(tmp_path).task_records[0]
    assert rec["requeues"] == 1 and rec["done"] == 3 and rec["pid"] != victim["pid"]
    log = next(Store(tmp_path).jobs_dir.glob("*/logs/*_log.out")).read_text()
    assert "requeued: SIGUSR2: claims given back; requeued (1 of at most 3)" in log
    assert set(Store(tmp_path).read_results("regnetx")["model_id"]) == ids
    assert sorted(finished_lines(tmp_path)) == sorted(ids)


def test_cancel_stops_the_tasks_and_gives_their_claims_back(tmp_path):
    sample(tmp_path, 3)
    ok("train", "--store", tmp_path, "--epochs", "5", "--train-subset", "1000",
       "--cluster", "local")
    wait_for_claim(tmp_path)
    name = the_job(tmp_path).name
    r = ok("cancel", "--store", tmp_path)
    assert r.output.startswith(f"cancelled {name} job ")
    (task,) = cluster.follow(tmp_path, name, lambda line: None, poll=0.5)
    assert task.state == "cancelled" and "claims given back" in task.message
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))
    assert ok("cancel", "--store", tmp_path).output == f"no unfinished cluster jobs in {tmp_path}\n"
    assert "'nope' is not a submission" in one_error(run("cancel", "--store", tmp_path,
                                                         "--job", "nope"))


def test_a_task_that_cannot_read_the_data_fails_visibly(tmp_path):
    sample(tmp_path, 2, dataset="cifar10")
    r = run("train", "--store", tmp_path, "--epochs", "1", "--cluster", "local", "--wait",
            "--data-dir", tmp_path / "nowhere")
    assert r.exit_code == 1
    assert re.search(r"Error: task 0 \(job \d+\) failed: cifar10 not found; looked in "
                     + re.escape(str(tmp_path / "nowhere")), r.stderr)
    status = ok("status", "--store", tmp_path, "--jobs").output
    assert "1 failed" in status and "failed: cifar10 not found" in status
    log = next(Store(tmp_path).jobs_dir.glob("*/logs/*_log.out")).read_text()
    assert "dse task 0: failed: cifar10 not found" in log
    (rec,) = json.loads(ok("status", "--store", tmp_path, "--jobs", "--json").output)
    assert rec["task_states"][0]["state"] == "failed"


@pytest.mark.parametrize("args, flag", [
    (["--tasks", "2"], "--tasks applies to --cluster runs only"),
    (["--wait"], "--wait applies to --cluster runs only"),
    (["--slurm-arg", "account=x"], "--slurm-arg applies to --cluster runs only"),
    (["--cluster", "local", "--slurm-arg", "account"], "--slurm-arg 'account' is not KEY=VALUE"),
])
def test_cluster_options_are_checked(tmp_path, args, flag):
    sample(tmp_path, 1)
    assert flag in one_error(run("train", "--store", tmp_path, *args))
    assert not Store(tmp_path).jobs_dir.exists()


def test_slurm_without_sbatch_is_one_line(tmp_path, monkeypatch):
    sample(tmp_path, 1)
    monkeypatch.setenv("PATH", str(tmp_path))
    err = one_error(run("train", "--store", tmp_path, "--cluster", "slurm"))
    assert "--cluster slurm needs Slurm's sbatch on PATH" in err


def test_cluster_options_map_to_submitit_parameters():
    opts = cluster.ClusterOptions("slurm", tasks=8, gpus_per_task=1, cpus_per_task=8,
                                  partition="gpu", array_parallelism=4,
                                  slurm_args=cluster.parse_slurm_args(["account=p", "qos=hi"]))
    assert opts.parameters() == dict(
        name="dse-train", timeout_min=240, gpus_per_node=1, cpus_per_task=8, nodes=1,
        tasks_per_node=1, slurm_partition="gpu", slurm_array_parallelism=4,
        slurm_additional_parameters={"account": "p", "qos": "hi"})
    assert "slurm_partition" not in cluster.ClusterOptions("local").parameters()
    with pytest.raises(ArgumentError, match="tasks must be an integer ≥ 1"):
        cluster.ClusterOptions("local", tasks=0)
    with pytest.raises(ArgumentError, match="cluster must be one of slurm, local"):
        cluster.ClusterOptions("pbs")


def test_a_usr2_taken_while_the_claims_are_given_back_still_requeues():
    # Slurm's preemption is SIGTERM then USR2 at once: the USR2 may arrive while the first
    # Stop unwinds (or reach a torch thread), where the task must record it, not stop again
    usr, term = cluster._usr_signal(), signal.SIGTERM
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        cluster._RECEIVED.clear()
        with pytest.raises(cluster.Stop):
            cluster._raise_stop(term, None)
        cluster._raise_stop(usr, None)  # recorded only
        assert cluster._RECEIVED == [term, usr]
        task = cluster.TrainTask("store", "job", (), cluster.TrainOptions(), "slurm")
        requeued, notes, t0 = [], [], time.monotonic()
        with pytest.raises(SystemExit):  # submitit's requeue exits; this one returns
            task._stopped(term, lambda s, f: requeued.append(s), lambda *a: notes.append(a))
        assert requeued == [usr] and notes[0][0] == "requeued"
        assert time.monotonic() - t0 < 1  # no wait for a USR2 already taken
    finally:
        cluster._RECEIVED.clear()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
