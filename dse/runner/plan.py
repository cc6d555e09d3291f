"""What a run will cost, said before it starts (pure: no torch; a calibration runs in the
executor): models × epochs × images, the multiply-adds (3 × flops × images × epochs: forward
and backward), the test passes (flops × test images, once per model and after every epoch
with curves), and an ETA from the speed of a trainer, measured on this store's results or
calibrated on a few steps of a few pending models on every trainer at once, plus what each
trainer spends before its first model (its start and the data). When the ETA is long, the
levers that shorten it.

    plan = estimate(store, jobs, images, options, workers, executor)
    print(*plan.lines(), plan.warning(3600) or "", sep="\n")
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dse.data import datasets
from dse.errors import DseError
from dse.runner.jobs import Job
from dse.runner.options import WARN_AFTER_S, TrainOptions
from dse.store.core import Store
from dse.store.status import Status
from dse.system import HOST, cpu_cores
from dse.units import eta, mult_adds

CALIBRATE_MODELS = 3        # jobs timed for the plan's speed when the store has none
CALIBRATE_BUDGET_S = 20.0   # no further job is timed after this long (slow steps)
# A test pass (dse.train.trainer.evaluate: batches of 1,000, no gradients) runs its forward
# multiply-adds (flops × test images) at about the speed training runs its own: 1.01–1.22×
# the time on three dds-cpu models (bench/plan_parts.py, bench/RESULTS.md).
EVAL_SLOWDOWN = 1.1
WORKER_START_S = 7.0        # a worker process's start: a fresh Python importing torch and
#                             dse's trainer (6.7 s on the 2-core CPU, bench/plan_parts.py)


def training_mult_adds(flops, images, epochs):
    """Multiply-adds of training a model of `flops` on `images` for `epochs`: 3 × flops ×
    images × epochs (the forward pass, and the backward pass at about twice its cost);
    arrays in, arrays out."""
    return 3.0 * flops * images * epochs


def test_mult_adds(flops, tests, epochs, curves: bool):
    """Multiply-adds of a model's test passes: flops × test images, once at the end, and
    after every earlier epoch with curves."""
    return flops * tests * (epochs if curves else 1)


def expected_epochs(options: TrainOptions) -> float:
    """The epochs a model of this run trains on average: the recipe's, or the mean of their
    distribution when they are drawn per model (docs/trials.md)."""
    d = options.draws.get("epochs")
    if d is None:
        return float(options.recipe.epochs)
    if d["dist"] == "choice":
        return float(np.mean(d["values"]))
    lo, hi = float(d["low"]), float(d["high"])
    if d["dist"] == "log_uniform" and hi > lo:
        return (hi - lo) / math.log(hi / lo)
    return (lo + hi) / 2


# ---- the store's measured speed ---------------------------------------------------------------

def measured(store: Store, kind: str | None = None, host: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(multiply-adds, train seconds) of each finished training of the store, every recipe
    and seed (3 × flops × images × epochs run); only those trained on a `kind` of device
    ('cpu' or 'cuda') and on `host`, when given."""
    work, secs = [], []
    for s in store.spaces():
        try:
            res = store.read_results(s)
            flops = store.read_models(s, ["model_id", "flops"])
        except DseError:
            continue
        done = res[(res["status"] == Status.DONE) & (res["train_seconds"] > 0)]
        if kind is not None:
            on_cpu = done["device"].fillna("").str.startswith("cpu")
            done = done[on_cpu if kind == "cpu" else ~on_cpu]
        if host is not None:
            done = done[done["host"] == host]
        done = done.merge(flops, on="model_id")
        if done.empty:
            continue
        size = datasets.get(done["dataset"].iloc[0]).train_size or 0
        images = done["train_subset"].fillna(size).to_numpy(dtype=float)
        epochs = done["epochs_run"].fillna(done["epochs"]).to_numpy(dtype=float)
        work.append(training_mult_adds(done["flops"].to_numpy(dtype=float), images, epochs))
        # a fused trial's seconds are its network's, which trained `fused` trials at once
        copies = (done["fused"].fillna(1).to_numpy(dtype=float) if "fused" in done
                  else np.ones(len(done)))
        secs.append(done["train_seconds"].to_numpy(dtype=float) / copies)
    work = np.concatenate(work) if work else np.array([])
    secs = np.concatenate(secs) if secs else np.array([])
    ok = np.isfinite(work / np.where(secs > 0, secs, np.nan)) & (work > 0)
    return work[ok], secs[ok]


