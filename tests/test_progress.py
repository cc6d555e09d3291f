"""The first minutes of `dse train`: the plan (work and ETA) before the first claim, from a
calibration or the store's measured speed; the warning with its levers; `--dry-run`;
progress that moves within an epoch, on a terminal (the bar) and off one (log lines); worker
processes that calibrate and report their steps."""

import dataclasses
import io
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import ok, one_error, run, sampled

from dse.data import datasets, readers
from dse.data.device import DeviceData
from dse.runner import pending, plan, progress
from dse.runner.jobs import AtStep, Finished
from dse.runner.options import TrainOptions
from dse.runner.processes import Processes
from dse.space.spec import AnyNetSpec
from dse.store.core import Store
from dse.train import trainer
from dse.train.recipe import Recipe
from dse.train.step import Stepper
from dse.units import eta, mult_adds

ETA_LINE = (r"ETA \d+(\.\d)? (s|min|h) \(training \d+ (s|min), test passes \d+ (s|min)\) at "
            r"[\d.]+ G multiply-adds/s per trainer × 1 trainer, calibrated on \d+ steps of "
            r"(?P<n>\d) pending models? \(not counted as training\)")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One thread per trainer, here and in workers (2 threads on 2 busy shared cores can be
    10× slower than 1)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(trainer, "CALIBRATE_S", 0.2)  # in this process; workers take 2 s
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


sample = sampled


def files(root) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_the_plan_and_its_eta_come_before_the_first_result(tmp_path):
    models = sample(tmp_path, 2)
    lines = ok("train", "--store", tmp_path, "--epochs", 1, "--train-subset", 1000
               ).output.splitlines()
    cost = 3 * models["flops"].sum() * 1000 * 1
    assert lines[2] == (f"plan: 2 models × 1 epoch × 1,000 images = {mult_adds(cost)} "
                        "multiply-adds (3 × flops × images × epochs), and 2 test passes of "
                        f"2,000 images = {mult_adds(models['flops'].sum() * 2000)} (flops × "
                        "images)")
    calibrated = re.fullmatch(ETA_LINE, lines[3])
    assert calibrated, lines[3]
    assert calibrated["n"] == "2"  # both (up to 3 are timed)
    assert [ln[:5] for ln in lines[4:] if ln.startswith("[")] == ["[1/2]", "[2/2]"]

    # trained once: the next run's speed is the store's, measured on this host
    new = sample(tmp_path, 2).query("model_id not in @models.model_id")
    before = files(tmp_path)
    out = ok("train", "--store", tmp_path, "--epochs", 1, "--train-subset", 1000,
             "--dry-run").output
    assert files(tmp_path) == before  # nothing claimed, trained or written
    res = Store(tmp_path).read_results("regnetx").merge(models[["model_id", "flops"]])
    rate = (3 * res["flops"] * 1000).sum() / res["train_seconds"].sum()  # their time, summed
    train_s = 3 * new.flops.sum() * 1000 / rate
    test_s = new.flops.sum() * 2000 * plan.EVAL_SLOWDOWN / rate  # a test pass: its forward
    assert out.splitlines() == [
        "dry run: 2 models to train on 1 worker (cpu); nothing is claimed or trained",
        "synthetic: 10000 training images (using 1000), 2000 test images, from generated "
        "(seed 0)",
        f"plan: 2 models × 1 epoch × 1,000 images = {mult_adds(3 * new.flops.sum() * 1000)} "
        "multiply-adds (3 × flops × images × epochs), and 2 test passes of 2,000 images = "
        f"{mult_adds(new.flops.sum() * 2000)} (flops × images)",
        f"ETA {eta(train_s + test_s)} (training {eta(train_s)}, test passes {eta(test_s)}) "
        f"at {rate / 1e9:.3g} G multiply-adds/s per trainer × 1 trainer, measured: 2 "
        "trainings this store ran on this host's cpu"]


def test_dry_run_creates_nothing_and_plans_runs_here_only(tmp_path):
    sample(tmp_path, 2)
    before = files(tmp_path)
    out = ok("train", "--store", tmp_path, "--epochs", 1, "--train-subset", 1000,
             "--dry-run").output
    assert files(tmp_path) == before
    assert re.fullmatch(ETA_LINE, out.splitlines()[3])
    assert not [ln for ln in out.splitlines() if ln.startswith(("[", "trained "))]
    assert "--dry-run plans a run on this machine" in one_error(
        run("train", "--store", tmp_path, "--dry-run", "--cluster", "local"))
    assert files(tmp_path) == before


