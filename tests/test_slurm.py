"""`dse train --cluster slurm` against a real Slurm: the one-node cluster that
tests/slurm/start.sh starts on this machine (slurmctld, slurmd, munge). Skipped, with the
reason, when it is not running; when it is, a failure fails."""

import os
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import ok
from test_cluster import FAST, finished_lines, sample, the_job, wait_for_claim

from dse.runner import cluster
from dse.store.core import Store

pytestmark = pytest.mark.slurm
CONF = Path(os.environ.get("DSE_SLURM_DIR", "/tmp/dse-slurm")) / "slurm.conf"


def _slurm_up() -> str:
    """Why the test Slurm cannot be used, or '' when it can."""
    if "SLURM_CONF" not in os.environ and not CONF.is_file():
        return f"no test Slurm ({CONF} absent): start one with tests/slurm/start.sh"
    env = {"SLURM_CONF": str(CONF), **os.environ}
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             env=env, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed ({e}): start Slurm with tests/slurm/start.sh"
    if out.returncode or not {"idle", "mixed", "allocated"} & set(out.stdout.split()):
        return f"Slurm is not up (sinfo: {(out.stderr or out.stdout).strip()[:200]})"
    return ""


@pytest.fixture(autouse=True)
def slurm(monkeypatch):
    why = _slurm_up()
    if why:
        pytest.skip(why)
    monkeypatch.setenv("SLURM_CONF", os.environ.get("SLURM_CONF", str(CONF)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow  # default tier: local tasks of one array (test_cluster), Slurm's queue here
def test_an_array_of_two_tasks_trains_the_store(tmp_path):
    ids = sample(tmp_path, 4)
    r = ok("train", "--store", tmp_path, *FAST, "--cluster", "slurm", "--tasks", 2,
           "--time-min", 10, "--wait")
    assert "2 tasks on slurm (job " in r.output and "4/4 models trained" in r.output
    rec = the_job(tmp_path)
    array = rec.job_ids[0].split("_")[0]
    assert rec.job_ids == [f"{array}_0", f"{array}_1"]
    assert [t.state for t in rec.task_states] == ["done", "done"]
    assert sorted(finished_lines(tmp_path)) == sorted(ids)  # every model once
    res = Store(tmp_path).read_results("regnetx")
    assert set(res["model_id"]) == ids and set(res["status"]) == {"done"}
    sbatch = next(Path(rec.log_dir).glob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in sbatch and "#SBATCH --signal=USR2@" in sbatch


def test_pending_tasks_show_in_status_and_are_cancelled(tmp_path):
    sample(tmp_path, 1)
    ok("train", "--store", tmp_path, "--cluster", "slurm", "--tasks", 2,
       "--slurm-arg", "begin=now+1hour")
    rec = the_job(tmp_path)
    assert [t.state for t in rec.task_states] == ["pending", "pending"]
    assert "2 pending" in ok("status", "--store", tmp_path).output
    out = ok("cancel", "--store", tmp_path).output
    assert out.count(f"cancelled {rec.name} job ") == 2
    assert [t.state for t in the_job(tmp_path).task_states] == ["cancelled"] * 2
    queue = subprocess.run(["squeue", "-h", "-j", rec.job_ids[0].split("_")[0]],
                           capture_output=True, text=True).stdout
    assert " PD " not in queue and " R " not in queue


@pytest.mark.slow  # Slurm holds a requeued job about two minutes before it starts again
def test_a_preempted_task_requeues_through_slurm(tmp_path):
    import submitit

    ids = sample(tmp_path, 3)
    ok("train", "--store", tmp_path, *FAST, "--cluster", "slurm", "--time-min", 10)
    victim = wait_for_claim(tmp_path)
    rec = the_job(tmp_path)
    submitit.SlurmJob(rec.log_dir, rec.job_ids[0])._interrupt()  # SIGTERM, then USR2
    t0 = time.time()
    (task,) = cluster.follow(tmp_path, rec.name, lambda line: None, poll=2.0)
    assert task.state == "done", (task, time.time() - t0)
    mine = the_job(tmp_path).task_records[0]
    assert mine["requeues"] == 1 and mine["done"] == 3 and victim["model_id"] in ids
    assert set(Store(tmp_path).read_results("regnetx")["model_id"]) == ids