def rate_of(work: np.ndarray, secs: np.ndarray) -> float | None:
    """Multiply-adds per second per trainer of these trainings (measured's): all their
    multiply-adds over all their seconds, as a run's time is the sum of its models' (their
    median speed, used before, read a store with a few slow models, such as small group
    widths, as 4–33% faster than it trained: bench/plan_accuracy.py); None for none."""
    return float(work.sum() / secs.sum()) if len(work) else None


def measured_rate(store: Store, kind: str | None = None, host: str | None = None
                  ) -> float | None:
    """The store's training speed (rate_of its measured trainings); None before any."""
    return rate_of(*measured(store, kind, host))


# ---- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """A run's work and speed. cost: multiply-adds of training every model (3 × flops ×
    images × epochs); tests: those of their test passes (flops × test images × passes);
    rate: multiply-adds per second of one trainer (None: unknown, `source` says why);
    workers: the run's trainers (device names); tasks: runs sharing the models (the tasks of
    a cluster array); start_s: seconds each trainer spends before its first model (a worker
    process's start, reading the data); spent_s: seconds spent before the plan was said
    (reading the data, the calibration), part of the run's time but not of its ETA."""

    models: int
    epochs: int
    images: tuple            # ((DataRef, training images per epoch), ...)
    cost: float
    rate: float | None
    source: str              # where the rate comes from, or why there is none
    workers: tuple
    options: TrainOptions
    tasks: int = 1
    tests: float = 0.0
    start_s: float = 0.0
    spent_s: float = 0.0
    epochs_hi: int | None = None   # the most epochs of a job, when jobs differ (drawn epochs)
    test_images: tuple = ()        # ((DataRef, test images), ...)
    passes: int = 0                # test passes of all jobs

    @property
    def train_s(self) -> float | None:
        """Seconds of training steps, on every trainer of every task at once."""
        return self.cost / (self.rate * len(self.workers) * self.tasks) if self.rate else None

    @property
    def test_s(self) -> float | None:
        """Seconds of test passes, on every trainer of every task at once."""
        return (self.tests * EVAL_SLOWDOWN / (self.rate * len(self.workers) * self.tasks)
                if self.rate else None)

    @property
    def eta_s(self) -> float | None:
        """Seconds the run takes from now: the trainers' start, training and test passes."""
        return None if self.rate is None else self.start_s + self.train_s + self.test_s

    @property
    def work(self) -> float:
        """The run's work in training multiply-adds: its training and its test passes at the
        time they take."""
        return self.cost + self.tests * EVAL_SLOWDOWN

    def cost_of(self, job: Job) -> float:
        """Multiply-adds of training one job (its own epochs), with its test passes at the
        time they take."""
        recipe = getattr(job, "recipe", None)
        epochs = self.epochs if recipe is None else recipe.epochs
        return training_mult_adds(job.flops, dict(self.images)[job.data], epochs) \
            + EVAL_SLOWDOWN * test_mult_adds(job.flops, dict(self.test_images).get(job.data, 0),
                                             epochs, self.options.curves)

    def lines(self) -> list[str]:
        """The plan as two lines: the work, then the ETA, its parts and where its speed comes
        from."""
        n = sorted({k for _, k in self.images})
        images = f"{n[0]:,}" if len(n) == 1 else f"{n[0]:,}–{n[-1]:,}"
        ep = self.epochs if not self.epochs_hi or self.epochs_hi == self.epochs else \
            f"{self.epochs}–{self.epochs_hi}"
        work = (f"plan: {self.models} model{'s' * (self.models != 1)} × {ep} "
                f"epoch{'s' * (ep != 1)} × {images} images = {mult_adds(self.cost)} "
                "multiply-adds (3 × flops × images × epochs)")
        if self.tests:
            t = sorted({k for _, k in self.test_images if k})
            when = " (after every epoch: curves)" if self.options.curves else ""
            work += (f", and {self.passes} test pass{'es' * (self.passes != 1)}{when} of "
                     f"{t[0]:,}{f'–{t[-1]:,}' if t[-1] != t[0] else ''} images = "
                     f"{mult_adds(self.tests)} (flops × images)")
        if self.rate is None:
            return [work, f"ETA unknown: {self.source}"]
        k = len(self.workers)
        parts = [f"training {eta(self.train_s)}"]
        if self.tests:
            parts.append(f"test passes {eta(self.test_s)}")
        if self.start_s:
            parts.append(f"trainers' start and data {eta(self.start_s)}")
        return [work, f"ETA {eta(self.eta_s)} ({', '.join(parts)}) at "
                f"{self.rate / 1e9:.3g} G multiply-adds/s per "
                f"trainer × {k} trainer{'s' * (k != 1)}"
                + (f" × {self.tasks} tasks" if self.tasks > 1 else "") + f", {self.source}"]

    def to_json(self) -> dict:
        """The prediction as recorded (dse.runner.runs): models, work and seconds."""
        return dict(models=self.models, epochs=self.epochs, cost=self.cost, tests=self.tests,
                    rate=self.rate, source=self.source, workers=len(self.workers),
                    tasks=self.tasks, train_s=self.train_s, test_s=self.test_s,
                    start_s=self.start_s, spent_s=self.spent_s, eta_s=self.eta_s,
                    curves=self.options.curves)

    def warning(self, after_s: float | None = WARN_AFTER_S, command: str = "train"
                ) -> str | None:
        """One line when the ETA exceeds `after_s`: how long, and the levers that shorten it,
        as options of `dse train` (command="train") or keys of `dse run` ("run")."""
        if after_s is None or self.eta_s is None or self.eta_s <= after_s:
            return None
        levers = self.levers(after_s, command)
        return (f"Warning: about {eta(self.eta_s)} of training"
                + (f"; to shorten it: {', '.join(levers)}" if levers else ""))

    def levers(self, after_s: float, command: str = "train") -> list[str]:
        """What shortens this run, with the ETA it would have where that is known."""
        flag = (lambda key, v: f"--{key.replace('_', '-')} {v}") if command == "train" else \
            (lambda key, v: f"--set train.{key}={v}")
        r, total, out = self.options.recipe, self.eta_s, []
        n = max(k for _, k in self.images)
        sub = int(float(f"{n / 10:.1g}"))  # a tenth, rounded: 60,000 → 6000
        if r.train_subset is None and r.batch_size <= sub < n:
            out.append(f"{flag('train_subset', sub)} ({eta(total * sub / n)})")
        if r.epochs > 2:
            out.append(f"{flag('epochs', 2)} ({eta(total * 2 / r.epochs)})")
        fit = math.floor(self.models * after_s / total)
        if command == "train" and 1 <= fit < self.models:
            out.append(f"--max-models {fit} (about {eta(after_s)}; rerun for the rest)")
        cpu, cores = self.workers[0] == "cpu", cpu_cores()
        if cpu and self.options.jobs < cores:
            out.append(f"{flag('jobs', cores)} (one trainer per core)")
        if not cpu and self.options.jobs == 1:
            out.append(f"{flag('jobs', 4)} (several models per GPU)")
        if cpu:
            out.append(f"a GPU ({flag('device', 'cuda')})")
        if command == "train" and self.tasks == 1:
            out.append(f"a cluster (--cluster slurm --tasks {math.ceil(total / after_s)})")
        return out


def probes(jobs: list[Job], k: int = CALIBRATE_MODELS) -> list[Job]:
    """Up to k of the jobs, spread over their range of flops (their widths, groups and depths
    vary as the run's do)."""
    jobs = sorted(jobs, key=lambda j: j.flops)
    if len(jobs) <= k:
        return jobs
    return [jobs[(2 * i + 1) * len(jobs) // (2 * k)] for i in range(k)]


def calibrated_rate(executor, jobs: list[Job], at_once: int = 1) -> tuple[float | None, str]:
    """Multiply-adds per second of a trainer, timed by `executor` on a few steps of each job,
    `at_once` jobs at a time (one per trainer: they share the machine as training will),
    until CALIBRATE_BUDGET_S have passed (nothing is kept): the harmonic mean of their
    speeds, as the run's time is the sum of its models'; and what it was measured on."""
    start, got = time.monotonic(), []
    many = getattr(executor, "calibrate_many", None)
    for i in range(0, len(jobs), at_once):
        if got and time.monotonic() - start > CALIBRATE_BUDGET_S:
            break
        group = jobs[i:i + at_once]
        answers = many(group) if many is not None and len(group) > 1 else \
            [executor.calibrate(j) for j in group]
        got += list(zip(group, answers))
    timed = [(j, c) for j, c in got if c.images_per_second]
    if not timed:
        job, c = got[0]
        return None, f"its calibration on {job.key} failed: {c.message}"
    rate = len(timed) / sum(1 / training_mult_adds(j.flops, c.images_per_second, 1)
                            for j, c in timed)
    together = f", {at_once} at a time" if at_once > 1 and many is not None else ""
    return rate, (f"calibrated on {sum(c.steps for _, c in timed)} steps of {len(timed)} "
                  f"pending model{'s' * (len(timed) != 1)}{together} (not counted as "
                  "training)")


def estimate(store: Store, jobs: list[Job], images: dict, options: TrainOptions,
             workers: list[str], executor=None, tasks: int = 1, tests: dict | None = None,
             data_s: float = 0.0, processes: bool | None = None) -> Plan:
    """The plan of training `jobs` (images: DataRef → training images per epoch; tests:
    DataRef → test images) on `workers`: the speed is this store's (measured_rate) on this
    host and kind of device, else calibrated by `executor` on a few steps of
    a few jobs, one per worker at a time (probes; not counted as training), else unknown.
    Each job counts its own epochs (a drawn recipe's), its test passes (after every epoch
    with options.curves). `data_s`: the seconds reading the data took here; `processes`
    (default: more than one worker): the trainers are worker processes, which each start and
    read the data before their first model."""
    t0 = time.monotonic()
    tests = tests or {}
    epochs = options.recipe.epochs
    cost = sum(training_mult_adds(j.flops, images[j.data], j.recipe.epochs) for j in jobs)
    test = sum(test_mult_adds(j.flops, tests.get(j.data, 0), j.recipe.epochs, options.curves)
               for j in jobs)
    spans = sorted({j.recipe.epochs for j in jobs}) or [epochs]
    kind = "cpu" if workers[0] == "cpu" else "cuda"
    work, secs = measured(store, kind, HOST)
    k = len(workers)
    if len(work):
        rate = rate_of(work, secs)
        source = (f"measured: {len(work)} training{'s' * (len(work) != 1)} this store ran on "
                  f"this host's {kind}")
    elif executor is not None and jobs:
        at_once = k if getattr(executor, "calibrate_many", None) else 1
        rate, source = calibrated_rate(executor, probes(jobs, at_once * math.ceil(
            CALIBRATE_MODELS / at_once)), at_once)
    else:
        rate, source = None, "no model of this store has trained on this host's " + kind
    processes = k > 1 if processes is None else processes
    start = (WORKER_START_S + data_s) if processes and jobs else 0.0
    spent = time.monotonic() - t0 + data_s
    if processes and executor is not None and rate is not None and not len(work):
        start = 0.0  # the calibration has started the workers and read their data
    passes = sum(j.recipe.epochs if options.curves else 1 for j in jobs if tests.get(j.data))
    return Plan(len(jobs), spans[0], tuple(images.items()), cost, rate, source, tuple(workers),
                options, tasks, test, start, spent, spans[-1], tuple(tests.items()), passes)