def test_off_a_terminal_a_long_epoch_logs_its_progress(tmp_path, monkeypatch):
    """A slowed trainer (≥ 50 ms a step, 20 steps in the epoch) reports its steps every
    50 ms and the log says where it is every 0.3 s, before the model's result."""
    sample(tmp_path, 1)
    monkeypatch.setattr(trainer, "STEP_REPORT_S", 0.05)
    monkeypatch.setattr(trainer, "CALIBRATE_S", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.3)
    advance = Stepper.advance

    def slow(self, x, y):
        time.sleep(0.05)
        advance(self, x, y)

    monkeypatch.setattr(Stepper, "advance", slow)
    lines = ok("train", "--store", tmp_path, "--epochs", 1, "--train-subset", 2560
               ).output.splitlines()
    end = next(i for i, ln in enumerate(lines) if ln.startswith("[1/1]"))
    said = [ln for ln in lines[:end] if ln.startswith("progress: ")]
    assert len(said) >= 2, lines
    at = []
    for ln in said:
        m = re.fullmatch(r"progress: 0/1 models, 1 in flight \(regnetx/[0-9a-f]{16} epoch 1/1 "
                         r"step (\d+)/20\); ([\d.]+)% of the work in [\dhm]+s; ETA \d+ (s|min)", ln)
        assert m, ln
        at.append(int(m[1]))
        assert float(m[2]) == pytest.approx(100 * int(m[1]) / 20, abs=0.05)
    assert at == sorted(at) and 0 < at[0] and at[0] < 20


def test_the_trainer_counts_its_steps_and_calibrates_past_its_schedule():
    tiny = AnyNetSpec((1, 1, 2, 1), (8, 16, 32, 64), (1, 1, 1, 1), (8, 8, 8, 8), stem_w=16)
    syn, task = DeviceData(readers.synthetic(), "cpu", 512), datasets.task("synthetic")
    heard = []
    out = trainer.train(tiny, task, syn, Recipe(epochs=2, train_subset=512),
                        on_step=lambda *a: heard.append(a), step_report_s=0.0)
    assert out.status == "done"
    assert heard == [(e, k, 4) for e in (1, 2) for k in range(1, 5)]  # 0 s: every step
    # 2 untimed steps and 3 timed ones: more than the 4 steps of a 1-epoch schedule
    ips, steps = trainer.calibrate(tiny, task, syn, Recipe(epochs=1, train_subset=512),
                                   seconds=0.0)
    assert steps == trainer.CALIBRATE_STEPS == 3 and ips > 0


def test_calibration_times_a_few_models_across_the_run_and_averages_their_time(monkeypatch):
    jobs = [SimpleNamespace(key=f"s/{k}", flops=f) for k, f in enumerate([5, 1, 4, 2, 6, 3])]
    assert [j.flops for j in plan.probes(jobs)] == [2, 4, 6]  # at 1/6, 3/6, 5/6 by flops
    assert [j.flops for j in plan.probes(jobs[:2])] == [1, 5]
    speed = {2: 100.0, 4: 100.0, 6: None}  # images/s; the largest cannot train
    timed = []

    class Executor:
        def calibrate(self, job):
            timed.append(job.flops)
            ips = speed[job.flops]
            return SimpleNamespace(images_per_second=ips, steps=3 if ips else 0,
                                   message="" if ips else "OutOfMemoryError: …")

    rate, source = plan.calibrated_rate(Executor(), plan.probes(jobs))
    # 3·2·100 = 600 and 3·4·100 = 1200 multiply-adds/s: their harmonic mean is 800
    assert rate == pytest.approx(800) and timed == [2, 4, 6]
    assert source == "calibrated on 6 steps of 2 pending models (not counted as training)"
    speed[2] = speed[4] = None
    assert plan.calibrated_rate(Executor(), plan.probes(jobs)) == (
        None, "its calibration on s/3 failed: OutOfMemoryError: …")
    clock = SimpleNamespace(t=0.0)
    monkeypatch.setattr(plan.time, "monotonic", lambda: clock.t)

    class Slow(Executor):
        def calibrate(self, job):
            clock.t += plan.CALIBRATE_BUDGET_S + 1  # a step takes long: one model is enough
            return SimpleNamespace(images_per_second=100.0, steps=3, message="")

    timed.clear()
    assert plan.calibrated_rate(Slow(), plan.probes(jobs))[1] == (
        "calibrated on 3 steps of 1 pending model (not counted as training)")


