"""Training a population: list the models without a result, claim them one at a time, hand
them to an executor, write each result the moment it arrives, give every claim back.

    run(store, spaces, TrainOptions(...), report=Progress())   # what `dse train` does

Only this process claims models and writes results; executors (dse.runner.executors) train. The
lease
protocol is dse.runner.leases; the layout of the store is dse.store.core; progress is
dse.runner.progress.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field

from dse import __version__
from dse.data import datasets
from dse.data.datasets import DataRef
from dse.errors import ArgumentError, DamagedFileError, DseError, DseWarning
from dse.runner import leases
from dse.runner.jobs import Epoch, Finished, Job, Returned
from dse.runner.options import CLAIM_TIMEOUT, TrainOptions
from dse.space.spec import from_row
from dse.store.core import DAMAGED, Store, needs_training
from dse.store.schema import RESULT_STATUSES
from dse.system import HOST, now_utc
from dse.train.outcome import Outcome
from dse.units import clock

# ---- what there is to train -------------------------------------------------------------------


def jobs_of(store: Store, space: str, retry_failed: bool = False,
            data_dir: str | None = None) -> list[Job]:
    """Models of a space that have no readable result (or a failed one, with retry_failed),
    each with the data it trains on (read from data_dir, else where the store recorded it,
    else the default data directory)."""
    models = store.read_models(space)
    stored = store.statuses(space)
    root = data_dir if data_dir is not None else store.data_record(space).get("dir")
    out = []
    for r in models.to_dict(orient="records"):
        if not needs_training(stored.get(r["model_id"]), retry_failed):
            continue
        spec, task = from_row(r)
        data = DataRef(r["dataset"], None if root is None else str(root),
                       _data_resolution(r, task))
        out.append(Job(space, r["model_id"], data, spec, task, int(r["flops"])))
    return out


def _data_resolution(row: dict, task) -> int:
    """The side of the images a model's data is loaded at: the dataset's, resized to the
    model's own resolution on the device (dse.data.device); a streamed dataset is decoded
    at the model's resolution directly."""
    if datasets.get(row["dataset"]).stream:
        return task.resolution
    side = row.get("data_resolution")
    return task.resolution if side is None or side != side else int(side)


def select_spaces(store: Store, names=(), data_dir: str | None = None) -> list[str]:
    """The spaces to train, checked to be trainable: the named ones (names or aliases), else
    every space of the store whose models.parquet can be read (the others with a warning).
    A folder space's images must still have the classes its models were sampled for."""
    if not store.spaces():
        raise DseError(f"store {store.root} holds no sampled models; run dse sample first")
    chosen = list(dict.fromkeys(store.resolve(n) for n in names))
    models = {}
    for s in chosen or store.spaces():
        try:
            models[s] = store.read_models(s)
        except DamagedFileError as e:
            if chosen:
                raise
            warnings.warn(f"left out space {s}: {e}", DseWarning, stacklevel=2)
    for s, m in models.items():
        ds = m["dataset"].iloc[0] if len(m) else None
        if ds not in datasets.DATASETS:
            raise DseError(f"space {s!r} holds models for unknown dataset {ds!r}")
        if not datasets.get(ds).trainable:
            others = [o for o in models if o != s]
            raise DseError(f"space {s!r} holds {ds} models, which dse train cannot train yet "
                           f"(supported: {', '.join(datasets.trainable())})"
                           + (f"; name the others to train ({', '.join(others)})"
                              if others else ""))
        if datasets.get(ds).task is None:
            _check_folder(store, s, data_dir)
            continue
        r, task = m.iloc[0], datasets.task(ds)
        side = r.resolution if r.data_resolution is None or r.data_resolution != \
            r.data_resolution else r.data_resolution
        if (int(side), r.stem, int(r.in_channels), int(r.num_classes)) != \
                (task.resolution, task.stem, task.in_channels, task.num_classes):
            raise DseError(f"space {s!r}: its models' task does not match {ds}")
    return list(models)


