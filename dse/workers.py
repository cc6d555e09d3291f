"""Where models train: executors that take jobs and give back typed events.

`InProcess` trains on the calling thread (CPU, one GPU, one job); `dse.processes.Processes`
runs one worker process per (device, job slot). Both answer `free()`, `submit(job)` and
`events(timeout)`, which returns `Epoch` events (a model finished an epoch), `Finished`
events (its outcome) and `Returned` events (a job given back untrained). A worker never
writes to the store: the run loop that owns the claims writes the results.

Faults: a CUDA error that is not an out-of-memory leaves a process's CUDA context unusable,
so after one the model is recorded as failed and the worker exits; a fresh process replaces
it. A worker that cannot start (CUDA busy or full) gives its job back uncharged. Restarts
wait 1, 4, 16 s; a slot whose worker failed MAX_FAILURES times in a row is given up, and when
every slot is, `unusable` says why and the run stops with the rest of its models pending.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import NamedTuple

from dse.datasets import DataRef
from dse.errors import DseError
from dse.recipe import TrainOptions, cpu_cores
from dse.spec import AnyNetSpec, Task


@dataclass(frozen=True)
class Job:
    """One model to train, and the data it trains on."""

    space: str
    model_id: str
    data: DataRef
    spec: AnyNetSpec
    task: Task
    flops: int

    @property
    def key(self) -> str:
        return f"{self.space}/{self.model_id}"

    @property
    def dataset(self) -> str:
        return self.data.dataset


class Epoch(NamedTuple):
    """A model finished an epoch with this mean training loss."""

    key: str
    epoch: int
    loss: float


class Finished(NamedTuple):
    """A model's training ended: its outcome (dse.train.train's dict) and the device name."""

    key: str
    outcome: dict
    device: str


class Returned(NamedTuple):
    """A job given back untrained (its worker could not start): train it elsewhere."""

    key: str


class _StartFailed(NamedTuple):  # a worker process could not take its device
    message: str


MAX_FAILURES = 3                 # consecutive failures of one worker slot before giving up
BACKOFF_S = (1.0, 4.0, 16.0)     # wait before the 1st, 2nd, 3rd restart of a slot

# Messages of CUDA errors after which the process's CUDA context cannot be used again.
STICKY_CUDA = ("illegal memory access", "device-side assert", "launch failure",
               "illegal instruction", "misaligned address", "CUDA error",
               "CUBLAS_STATUS_EXECUTION_FAILED", "CUDNN_STATUS_EXECUTION_FAILED")


def cuda_fault(e: BaseException) -> bool:
    """Whether `e` is a CUDA error that leaves this process's CUDA context unusable;
    running out of memory is not one (the next, smaller model may fit)."""
    import torch

    msg = str(e)
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in msg:
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    return ((accelerator_error is not None and isinstance(e, accelerator_error))
            or any(s in msg for s in STICKY_CUDA))


def devices_for(device: str, jobs: int) -> list[str]:
    """One entry per worker: `jobs` per device; 'auto'/'cuda' use every GPU."""
    import torch

    from dse.train import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count()) for _ in range(jobs)]
    return [str(dev)] * jobs


def describe(workers: list[str]) -> str:
    """'1 worker (cpu)', '8 workers (4 × cuda:0, 4 × cuda:1)'."""
    per = {w: workers.count(w) for w in workers}
    where = ", ".join(f"{k} × {w}" if k > 1 else w for w, k in per.items())
    return f"{len(workers)} worker{'s' * (len(workers) > 1)} ({where})"


def executor(workers: list[str], options: TrainOptions, arrays: dict, on_epoch=None):
    """The executor for these workers: in-process for one, CUDA streams in this process
    with concurrency="streams", worker processes for more. on_epoch(Epoch) hears the epochs
    of in-process training as they happen (worker processes send theirs as events)."""
    if options.concurrency == "streams":
        if len(set(workers)) != 1 or not workers[0].startswith("cuda"):
            raise DseError(f"models on CUDA streams need one CUDA device (got "
                           f"{', '.join(dict.fromkeys(workers))}); name it with --device "
                           "cuda:N, or use worker processes")
        return InProcess(workers[0], options, arrays, on_epoch, together=len(workers))
    if len(workers) == 1:
        return InProcess(workers[0], options, arrays, on_epoch)
    from dse.processes import Processes

    return Processes(workers, options)


# ---- training one job ------------------------------------------------------------------------

def _failed(message: str, seconds: float | None = None) -> dict:
    return dict(status="failed", error=None, message=message, train_seconds=seconds)


def _train_one(job: Job, cache: _DataCache, options: TrainOptions, on_epoch) -> dict:
    """Train a job, turning any exception into a `failed` outcome with its message; the
    outcome has fatal=True after a CUDA error that leaves the process's CUDA unusable."""
    import torch

    from dse import train

    t0 = time.perf_counter()
    try:
        data = cache.get(job.data, options.recipe.train_subset)
        return train.train(job.spec, job.task, data, options.recipe, amp=options.amp,
                           cuda_graph=options.cuda_graph, channels_last=options.channels_last,
                           on_epoch=on_epoch)
    except (KeyboardInterrupt, SystemExit):
        raise
    except DseError as e:
        return _failed(str(e), time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - OOM, cuDNN errors, bad shapes: record them
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        oom, fatal = isinstance(e, torch.cuda.OutOfMemoryError), cuda_fault(e)
    # here the exception, and the frames that held the model and its graph pool, are gone
    if oom:
        gc.collect()
        torch.cuda.empty_cache()
    return {**_failed(msg, time.perf_counter() - t0), **({"fatal": True} if fatal else {})}


def _train_together(jobs: list[Job], cache: _DataCache, options: TrainOptions,
                    on_epoch) -> list[dict]:
    """Train jobs on one CUDA device at once, one stream each, group by group of the same
    data; an exception fails the group it hit (fatal after a sticky CUDA error)."""
    from dse import concurrent

    outcomes = {}
    for ref in dict.fromkeys(j.data for j in jobs):
        group = [k for k, j in enumerate(jobs) if j.data == ref]
        t0 = time.perf_counter()
        try:
            data = cache.get(ref, options.recipe.train_subset)
            got = concurrent.train_together(
                [(jobs[k].spec, jobs[k].task) for k in group], data, options.recipe,
                amp=options.amp, channels_last=bool(options.channels_last),
                on_epoch=lambda i, e, loss, group=group: on_epoch(group[i], e, loss))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - as _train_one, for the whole group
            msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
            got = [{**_failed(msg, time.perf_counter() - t0),
                    **({"fatal": True} if cuda_fault(e) else {})}] * len(group)
        outcomes.update(zip(group, got))
    return [outcomes[k] for k in range(len(jobs))]


class _DataCache:
    """Data put on one device, loaded once per DataRef and train subset: host arrays moved to
    the device (dse.data), or a dataset streamed from disk (dse.stream)."""

    def __init__(self, device, options: TrainOptions, arrays: dict | None = None,
                 trainers: int = 1):
        self.device, self.options, self.arrays = device, options, dict(arrays or {})
        self.trainers = trainers  # training processes on this machine, for decode workers
        self.on_device = {}

    def get(self, ref: DataRef, train_subset: int | None):
        from dse import data, datasets

        key = (ref, train_subset)
        if key not in self.on_device:
            self.on_device.clear()  # one dataset on the device at a time
            if datasets.get(ref.dataset).stream:
                from dse.stream import StreamData, default_workers

                self.on_device[key] = StreamData(
                    datasets.stream_root(ref.root), self.device, train_subset,
                    resolution=ref.resolution, workers=default_workers(self.trainers))
            else:
                if ref not in self.arrays:
                    self.arrays[ref] = datasets.load_ref(ref, self.options.load_options())
                self.on_device[key] = data.DeviceData(self.arrays[ref], self.device,
                                                      train_subset)
        return self.on_device[key]


def _use_device(device: str, n_here: int):
    """Make `device` current for this process: CPU threads (its share of the cores, or
    $OMP_NUM_THREADS) or the current CUDA device. Returns the torch.device and its name."""
    import torch

    from dse.train import device_name

    dev = torch.device(device)
    if dev.type == "cpu":
        env = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0
                              else max(1, cpu_cores() // n_here))
    elif dev.index is not None:
        torch.cuda.set_device(dev)
    return dev, device_name(dev)


# ---- executors -------------------------------------------------------------------------------

class InProcess:
    """Trains on the calling thread: the job submitted, or up to `together` jobs at once on
    CUDA streams (dse.concurrent), while `events` is called; epochs are handed to
    `on_epoch(Epoch)` as they happen. After a fatal CUDA error this process cannot train
    again: `unusable` says why."""

    def __init__(self, device: str, options: TrainOptions, arrays: dict, on_epoch=None,
                 together: int = 1):
        try:
            self.dev, self.name = _use_device(device, 1)
        except Exception as e:  # noqa: BLE001 - CUDA busy (exclusive mode), full, or missing
            raise DseError(f"{device} cannot be used: "
                           f"{' '.join(f'{type(e).__name__}: {e}'.split())[:300]}; nothing "
                           "was trained") from None
        self.options, self.jobs, self.on_epoch, self.together = options, [], on_epoch, together
        self.cache = _DataCache(self.dev, options, arrays)
        self.unusable: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def free(self) -> bool:
        return len(self.jobs) < self.together and self.unusable is None

    def submit(self, job: Job):
        self.jobs.append(job)

    def events(self, timeout: float) -> list:
        jobs, self.jobs = self.jobs, []
        if not jobs:
            return []

        def on_epoch(k, epoch, loss):
            if self.on_epoch is not None:
                self.on_epoch(Epoch(jobs[k].key, epoch, loss))

        if self.together > 1:
            outcomes = _train_together(jobs, self.cache, self.options, on_epoch)
        else:
            outcomes = [_train_one(jobs[0], self.cache, self.options,
                                   lambda e, loss: on_epoch(0, e, loss))]
        fatal = [o for o in outcomes if o.get("fatal")]
        if fatal:
            self.unusable = f"{self.dev} ({self.name}): {fatal[0]['message']}"
        return [Finished(j.key, o, self.name) for j, o in zip(jobs, outcomes)]