def test_the_plan_counts_each_jobs_epochs_its_test_passes_and_the_trainers_start():
    """A run's time beside its steps: the test passes (after every epoch with curves) and,
    for worker processes that have not started, their start and the data; each job trains
    its own epochs (a recipe that draws them: the run's recipe says 10, its jobs 1–3, which
    the plan read as 10 each, 3.3× too long); workers calibrate side by side, as they will
    train."""
    ref = "synthetic"
    jobs = [SimpleNamespace(key=f"s/{k}", flops=1e6, data=ref, recipe=Recipe(epochs=e))
            for k, e in enumerate([1, 2, 3])]
    groups = []

    class Workers:  # two worker processes: calibrate two jobs at once, 100 images/s each
        def calibrate(self, job):
            return self.calibrate_many([job])[0]

        def calibrate_many(self, group):
            groups.append([j.key for j in group])
            return [SimpleNamespace(images_per_second=100.0, steps=3, message="")] * len(group)

    options = TrainOptions(recipe=Recipe(epochs=10), curves=True, jobs=2, device="cpu")
    p = plan.estimate(SimpleNamespace(spaces=lambda: []), jobs, {ref: 1000}, options,
                      ["cpu", "cpu"], Workers(), tests={ref: 500}, data_s=2.0, processes=True)
    assert groups == [["s/0", "s/1"], ["s/2"]]  # 4 probes at most, 2 at a time: all 3 jobs
    assert p.cost == 3 * 1e6 * 1000 * (1 + 2 + 3) and p.tests == 1e6 * 500 * (1 + 2 + 3)
    assert p.rate == 3 * 1e6 * 100 and p.passes == 6 and (p.epochs, p.epochs_hi) == (1, 3)
    assert p.train_s == pytest.approx(18e9 / 6e8)  # 30 s on two trainers
    assert p.test_s == pytest.approx(3e9 * plan.EVAL_SLOWDOWN / 6e8)
    assert p.start_s == 0  # the calibration started the workers and read their data
    assert p.eta_s == pytest.approx(p.train_s + p.test_s)
    assert p.lines()[0] == ("plan: 3 models × 1–3 epochs × 1,000 images = 18 G multiply-adds "
                            "(3 × flops × images × epochs), and 6 test passes (after every "
                            "epoch: curves) of 500 images = 3 G (flops × images)")
    assert p.lines()[1].startswith("ETA 36 s (training 30 s, test passes 6 s) at 0.3 G "
                                   "multiply-adds/s per trainer × 2 trainers, calibrated on 9 "
                                   "steps of 3 pending models, 2 at a time")
    cold = plan.estimate(SimpleNamespace(spaces=lambda: []), jobs, {ref: 1000}, options,
                         ["cpu", "cpu"], None, tests={ref: 500}, data_s=2.0, processes=True)
    assert cold.rate is None and cold.start_s == plan.WORKER_START_S + 2.0
    known = dataclasses.replace(cold, rate=p.rate, source="measured")
    assert known.eta_s == pytest.approx(p.eta_s + plan.WORKER_START_S + 2.0)
    job = jobs[2]  # the bar's share of a job: its training and its test passes
    assert p.cost_of(job) == 3 * 1e6 * 1000 * 3 + plan.EVAL_SLOWDOWN * 1e6 * 500 * 3


def test_drawn_epochs_are_planned_at_their_mean_before_the_models_exist():
    """dse run --dry-run plans models not yet sampled: a drawn `epochs` counts its mean (the
    recipe's default 10 would make a draw among 2 and 4 look 3.3× as long)."""
    def mean(d):
        return plan.expected_epochs(TrainOptions(draws={"epochs": d}))

    assert plan.expected_epochs(TrainOptions(recipe=Recipe(epochs=4))) == 4.0
    assert mean({"dist": "choice", "values": [2, 4]}) == 3.0
    assert mean({"dist": "uniform", "low": 1, "high": 5}) == 3.0
    assert mean({"dist": "log_uniform", "low": 1, "high": 8}) == pytest.approx(7 / np.log(8))


