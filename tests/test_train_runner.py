"""Crash safety and concurrency of `dse train`: atomic claims, stale-claim takeover,
heartbeats, two runs on one store, and a real kill -9 followed by a resume."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import sampled
from click.testing import CliRunner

from dse.cli import cli
from dse.runner import executors as workers
from dse.runner import leases, pending, processes
from dse.store.core import Store
from dse.store.recipes import parse_trial
from dse.system import HOST

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}


def sample(tmp_path, n):
    return list(sampled(tmp_path, n)["model_id"])


def dse_train(store_dir, *args):
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "train", "--store",
           str(store_dir), *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def trained_ids(output):
    """Model ids of the per-model log lines `[k/n] space model_id status ...`."""
    return [ln.split()[2] for ln in output.splitlines() if ln.startswith("[")]


def test_a_claim_is_exclusive_and_released(tmp_path):
    c = leases.claim(Store(tmp_path), "s", "m1")
    assert c is not None and leases.claim(Store(tmp_path), "s", "m1") is None
    rec = json.loads(c.path.read_text())
    assert rec["pid"] == os.getpid() and rec["host"] == HOST and rec["token"] == c.token
    before = rec["heartbeat_at"]
    time.sleep(0.01)
    assert leases.heartbeat(c)
    assert json.loads(c.path.read_text())["heartbeat_at"] > before
    leases.release(c)
    assert not c.path.exists()
    assert leases.claim(Store(tmp_path), "s", "m1") is not None


def write_claim(path, **rec):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model_id": path.stem, "token": "t", **rec}))


def test_stale_claims_are_taken_over_live_ones_are_not(tmp_path):
    d = Store(tmp_path).claims_dir("s")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    write_claim(d / "dead.json", host=HOST, pid=dead.pid, heartbeat_at=now)
    write_claim(d / "old.json", host="elsewhere", pid=1, heartbeat_at=now - 1000)
    write_claim(d / "live.json", host="elsewhere", pid=1, heartbeat_at=now)
    write_claim(d / "alive_here.json", host=HOST, pid=os.getppid(), heartbeat_at=now)
    (d / "garbled.json").write_text("{not json")
    os.utime(d / "garbled.json", (now - 1000, now - 1000))
    for name in ("dead", "old", "garbled"):
        c = leases.claim(Store(tmp_path), "s", name, timeout=300)
        assert c is not None, name
        assert json.loads(c.path.read_text())["pid"] == os.getpid()
    for name in ("live", "alive_here"):
        assert leases.claim(Store(tmp_path), "s", name, timeout=300) is None, name
    # the old owner, if it comes back, finds its claim gone and stops refreshing it
    old = leases.Lease(Store(tmp_path), "s", "old", token="t")
    assert not leases.heartbeat(old)


def test_a_model_with_a_result_is_not_claimed(tmp_path):
    Store(tmp_path).write_result("s", {"model_id": "m", "space": "s", "status": "done"})
    assert leases.claim(Store(tmp_path), "s", "m") is None
    Store(tmp_path).write_result("s", {"model_id": "f", "space": "s", "status": "failed"})
    assert leases.claim(Store(tmp_path), "s", "f") is None
    assert leases.claim(Store(tmp_path), "s", "f", retry_failed=True) is not None


def test_status_counts_claims_in_flight_and_stale(tmp_path):
    ids = sample(tmp_path, 3)
    d = Store(tmp_path).claims_dir("regnetx")
    write_claim(d / f"{ids[0]}.json", host="elsewhere", pid=1, heartbeat_at=time.time())
    write_claim(d / f"{ids[1]}.json", host="elsewhere", pid=1, heartbeat_at=0)
    (row,) = pending.status(Store(tmp_path))
    assert (row["sampled"], row["pending"], row["in_flight"], row["stale_claims"]) == (3, 3, 1, 1)


@pytest.mark.slow  # default tier: worker processes share a store (test_cli_train), and tasks
def test_two_runs_on_one_store_train_disjoint_models(tmp_path):  # do (test_cluster)
    ids = sample(tmp_path, 6)
    args = ["--epochs", "1", "--train-subset", "1000"]
    a, b = dse_train(tmp_path, *args), dse_train(tmp_path, *args)
    out_a, out_b = a.communicate(timeout=600)[0], b.communicate(timeout=600)[0]
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    ta, tb = trained_ids(out_a), trained_ids(out_b)
    assert sorted(ta + tb) == sorted(ids)  # every model once, none twice
    res = Store(tmp_path).read_results("regnetx")
    assert sorted(res["model_id"]) == sorted(ids) and (res["status"] == "done").all()
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))


def train_until_first_result(tmp_path, results):
    """Start `dse train` (2 epochs on 1000 images) and return once a result file exists."""
    p = dse_train(tmp_path, "--epochs", "2", "--train-subset", "1000")
    deadline = time.time() + 300
    while not (results.is_dir() and list(results.glob("*.parquet"))):
        assert p.poll() is None and time.time() < deadline, p.stdout.read()
        time.sleep(0.2)
    return p


def test_kill_9_loses_only_the_model_in_flight_and_a_rerun_trains_the_rest(tmp_path):
    ids = sample(tmp_path, 4)
    results = Store(tmp_path).results_dir("regnetx")
    p = train_until_first_result(tmp_path, results)
    time.sleep(0.5)  # now inside the next model
    p.kill()
    p.wait()
    p.stdout.close()
    before = {f.name: f.read_bytes() for f in results.glob("*.parquet")}
    assert 1 <= len(before) < 4
    held = list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))
    assert len(held) == 1  # the model in flight, held by a dead process
    (row,) = pending.status(Store(tmp_path))
    assert row["pending"] == 4 - len(before) and row["stale_claims"] == 1

    r = dse_train(tmp_path, "--epochs", "2", "--train-subset", "1000")
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    again = trained_ids(out)
    def model(name):  # the model of a per-trial result file
        return parse_trial(Path(name).stem)[0]

    assert sorted(again) == sorted(set(ids) - {model(n) for n in before})
    res = pd.read_parquet(results)  # the per-model files, folded into a segment at the end
    for name, data in before.items():  # finished models were not trained again
        old = pd.read_parquet(io.BytesIO(data))
        assert (res.set_index("model_id").loc[model(name), "finished_at"]
                == old["finished_at"][0])
    assert sorted(res["model_id"]) == sorted(ids) and (res["status"] == "done").all()
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))


@pytest.mark.parametrize("n", [1, 2])
def test_max_models_stops_after_k(tmp_path, n):
    sample(tmp_path, 3)
    r = CliRunner().invoke(cli, ["train", "--store", str(tmp_path), "--space", "rx",
                                 "--epochs", "1", "--train-subset", "500", "--max-models", str(n)])
    assert r.exit_code == 0, r.output
    assert len(Store(tmp_path).read_results("regnetx")) == n
    assert f"trained {n} of {n} pending models" in r.output


@pytest.mark.slow  # a worker replaced: tests/test_faults.py in the default tier
def test_a_worker_killed_mid_model_fails_that_model_and_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from dse.runner.jobs import Epoch, Finished
    from dse.runner.options import TrainOptions
    from dse.train.recipe import Recipe

    sample(tmp_path, 2)
    options = TrainOptions(recipe=Recipe(epochs=5, train_subset=1000), channels_last=False)
    jobs = pending.jobs_of(Store(tmp_path), "regnetx", options=options)  # a job has its recipe
    with processes.Processes(["cpu"], options) as ex:
        ex.submit(jobs[0])
        events = []
        while not any(isinstance(e, Epoch) for e in events):  # it is training
            events += ex.events(timeout=1.0)
        ex.slots[0].process.kill()
        deadline = time.time() + 60
        while not any(isinstance(e, Finished) for e in events) and time.time() < deadline:
            events += ex.events(timeout=1.0)
        (res,) = [e for e in events if isinstance(e, Finished)]
        assert res.key == jobs[0].key and res.outcome.status == "failed"
        assert res.outcome.message == "worker process died (exit code -9)"
        deadline = time.time() + 30  # a fresh worker takes its place after a back-off
        while not ex.free() and time.time() < deadline:
            events += ex.events(timeout=0.5)
        assert ex.free() and ex.slots[0].process.is_alive() and ex.slots[0].failures == 1
        ex.submit(jobs[1])
        done, deadline = [], time.time() + 300
        while not any(isinstance(e, Finished) for e in done) and time.time() < deadline:
            done += ex.events(timeout=1.0)
        assert [e.outcome.status for e in done if isinstance(e, Finished)] == ["done"]


def test_workers_per_device():
    import torch

    assert workers.devices_for("cpu", 3) == ["cpu"] * 3
    if not torch.cuda.is_available():
        assert workers.devices_for("auto", 2) == ["cpu", "cpu"]
    else:  # every GPU gets its own workers
        n = torch.cuda.device_count()
        assert workers.devices_for("cuda", 2) == [f"cuda:{i}" for i in range(n) for _ in "ab"]
        assert workers.devices_for("cuda:0", 1) == ["cuda:0"]
    assert workers.describe(["cuda:0", "cuda:0", "cuda:1"]) == \
        "3 workers (2 × cuda:0, cuda:1)"


@pytest.mark.slow  # default tier: a cancelled cluster task gives its claims back (test_cluster)
def test_sigterm_gives_the_claims_back(tmp_path):
    import signal

    sample(tmp_path, 3)
    results = Store(tmp_path).results_dir("regnetx")
    p = train_until_first_result(tmp_path, results)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 128 + signal.SIGTERM
    p.stdout.close()
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))
    (row,) = pending.status(Store(tmp_path))
    assert row["pending"] == 3 - len(list(results.glob("*.parquet"))) > 0
    assert row["in_flight"] == row["stale_claims"] == 0