def _check_folder(store: Store, space: str, data_dir: str | None) -> None:
    """The image tree a folder space trains on has the classes recorded at sampling."""
    from dse.data import folders

    rec = store.data_record(space)
    tree = folders.scan(datasets.data_dir(data_dir if data_dir is not None else rec.get("dir")))
    if list(tree.classes) != rec.get("classes"):
        raise DseError(f"the classes of {tree.root} ({len(tree.classes)}) are not those the "
                       f"{space} models were sampled for ({len(rec.get('classes') or [])}, "
                       f"from {rec.get('dir')}); name the right tree with --data-dir")


def status(store: Store | str, timeout: float = CLAIM_TIMEOUT) -> list[dict]:
    """Per space: sampled / done / diverged / failed / pending, how many of the pending are
    in flight (live claims) or held by stale claims, and the damaged files (a damaged result
    counts as pending; a space whose models.parquet is damaged has `error` set)."""
    store = Store.existing(store)
    rows = []
    for space in store.spaces():
        try:
            models = store.read_models(space)
        except DamagedFileError as e:
            rows.append(dict(space=space, dataset="", sampled=0,
                             **{s: 0 for s in RESULT_STATUSES}, pending=0, in_flight=0,
                             stale_claims=0, damaged=1, damaged_files=[str(e.path)],
                             error=str(e)))
            continue
        stored = store.statuses(space)
        damaged = [store.result_path(space, m) for m, st in stored.items() if st == DAMAGED]
        ids = set(models["model_id"])
        counts = {s: sum(1 for m, st in stored.items() if m in ids and st == s)
                  for s in RESULT_STATUSES}
        pending = [m for m in models["model_id"] if stored.get(m) in (None, DAMAGED)]
        live, stale = leases.held(store, space, pending, timeout)
        rows.append(dict(space=space, dataset=models["dataset"].iloc[0] if len(models) else "",
                         sampled=len(models), **counts, pending=len(pending), in_flight=live,
                         stale_claims=stale, damaged=len(damaged),
                         damaged_files=[str(p) for p in damaged], error=None))
    return rows


# ---- the run ------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a run did."""

    total: int = 0                     # models that needed training when the run started
    counts: dict = field(default_factory=lambda: {s: 0 for s in RESULT_STATUSES})
    skipped: int = 0                   # held by another live run
    seconds: float = 0.0
    best: tuple | None = None          # (error, space, model_id)
    last_error: str = ""

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
    def begin(self, job): pass
    def info(self, line): pass
    def epoch(self, job, epoch, loss): pass
    def result(self, job, row): pass
    def tick(self): pass
    def end(self, summary): pass


def result_row(job: Job, options: TrainOptions, outcome: Outcome, device: str) -> dict:
    """The stored row of a finished model: outcome, recipe, device and versions."""
    import torch

    r = options.recipe
    return dict(
        model_id=job.model_id, space=job.space, status=outcome.status,
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
        epochs_run=outcome.epochs_run, host=HOST)




def _finite_or_none(x):
    return x if isinstance(x, float) and math.isfinite(x) else None


