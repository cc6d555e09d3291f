"""What executors and the run loop exchange: a `Job` (one model to train and its data), the
events an executor gives back (`AtStep`, `Epoch`, `Finished`, `Returned`), a calibration's
answer (`Calibrated`), the `Executor` contract that every executor implements, and the
restart policy of worker slots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from dse.data import datasets
from dse.data.datasets import DataRef
from dse.space.spec import AnyNetSpec, Task
from dse.store.recipes import trial_id
from dse.train import fusion
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe


@dataclass(frozen=True)
class Job:
    """One trial to train: a model, the recipe (its seed the trial's) and the data it trains
    on. `fingerprint` names the recipe as stored (dse.store.recipes: a drawn lr or wd by its
    distribution)."""

    space: str
    model_id: str
    data: DataRef
    spec: AnyNetSpec
    task: Task
    flops: int
    recipe: Recipe = Recipe()
    fingerprint: str = ""

    @property
    def trial(self) -> str:
        """The trial's name: per-trial result file and claim (dse.store.recipes.trial_id)."""
        return trial_id(self.model_id, self.fingerprint, self.recipe.seed)

    @property
    def key(self) -> str:
        return f"{self.space}/{self.trial}"

    @property
    def dataset(self) -> str:
        return self.data.dataset


@dataclass(frozen=True)
class Fused:
    """Trials of one architecture trained together as one fused network (dse.train.fused):
    each job a copy, with its own seed, lr and wd. Executors take it where they take a Job
    and give back one `Finished` per job."""

    jobs: tuple[Job, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(j.key for j in self.jobs)


def keys_of(unit: Job | Fused) -> tuple[str, ...]:
    """The trial keys an executor's unit of work trains."""
    return unit.keys if isinstance(unit, Fused) else (unit.key,)


def fusion_groups(jobs: list[Job], width: int) -> list[list[Job]]:
    """`jobs` in groups of at most `width` that can train as one fused network (the same
    space, architecture, data and recipe fingerprint, recipes that differ only in seed, lr
    and wd, and no recipe setting fusion does not implement: dse.train.fusion), in the order
    of each group's first job; width 1, an unfusable recipe or a dataset streamed from disk
    (one reader per copy would not pay) gives groups of one."""
    groups: list[list[Job]] = []
    open_: dict = {}  # fusion key → its group still filling
    for j in jobs:
        if width <= 1 or fusion.unsupported(j.recipe) or datasets.get(j.dataset).stream:
            groups.append([j])
            continue
        key = (j.space, j.spec, j.task, j.data, j.fingerprint, fusion.shared(j.recipe))
        g = open_.get(key)
        if g is None or len(g) >= width:
            g = open_[key] = []
            groups.append(g)
        g.append(j)
    return groups


class AtStep(NamedTuple):
    """A model is at step `step` of the `steps` of epoch `epoch` (counted on the host, sent
    about once a second: nothing waits for the device)."""

    key: str
    epoch: int
    step: int
    steps: int


class Epoch(NamedTuple):
    """A model finished an epoch with this mean training loss."""

    key: str
    epoch: int
    loss: float


class Finished(NamedTuple):
    """A model's training ended: its outcome (dse.train.outcome.Outcome) and the device name."""

    key: str
    outcome: Outcome
    device: str


class Returned(NamedTuple):
    """A job given back untrained (its worker could not start): train it elsewhere."""

    key: str


class Calibrate(NamedTuple):
    """Asks a worker to time a few training steps of `job` (nothing is kept or stored)."""

    job: Job


class Calibrated(NamedTuple):
    """How fast a job trains where it would train: images per second over `steps` timed
    steps (dse.train.trainer.calibrate), or None and why not."""

    key: str
    images_per_second: float | None
    steps: int = 0
    message: str = ""


class StartFailed(NamedTuple):
    """A worker process could not take its device."""

    message: str


MAX_FAILURES = 3                 # consecutive failures of one worker slot before giving up
BACKOFF_S = (1.0, 4.0, 16.0)     # wait before the 1st, 2nd, 3rd restart of a slot


class Executor(Protocol):
    """Where jobs train. The run loop submits a job whenever `free()`, and collects what
    happened with `events(timeout)`; `unusable` (None while it can train) says why it cannot
    train any more; `calibrate(job)` times a few steps of a job before the run (the plan's
    speed). dse.runner.executors.InProcess trains on the calling thread;
    dse.runner.processes.Processes in worker processes."""

    unusable: str | None

    def __enter__(self) -> Executor: ...
    def __exit__(self, *exc) -> None: ...
    def free(self) -> bool: ...
    def submit(self, job: Job) -> None: ...
    def events(self, timeout: float) -> list: ...
    def calibrate(self, job: Job) -> Calibrated: ...
