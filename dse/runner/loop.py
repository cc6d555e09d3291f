"""Training a population: list the models without a result, claim them one at a time, hand
them to an executor, write each result the moment it arrives, give every claim back.

    run(store, spaces, TrainOptions(...), report=Progress())   # what `dse train` does

Before the first claim the run's plan (dse.runner.plan: its work, and an ETA from the
store's measured speed or a calibration) goes to the report; `dry_run` stops there.
Only this process claims models and writes results; executors (dse.runner.executors) train.
What is pending is dse.runner.pending; the lease protocol dse.runner.leases; the store
dse.store; progress dse.runner.progress.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

from dse import __version__
from dse.data import datasets
from dse.data.datasets import DataRef
from dse.errors import ArgumentError, DseError
from dse.runner import leases
from dse.runner.jobs import AtStep, Epoch, Finished, Fused, Job, Returned, fusion_groups
from dse.runner.options import TrainOptions
from dse.runner.pending import jobs_of, select_spaces
from dse.runner.plan import Plan, estimate
from dse.store.core import Store, needs_training
from dse.store.recipes import fingerprint
from dse.store.schema import RESULT_STATUSES
from dse.store.status import Status
from dse.system import HOST, now_utc
from dse.train import fusion
from dse.train.outcome import Outcome
from dse.train.recipe import spec_of
from dse.units import clock


@dataclass
class Summary:
    """What a run did."""

    total: int = 0                     # models that needed training when the run started
    counts: dict = field(default_factory=lambda: {s: 0 for s in RESULT_STATUSES})
    skipped: int = 0                   # held by another live run
    seconds: float = 0.0
    best: tuple | None = None          # (error, space, model_id)
    last_error: str = ""
    plan: Plan | None = None           # the work and ETA said before the first claim
    outcomes: list = field(default_factory=list)  # (status, error, train_loss, num_classes)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        c = self.counts
        s = (f"trained {self.finished} of {self.total} pending models in "
             f"{clock(self.seconds)}: {c['done']} done, {c['diverged']} diverged, "
             f"{c['failed']} failed")
        if self.skipped:
            s += f"; {self.skipped} left to another running dse train"
        if self.best:
            s += f"; best {self.best[0]:.2f}% ({self.best[1]}/{self.best[2]})"
        return s


class Silent:
    """A report that says nothing (the default for library calls)."""

    def start(self, total, workers): pass
    def plan(self, plan): pass
    def begin(self, job): pass
    def info(self, line): pass
    def step(self, job, epoch, step, steps): pass
    def epoch(self, job, epoch, loss): pass
    def result(self, job, row): pass
    def tick(self): pass
    def end(self, summary): pass


def result_row(job: Job, options: TrainOptions, outcome: Outcome, device: str) -> dict:
    """The stored row of a finished model: outcome, recipe, device and versions."""
    import torch

    r = job.recipe
    return dict(
        model_id=job.model_id, space=job.space, status=outcome.status, recipe=job.fingerprint,
        history_error=list(outcome.history_error) if outcome.history_error else None,
        history_loss=list(outcome.history_loss) if outcome.history_loss else None,
        error=outcome.error, message=outcome.message or "",
        epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, wd=r.wd, seed=r.seed,
        dataset=job.dataset, train_subset=r.train_subset,
        train_seconds=outcome.train_seconds,
        images_per_second=outcome.images_per_second,
        train_loss=_finite_or_none(outcome.train_loss),
        device=device, torch_version=torch.__version__, dse_version=__version__,
        finished_at=now_utc(),
        momentum=r.momentum, nesterov=r.nesterov, warmup_epochs=r.warmup_epochs,
        zero_init_final_gamma=r.zero_init_final_gamma, augment=r.augment,
        precision=outcome.precision, cuda_graph=outcome.cuda_graph,
        channels_last=outcome.channels_last,
        epochs_run=outcome.epochs_run, host=HOST, fused=outcome.fused,
        label_smoothing=r.label_smoothing, mixup_alpha=r.mixup_alpha, ema_alpha=r.ema_alpha,
        ema_period=r.ema_period, bn_wd=r.bn_wd, warmup_factor=r.warmup_factor,
        lr_policy=r.lr_policy, lr_steps=list(r.lr_steps), lr_mult=r.lr_mult, min_lr=r.min_lr,
        series="test")


def ema_row(row: dict, job: Job, options: TrainOptions, outcome: Outcome) -> dict | None:
    """The stored row of the model's weight EMA (a recipe with ema_alpha > 0): the same
    training under its own recipe, series=ema (as `dse import --series ema` stores pycls's
    test_ema_epoch), its error the EMA's at the last epoch and history_error every epoch's;
    None when there is no EMA series (no EMA, or the training failed)."""
    hist = outcome.history_ema_error
    if hist is None or outcome.status == Status.FAILED:
        return None
    fp = fingerprint({**spec_of(job.recipe, options.draws), "series": "ema"})
    done = outcome.status == Status.DONE and len(hist) > 0
    return {**row, "recipe": fp, "series": "ema", "history_error": list(hist),
            "error": hist[-1] if done else None}



def _finite_or_none(x):
    return x if isinstance(x, float) and math.isfinite(x) else None


def run(store: Store | str, spaces=(), options: TrainOptions | None = None,
        report=None, *, dry_run: bool = False, tasks: int = 1) -> Summary:
    """Train every pending model of a store's spaces (names or aliases; default: all) with
    `options`; returns a Summary, with the plan said before the first claim (dry_run: only
    that; nothing is claimed or trained). `tasks`: runs sharing these models (a cluster
    array's), for the ETA. `report` (a dse.runner.progress.Progress, or None for silence)
    hears start(total, workers), info(line), plan(plan), begin(job), step(job, epoch, step,
    steps), epoch(job, epoch, loss), result(job, row), tick() and end(summary)."""
    from dse.runner import executors, runs

    began = time.perf_counter()
    options = options or TrainOptions()
    report = report or Silent()
    store = Store.existing(store)
    names = select_spaces(store, spaces, options.data_dir)
    todo = [j for n in names for j in jobs_of(store, n, options.retry_failed, options.data_dir,
                                              options, keep=not dry_run)]
    todo.sort(key=lambda j: -j.flops)  # longest first: the last models finish together
    devices = executors.devices_for(options.device, options.jobs)
    limit = options.max_models
    summary = Summary(total=len(todo) if limit is None else min(len(todo), limit))
    if not todo:
        report.start(0, executors.describe(devices))
        report.end(summary)
        return summary
    t0 = time.perf_counter()
    arrays, sizes = _load_data(todo, options, devices)  # fails before anything is claimed
    data_s = time.perf_counter() - t0
    report.start(summary.total, executors.describe(devices))
    for ref, (n, n_test, source) in sizes.items():
        sub = options.recipe.train_subset
        report.info(f"{ref.dataset}: {n} training images" + (f" (using {sub})" if sub else "")
                    + f", {n_test} test images, from {source}")
    sub = options.recipe.train_subset
    images = {ref: min(n, sub or n) for ref, (n, _, _) in sizes.items()}
    loop = _Loop(store, options, summary, report, todo,
                 fusion.width(options.fuse, devices[0].split(":")[0]))
    ex = executors.executor(devices, options, arrays, on_event=loop.on_event)
    start, record, ended = time.perf_counter(), None, "stopped"
    try:
        with leases.Heartbeats(options.heartbeat_s) as hb, ex:
            summary.plan = estimate(store, todo[:summary.total], images, options, devices, ex,
                                    tasks, {ref: t for ref, (_, t, _) in sizes.items()}, data_s,
                                    not isinstance(ex, executors.InProcess))
            report.plan(summary.plan)
            if dry_run:
                return summary
            record = runs.start(store, summary.plan, names, options)  # predicted, per stage
            start = time.perf_counter()  # the calibration is not training time
            loop.drive(ex, hb)
        for s in names if summary.finished else ():  # fold this run's result files together
            store.compact_if_many(s, at=1)
        ended = "done"
    finally:
        loop.give_back()  # interrupted: the models in flight go back at once
        summary.seconds = time.perf_counter() - start
        runs.finish(store, record, summary.finished, time.perf_counter() - began, ended)
    report.end(summary)
    return summary


def _load_data(todo: list[Job], options: TrainOptions, devices: list[str]):
    """The in-memory arrays of every DataRef of `todo`, and (train, test, source) sizes of
    each; checks the recipe's subset and batch against them and the devices' memory."""
    recipe = options.recipe
    arrays, sizes = {}, {}
    for ref in dict.fromkeys(j.data for j in todo):
        if datasets.get(ref.dataset).stream:
            sizes[ref] = _stream_sizes(ref)
        else:
            a = arrays[ref] = datasets.load_ref(ref, options.load_options())
            sizes[ref] = (len(a.train_y), len(a.test_y), a.source)
    for ref, (n, _, _) in sizes.items():
        if recipe.train_subset is not None and recipe.train_subset > n:
            raise _too_many("train_subset", recipe.train_subset, n, ref.dataset)
        if recipe.batch_size > min(n, recipe.train_subset or n):
            raise _too_many("batch_size", recipe.batch_size, min(n, recipe.train_subset or n),
                            ref.dataset)
    one_copy = options.concurrency == "streams"  # one process holds the data for all jobs
    _check_memory(arrays, list(dict.fromkeys(devices)) if one_copy else devices,
                  recipe.train_subset)
    return arrays, sizes


class _Loop:
    """The claim → submit → event → store cycle of one run: only this process takes leases
    and writes results; the executor trains."""

    def __init__(self, store: Store, options: TrainOptions, summary: Summary, report,
                 todo: list[Job], width: int = 1):
        self.store, self.options, self.summary, self.report = store, options, summary, report
        self.width = width  # trials per fused network (dse.train.fusion); 1: each alone
        self.todo, self.started = todo, 0
        self.it = iter(fusion_groups(todo, width))
        self.held: dict[str, tuple[Job, leases.Lease]] = {}  # key → the job and our lease
        self.again: list[Job] = []  # given back by a worker that could not start: still ours

    def on_event(self, ev: AtStep | Epoch) -> None:
        """A model's progress: how far into an epoch, or an epoch's end."""
        job = self.held[ev.key][0]
        if isinstance(ev, AtStep):
            self.report.step(job, ev.epoch, ev.step, ev.steps)
        else:
            self.report.epoch(job, ev.epoch, ev.loss)

    def drive(self, ex, hb: leases.Heartbeats) -> None:
        """Keep the executor busy until every job is done, given up or held elsewhere."""
        while True:
            self._submit(ex, hb)
            if not self.held:
                return
            for ev in ex.events(timeout=1.0):
                self._handle(ev, hb)
            if ex.unusable:
                left = len(self.todo) - self.summary.finished
                raise DseError(f"stopped: no usable device left: {ex.unusable}; "
                               f"{left} model{'s' * (left != 1)} left pending (dse train "
                               "trains them once the device works)")
            self.report.tick()

    def _submit(self, ex, hb) -> None:
        limit = self.options.max_models
        while ex.free() and (self.again or limit is None or self.started < limit):
            if self.again:  # given back: ours still, fused again where they were
                group = fusion_groups(self.again, self.width)[0]
                self.again = [j for j in self.again if j not in group]
                ex.submit(_unit(group))
                continue
            room = None if limit is None else limit - self.started
            group = _claim_next(self.it, self.store, self.options, self.summary, self.held,
                                hb, self.report, room)
            if not group:
                return
            ex.submit(_unit(group))
            for job in group:
                self.report.begin(job)
            self.started += len(group)

    def _handle(self, ev, hb) -> None:
        job, lease = self.held[ev.key]
        if isinstance(ev, (AtStep, Epoch)):
            self.on_event(ev)
        elif isinstance(ev, Returned):
            self.again.append(job)
        elif isinstance(ev, Finished):
            _record(self.store, job, self.options, ev, self.summary, self.report)
            leases.release(lease)
            hb.remove(lease)
            del self.held[ev.key]

    def give_back(self) -> None:
        for _job, lease in self.held.values():
            with contextlib.suppress(OSError, DseError):
                leases.release(lease)


def _check_memory(arrays: dict, devices: list[str], train_subset: int | None) -> None:
    """Every device has room for the in-memory data of all its workers (one copy each),
    checked before anything is claimed."""
    import torch

    from dse.data.device import check_fits

    for dev in dict.fromkeys(devices):
        k = devices.count(dev)
        for ref, a in arrays.items():
            n = len(a.train_y)
            nbytes = a.train_x.nbytes * min(n, train_subset or n) // n + a.test_x.nbytes
            in_place = dev == "cpu" and len(devices) == 1  # this process's arrays are used
            check_fits(k * nbytes, torch.device(dev),
                       f"{ref.dataset} for {k} worker{'s' * (k > 1)} on {dev}",
                       resident=nbytes if in_place else 0)


def _stream_sizes(ref: DataRef) -> tuple[int, int, str]:
    """Training and test image counts of a streamed dataset, listed without decoding."""
    root = datasets.stream_root(ref.root)
    from dse.data.ondisk import list_images  # torch: only when there is something to stream

    train, _, test, _, _ = list_images(root)
    return len(train), len(test), f"{root} (streamed)"


def _too_many(param: str, value: int, n: int, dataset: str) -> ArgumentError:
    return ArgumentError(param, f"{value} exceeds the {n} training images of {dataset}")


def _unit(group: list[Job]) -> Job | Fused:
    """What an executor trains: one job, or several as one fused network."""
    return group[0] if len(group) == 1 else Fused(tuple(group))


def _claim_next(it, store: Store, options: TrainOptions, summary: Summary, held: dict,
                hb: leases.Heartbeats, report, room: int | None = None) -> list[Job]:
    """Claim the jobs of the next group of `it` (dse.runner.jobs.fusion_groups) that nobody
    finished or holds meanwhile, at most `room` of them; a damaged result file of a claimed
    trial is moved aside (never deleted) before it trains again. Empty when `it` is
    exhausted."""
    for group in it:
        got = []
        for job in group:
            if room is not None and len(got) >= room:
                break
            if not needs_training(store.result_status(job.space, job.trial),
                                  options.retry_failed):
                continue  # finished by another run since we listed it
            c = leases.claim(store, job.space, job.trial, options.claim_timeout,
                             options.retry_failed)
            if c is None:
                summary.skipped += 1
                continue
            moved = store.set_aside(job.space, job.trial)
            if moved is not None:
                report.info(f"{job.space}/{job.model_id}: its result file was damaged; moved "
                            f"it to {moved} and training the model again")
            held[job.key] = (job, c)
            hb.add(c)
            got.append(job)
        if got:
            return got
    return []


def _record(store: Store, job: Job, options: TrainOptions, ev: Finished, summary: Summary,
            report) -> None:
    """Write a finished model's result and count it."""
    row = result_row(job, options, ev.outcome, ev.device)
    ema = ema_row(row, job, options, ev.outcome)
    if ema is not None:  # first: the model's own row marks the trial done
        store.write_result(job.space, ema)
    store.write_result(job.space, row)
    summary.counts[row["status"]] += 1
    summary.outcomes.append((row["status"], row["error"], row["train_loss"],
                             job.task.num_classes))
    if row["status"] == Status.DONE and (summary.best is None or row["error"] < summary.best[0]):
        summary.best = (row["error"], job.space, job.model_id)
    if row["status"] != Status.DONE:
        summary.last_error = f"{job.model_id}: {row['message']}"
    report.result(job, row)