def test_the_bar_moves_with_the_steps_and_the_eta_follows_the_run(monkeypatch):
    clock = SimpleNamespace(t=1000.0)
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock.t)
    ref = "synthetic"
    p = plan.Plan(2, 10, ((ref, 60_000),), 2 * 3 * 25e6 * 60_000 * 10, 3 * 25e6 * 400,
                  "calibrated", ("cpu",), TrainOptions())
    assert p.eta_s == pytest.approx(2 * 60_000 * 10 / 400)  # 50 min at 400 images/s
    out = io.StringIO()
    bar = progress.Progress(stream=out, tty=True, epochs=10)
    bar.start(2, "1 worker (cpu)")
    bar.plan(p)
    assert out.getvalue().split("\n")[1:3] == p.lines()
    assert "Warning" not in out.getvalue()  # under an hour
    job = SimpleNamespace(key="regnetx/1a2b3c4d5e6f7a8b", model_id="1a2b3c4d5e6f7a8b",
                          space="regnetx", flops=25e6, data=ref)
    bar.begin(job)
    assert out.getvalue().rstrip().endswith("0/2 models, 1 in flight (1a2b3c4d epoch 1/10) "
                                            "· 0.0% · ETA 50 min")
    clock.t += 600  # 10 min, in which the run did 12.5% (not the plan's 20%): 70 min left
    bar.step(job, 3, 234, 468)
    assert out.getvalue().rstrip().endswith("0/2 models, 1 in flight (1a2b3c4d epoch 3/10 "
                                            "step 234/468) · 12.5% · ETA 1.2 h")
    assert re.match(r"\[(█|#){3} {21}\]", out.getvalue().rsplit("\r", 1)[1])  # 3 of 24 cells


def test_the_warning_names_the_levers_that_fit(monkeypatch):
    monkeypatch.setattr(plan, "cpu_cores", lambda: 2)

    def plan_of(hours, workers=("cpu",), **recipe):
        options = TrainOptions(recipe=Recipe(**recipe), jobs=len(workers))
        return plan.Plan(100, options.recipe.epochs, (("fashion-mnist", 60_000),), 1.0,
                         1 / (hours * 3600 * len(workers)), "calibrated", workers, options)

    p = plan_of(40)
    assert p.warning(3600) == (
        "Warning: about 40.0 h of training; to shorten it: --train-subset 6000 (4.0 h), "
        "--epochs 2 (8.0 h), --max-models 2 (about 1.0 h; rerun for the rest), --jobs 2 (one "
        "trainer per core), a GPU (--device cuda), a cluster (--cluster slurm --tasks 40)")
    assert p.warning(41 * 3600) is None and p.warning(None) is None
    assert plan_of(0.9).warning(3600) is None
    assert plan_of(2, train_subset=6000, epochs=2).warning(3600) == (
        "Warning: about 2.0 h of training; to shorten it: --max-models 50 (about 1.0 h; rerun "
        "for the rest), --jobs 2 (one trainer per core), a GPU (--device cuda), a cluster "
        "(--cluster slurm --tasks 2)")
    assert plan_of(3, workers=("cuda:0",)).warning(3600, command="run") == (
        "Warning: about 3.0 h of training; to shorten it: --set train.train_subset=6000 "
        "(18 min), --set train.epochs=2 (36 min), --set train.jobs=4 (several models per GPU)")
    gpus = plan_of(3, workers=("cuda:0", "cuda:0"), train_subset=6000, epochs=2)
    assert gpus.warning(3600, command="run") == "Warning: about 3.0 h of training"
    unknown = plan.Plan(1, 1, (("x", 10),), 1.0, None, "why", ("cpu",), TrainOptions())
    assert unknown.eta_s is None and unknown.warning(0.001) is None
    assert unknown.lines()[1] == "ETA unknown: why"


@pytest.mark.slow  # the in-process calibration and progress in the default tier
def test_worker_processes_calibrate_and_report_their_steps(tmp_path):
    sample(tmp_path, 1)
    options = TrainOptions(recipe=Recipe(epochs=1, train_subset=1280), device="cpu",
                           step_report_s=0.01)
    (job,) = pending.jobs_of(Store(tmp_path), "regnetx", options=options)  # with its recipe
    events = []
    with Processes(["cpu"], options) as ex:
        got = ex.calibrate(job)
        assert got.key == job.key and got.images_per_second > 0 and got.steps >= 3, got
        ex.submit(job)
        while not any(isinstance(e, Finished) for e in events):
            events += ex.events(1.0)
    steps = [e for e in events if isinstance(e, AtStep)]
    assert steps, events  # a step takes longer than 10 ms
    assert all(e.key == job.key and e.epoch == 1 and 0 < e.step <= 10 and e.steps == 10
               for e in steps)
    assert [e.step for e in steps] == sorted({e.step for e in steps})
    assert events[-1].outcome.status == "done"


