"""What a run will cost, said before it starts (pure: no torch; a calibration runs in the
executor): models × epochs × images, the multiply-adds (3 × flops × images × epochs: forward
and backward), and an ETA from the speed of a trainer, measured on this store's results or
calibrated on a few steps of a few pending models. When the ETA is long, the levers that
shorten it.

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


def training_mult_adds(flops, images, epochs):
    """Multiply-adds of training a model of `flops` on `images` for `epochs`: 3 × flops ×
    images × epochs (the forward pass, and the backward pass at about twice its cost);
    arrays in, arrays out."""
    return 3.0 * flops * images * epochs


# ---- the store's measured speed ---------------------------------------------------------------

def measured_speeds(store: Store, kind: str | None = None, host: str | None = None
                    ) -> np.ndarray:
    """Training speed of each of the store's finished models, in multiply-adds per second per
    trainer (3 × flops × images × epochs / train seconds, times the trials fused with it);
    only those trained on a `kind` of
    device ('cpu' or 'cuda') and on `host`, when given."""
    speeds = []
    for s in store.spaces():
        try:
            df = store.load([s])
        except DseError:
            continue
        done = df[(df["status"] == Status.DONE) & (df["train_seconds"] > 0)]
        if kind is not None:
            on_cpu = done["device"].fillna("").str.startswith("cpu")
            done = done[on_cpu if kind == "cpu" else ~on_cpu]
        if host is not None:
            done = done[done["host"] == host]
        if done.empty:
            continue
        size = datasets.get(done["dataset"].iloc[0]).train_size or 0
        images = done["train_subset"].fillna(size).to_numpy(dtype=float)
        epochs = done["epochs_run"].fillna(done["epochs"]).to_numpy(dtype=float)
        # a fused trial's seconds are its network's, which trained `fused` trials at once
        copies = (done["fused"].fillna(1).to_numpy(dtype=float) if "fused" in done
                  else np.ones(len(done)))
        speeds.append(training_mult_adds(done["flops"].to_numpy(dtype=float), images, epochs)
                      * copies / done["train_seconds"].to_numpy(dtype=float))
    speeds = np.concatenate(speeds) if speeds else np.array([])
    return speeds[np.isfinite(speeds) & (speeds > 0)]


def measured_rate(store: Store, kind: str | None = None, host: str | None = None
                  ) -> float | None:
    """Median training speed of the store's finished models (measured_speeds), in
    multiply-adds per second per trainer, or None before any."""
    speeds = measured_speeds(store, kind, host)
    return float(np.median(speeds)) if speeds.size else None


# ---- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """A run's work and speed. cost: multiply-adds of every model (3 × flops × images ×
    epochs); rate: multiply-adds per second of one trainer (None: unknown, `source` says
    why); workers: the run's trainers (device names); tasks: runs sharing the models (the
    tasks of a cluster array)."""

    models: int
    epochs: int
    images: tuple            # ((DataRef, training images per epoch), ...)
    cost: float
    rate: float | None
    source: str              # where the rate comes from, or why there is none
    workers: tuple
    options: TrainOptions
    tasks: int = 1

    @property
    def eta_s(self) -> float | None:
        """Seconds of training at `rate` on every worker of every task."""
        return self.cost / (self.rate * len(self.workers) * self.tasks) if self.rate else None

    def cost_of(self, job: Job) -> float:
        """Multiply-adds of training one job."""
        return training_mult_adds(job.flops, dict(self.images)[job.data], self.epochs)

    def lines(self) -> list[str]:
        """The plan as two lines: the work, then the ETA and where its speed comes from."""
        n = sorted({k for _, k in self.images})
        images = f"{n[0]:,}" if len(n) == 1 else f"{n[0]:,}–{n[-1]:,}"
        work = (f"plan: {self.models} model{'s' * (self.models != 1)} × {self.epochs} "
                f"epoch{'s' * (self.epochs != 1)} × {images} images = {mult_adds(self.cost)} "
                "multiply-adds (3 × flops × images × epochs)")
        if self.rate is None:
            return [work, f"ETA unknown: {self.source}"]
        k = len(self.workers)
        return [work, f"ETA {eta(self.eta_s)} at {self.rate / 1e9:.3g} G multiply-adds/s per "
                f"trainer × {k} trainer{'s' * (k != 1)}"
                + (f" × {self.tasks} tasks" if self.tasks > 1 else "") + f", {self.source}"]

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


def calibrated_rate(executor, jobs: list[Job]) -> tuple[float | None, str]:
    """Multiply-adds per second of a trainer, timed by `executor` on a few steps of each job
    in turn (nothing is kept) until CALIBRATE_BUDGET_S have passed: the harmonic mean of
    their speeds, as the run's time is the sum of its models'; and what it was measured on."""
    start, got = time.monotonic(), []
    for job in jobs:
        if got and time.monotonic() - start > CALIBRATE_BUDGET_S:
            break
        got.append((job, executor.calibrate(job)))
    timed = [(j, c) for j, c in got if c.images_per_second]
    if not timed:
        job, c = got[0]
        return None, f"its calibration on {job.key} failed: {c.message}"
    rate = len(timed) / sum(1 / training_mult_adds(j.flops, c.images_per_second, 1)
                            for j, c in timed)
    return rate, (f"calibrated on {sum(c.steps for _, c in timed)} steps of {len(timed)} "
                  f"pending model{'s' * (len(timed) != 1)} (not counted as training)")


def estimate(store: Store, jobs: list[Job], images: dict, options: TrainOptions,
             workers: list[str], executor=None, tasks: int = 1) -> Plan:
    """The plan of training `jobs` (images: DataRef → training images per epoch) on
    `workers`: the speed is the median of this store's models trained on this host and kind
    of device, else calibrated by `executor` on a few steps of a few jobs (probes; not
    counted as training), else unknown."""
    epochs = options.recipe.epochs
    cost = sum(training_mult_adds(j.flops, images[j.data], epochs) for j in jobs)
    kind = "cpu" if workers[0] == "cpu" else "cuda"
    speeds = measured_speeds(store, kind, HOST)
    if speeds.size:
        rate = float(np.median(speeds))
        source = (f"measured: the median of {speeds.size} model{'s' * (speeds.size != 1)} "
                  f"this store trained on this host's {kind}")
    elif executor is not None and jobs:
        rate, source = calibrated_rate(executor, probes(jobs))
    else:
        rate, source = None, "no model of this store has trained on this host's " + kind
    return Plan(len(jobs), epochs, tuple(images.items()), cost, rate, source, tuple(workers),
                options, tasks)