def run(store: Store | str, spaces=(), options: TrainOptions | None = None,
        report=None) -> Summary:
    """Train every pending model of a store's spaces (names or aliases; default: all) with
    `options`; returns a Summary. `report` (a dse.runner.progress.Progress, or None for silence)
    hears start(total, workers), info(line), begin(job), epoch(job, epoch, loss),
    result(job, row), tick() and end(summary)."""
    from dse.runner import executors as workers

    options = options or TrainOptions()
    recipe, report = options.recipe, report or Silent()
    store = Store.existing(store)
    names = select_spaces(store, spaces, options.data_dir)
    todo = [j for n in names for j in jobs_of(store, n, options.retry_failed, options.data_dir)]
    todo.sort(key=lambda j: -j.flops)  # longest first: the last models finish together
    devices = workers.devices_for(options.device, options.jobs)
    limit = options.max_models
    summary = Summary(total=len(todo) if limit is None else min(len(todo), limit))
    if not todo:
        report.start(0, workers.describe(devices))
        report.end(summary)
        return summary
    arrays, sizes = {}, {}  # in-memory data by DataRef; (train, test, source) of every ref
    for ref in dict.fromkeys(j.data for j in todo):
        if datasets.get(ref.dataset).stream:
            sizes[ref] = _stream_sizes(ref)
        else:
            a = arrays[ref] = datasets.load_ref(ref, options.load_options())
            sizes[ref] = (len(a.train_y), len(a.test_y), a.source)
    for ref, (n, _, _) in sizes.items():  # fail before claiming anything
        if recipe.train_subset is not None and recipe.train_subset > n:
            raise _too_many("train_subset", recipe.train_subset, n, ref.dataset)
        if recipe.batch_size > min(n, recipe.train_subset or n):
            raise _too_many("batch_size", recipe.batch_size, min(n, recipe.train_subset or n),
                            ref.dataset)
    one_copy = options.concurrency == "streams"  # one process holds the data for all jobs
    _check_memory(arrays, list(dict.fromkeys(devices)) if one_copy else devices,
                  recipe.train_subset)
    report.start(summary.total, workers.describe(devices))
    for ref, (n, n_test, source) in sizes.items():
        report.info(f"{ref.dataset}: {n} training images"
                    + (f" (using {recipe.train_subset})" if recipe.train_subset else "")
                    + f", {n_test} test images, from {source}")
    held: dict[str, tuple[Job, leases.Lease]] = {}  # key → the job and our claim on it
    ex = workers.executor(devices, options, arrays,
                          on_epoch=lambda ev: report.epoch(held[ev.key][0], ev.epoch, ev.loss))
    start, started, it = time.perf_counter(), 0, iter(todo)
    again: list[Job] = []  # given back untrained by a worker that could not start: still ours
    try:
        with leases.Heartbeats(options.heartbeat_s) as hb, ex:
            while True:
                while ex.free() and (again or limit is None or started < limit):
                    if again:
                        ex.submit(again.pop(0))
                        continue
                    job = _claim_next(it, store, options, summary, held, hb, report)
                    if job is None:
                        break
                    ex.submit(job)
                    report.begin(job)
                    started += 1
                if not held:
                    break
                for ev in ex.events(timeout=1.0):
                    job, c = held[ev.key]
                    if isinstance(ev, Epoch):
                        report.epoch(job, ev.epoch, ev.loss)
                    elif isinstance(ev, Returned):
                        again.append(job)
                    elif isinstance(ev, Finished):
                        _record(store, job, options, ev, summary, report)
                        leases.release(c)
                        hb.remove(c)
                        del held[ev.key]
                if ex.unusable:
                    left = len(todo) - summary.finished
                    raise DseError(f"stopped: no usable device left: {ex.unusable}; "
                                   f"{left} model{'s' * (left != 1)} left pending (dse train "
                                   "trains them once the device works)")
                report.tick()
    finally:
        for _job, c in held.values():  # interrupted: give the models in flight back at once
            with contextlib.suppress(OSError, DseError):
                leases.release(c)
        summary.seconds = time.perf_counter() - start
    report.end(summary)
    return summary


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


def _claim_next(it, store: Store, options: TrainOptions, summary: Summary, held: dict,
                hb: leases.Heartbeats, report) -> Job | None:
    """Claim the next job of `it` that nobody finished or holds meanwhile; a damaged result
    file of the claimed model is moved aside (never deleted) before it trains again."""
    for job in it:
        if not needs_training(store.result_status(job.space, job.model_id),
                              options.retry_failed):
            continue  # finished by another run since we listed it
        c = leases.claim(store, job.space, job.model_id, options.claim_timeout,
                         options.retry_failed)
        if c is None:
            summary.skipped += 1
            continue
        moved = store.set_aside(job.space, job.model_id)
        if moved is not None:
            report.info(f"{job.space}/{job.model_id}: its result file was damaged; moved it "
                        f"to {moved} and training the model again")
        held[job.key] = (job, c)
        hb.add(c)
        return job
    return None


def _record(store: Store, job: Job, options: TrainOptions, ev: Finished, summary: Summary,
            report) -> None:
    """Write a finished model's result and count it."""
    row = result_row(job, options, ev.outcome, ev.device)
    store.write_result(job.space, row)
    summary.counts[row["status"]] += 1
    if row["status"] == "done" and (summary.best is None or row["error"] < summary.best[0]):
        summary.best = (row["error"], job.space, job.model_id)
    if row["status"] != "done":
        summary.last_error = f"{job.model_id}: {row['message']}"
    report.result(job, row)