def test_the_readme_shows_the_first_minutes_as_dse_prints_them(tmp_path, monkeypatch):
    """The README's first run, checked without training: its plan is the plan of the 100
    models that `dse sample` draws, its ETA follows from the speed it shows, its warning is
    the one that ETA gets, and its bar is the bar's format on the first (largest) model."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    shown = readme.split("```\ntraining 100 models on 1 worker (cpu)\n", 1)[1]
    shown = shown.split("\n```", 1)[0].splitlines()
    ok("sample", "--space", "rx", "--n", 100, "--dataset", "fashion-mnist", "--store", tmp_path)
    models = Store(tmp_path).read_models("regnetx").sort_values("flops")
    images = datasets.get("fashion-mnist").train_size
    cost = 3 * models["flops"].sum() * images * 10
    tests = models["flops"].sum() * 10_000
    assert shown[1] == (f"plan: 100 models × 10 epochs × {images:,} images = {mult_adds(cost)} "
                        "multiply-adds (3 × flops × images × epochs), and 100 test passes of "
                        f"10,000 images = {mult_adds(tests)} (flops × images)")
    m = re.fullmatch(r"ETA ([\d.]+) h \(training ([\d.]+) h, test passes (\d+) min\) at "
                     r"([\d.]+) G multiply-adds/s per trainer × 1 trainer, calibrated on \d+ "
                     r"steps of [123] pending models? \(not counted as training\)", shown[2])
    assert m, shown[2]
    rate = float(m[4]) * 1e9
    assert float(m[2]) == pytest.approx(cost / rate / 3600, abs=0.05)
    assert float(m[3]) == pytest.approx(tests * plan.EVAL_SLOWDOWN / rate / 60, abs=0.5)
    assert float(m[1]) == pytest.approx((cost + tests * plan.EVAL_SLOWDOWN) / rate / 3600,
                                        abs=0.05)
    monkeypatch.setattr(plan, "cpu_cores", lambda: 2)
    p = plan.Plan(100, 10, (("fashion-mnist", images),), cost, rate, "", ("cpu",),
                  TrainOptions(), tests=tests)
    assert shown[3] == p.warning(3600)
    bar = re.fullmatch(r"\[[█▏▎▍▌▋▊▉ ]{24}\] 0/100 models, 1 in flight \((\w{8}) epoch 1/10 step "
                       r"(\d+)/468\) · ([\d.]+)% · ETA [\d.]+ h", shown[-1])
    assert bar, shown[-1]
    assert bar[1] == models["model_id"].iloc[-1][:8]  # the largest trains first
    share = int(bar[2]) / 468 / 10 * models["flops"].iloc[-1] / models["flops"].sum()
    assert float(bar[3]) == pytest.approx(100 * share, abs=0.05)


def test_each_run_records_its_prediction_and_dse_status_shows_it_beside_its_time(tmp_path):
    """A run's record (<store>/runs/): the plan's time (what was spent before it was said, and
    its ETA) when it starts, its time when it ends; a run whose process died is shown killed."""
    from dse.runner import runs

    sample(tmp_path, 1)
    store = Store(tmp_path)
    options = TrainOptions(recipe=Recipe(epochs=2, train_subset=300), top=3, curves=True)
    p = plan.Plan(3, 2, (("synthetic", 300),), 3e9, 1e8, "measured", ("cpu",), options,
                  spent_s=4.0)
    rec = runs.start(store, p, ["regnetx"], options)
    assert rec["predicted_s"] == pytest.approx(4.0 + 30.0) and rec["status"] == "running"
    runs.finish(store, rec, 3, 51.0, "done")
    dead = dict(rec, name="dead", pid=2 ** 22 + 12345, started_at="2026-12-07T23:59:59Z")
    store.write_run("dead", dead)  # a kill -9 leaves "running" behind
    (done, killed) = runs.rows(store)
    assert (done["status"], done["actual_s"], done["trained"]) == ("done", 51.0, 3)
    assert done["ratio"] == pytest.approx(51 / 34) and killed["status"] == "killed"
    assert done["what"] == ("epochs=2 batch_size=128 lr=0.05 wd=5e-05 train_subset=300 top 3 "
                            "curves")
    out = ok("status", "--store", tmp_path).output
    assert "training runs (predicted: the plan's time when the run started; actual: what it " \
           "took):" in out
    row = next(ln for ln in out.splitlines() if "top 3 curves" in ln and "done" in ln)
    assert re.search(r"3/3\s+34 s\s+51s\s+1\.50\s+done$", row), row
    assert json.loads(ok("status", "--store", tmp_path, "--runs", "--json").output)[1][
        "status"] == "killed"
