"""Where models train: executors that take jobs and give back typed events.

`InProcess` trains on the calling thread (CPU, one GPU, one job); `Processes` runs one worker
process per (device, job slot). Both answer `free()`, `submit(job)` and `events(timeout)`,
which returns `Epoch` events (a model finished an epoch) and `Finished` events (its outcome).
A worker never writes to the store: the run loop that owns the claims writes the results.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import time
from dataclasses import dataclass
from typing import NamedTuple

from dse.datasets import DataRef
from dse.errors import DseError
from dse.recipe import TrainOptions
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
    """The executor for these workers: in-process for one, worker processes for more.
    on_epoch(Epoch) hears the epochs of in-process training as they happen (worker
    processes send theirs as events)."""
    if len(workers) == 1:
        return InProcess(workers[0], options, arrays, on_epoch)
    return Processes(workers, options)


# ---- training one job ------------------------------------------------------------------------

def _failed(message: str, seconds: float | None = None) -> dict:
    return dict(status="failed", error=None, message=message, train_seconds=seconds)


def _train_one(job: Job, cache: _DataCache, options: TrainOptions, on_epoch) -> dict:
    """Train a job, turning any exception into a `failed` outcome with its message."""
    import torch

    from dse.train import train

    t0 = time.perf_counter()
    try:
        data = cache.get(job.data, options.recipe.train_subset)
        return train(job.spec, job.task, data, options.recipe, amp=options.amp,
                     cuda_graph=options.cuda_graph, channels_last=options.channels_last,
                     on_epoch=on_epoch)
    except (KeyboardInterrupt, SystemExit):
        raise
    except DseError as e:
        return _failed(str(e), time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - OOM, cuDNN errors, bad shapes: record them
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        if isinstance(e, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        return _failed(msg, time.perf_counter() - t0)


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
                from dse.stream import StreamData

                cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else os.cpu_count() or 1)  # the others decode, shared fairly
                self.on_device[key] = StreamData(
                    datasets.stream_root(ref.root), self.device, train_subset,
                    resolution=ref.resolution,
                    workers=max(1, (cores - self.trainers) // self.trainers))
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
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
        env = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0
                              else max(1, cores // n_here))
    elif dev.index is not None:
        torch.cuda.set_device(dev)
    return dev, device_name(dev)


# ---- executors -------------------------------------------------------------------------------

class InProcess:
    """Trains on the calling thread; a job runs while `events` is called, and its epochs
    are handed to `on_epoch(Epoch)` as they happen."""

    def __init__(self, device: str, options: TrainOptions, arrays: dict, on_epoch=None):
        self.dev, self.name = _use_device(device, 1)
        self.options, self.job, self.on_epoch = options, None, on_epoch
        self.cache = _DataCache(self.dev, options, arrays)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def free(self) -> bool:
        return self.job is None

    def submit(self, job: Job):
        self.job = job

    def events(self, timeout: float) -> list:
        job, self.job = self.job, None
        if job is None:
            return []

        def on_epoch(epoch, loss):
            if self.on_epoch is not None:
                self.on_epoch(Epoch(job.key, epoch, loss))

        return [Finished(job.key, _train_one(job, self.cache, self.options, on_epoch),
                         self.name)]


def _worker_main(device: str, n_here: int, n_all: int, options: TrainOptions, tasks, results,
                 parent: int) -> None:
    """A worker process: train the jobs it is sent on `device` until it gets None."""
    import signal

    with contextlib.suppress(Exception):  # die with the parent (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    dev, name = _use_device(device, n_here)
    cache = _DataCache(dev, options, trainers=n_all)
    while True:
        try:
            job = tasks.get(timeout=5)
        except queue_mod.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return

        def on_epoch(epoch, loss, job=job):
            if os.getppid() != parent:
                raise SystemExit(0)
            results.put(Epoch(job.key, epoch, loss))

        results.put(Finished(job.key, _train_one(job, cache, options, on_epoch), name))


@dataclass
class _Slot:
    """One worker process: its task queue, its own result queue (a worker killed while
    writing holds its queue's lock forever, which would block every writer of a shared
    queue) and the key of the job it is training (None when idle)."""

    process: object
    tasks: object
    results: object
    key: str | None = None


class Processes:
    """Worker processes, one per entry of `devices`; each trains one model at a time. A
    worker that dies (OOM killer, segfault) fails its model and is replaced."""

    def __init__(self, devices: list[str], options: TrainOptions):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.devices, self.options = devices, options
        self.slots: list[_Slot | None] = [None] * len(devices)

    def _start(self, i: int) -> None:
        tasks, results = self.ctx.Queue(), self.ctx.Queue()
        n_here = self.devices.count(self.devices[i])
        # not daemonic: a worker may start processes of its own (the DataLoader of a
        # streamed dataset); it still dies with this process (prctl) and is joined or killed
        # on exit
        p = self.ctx.Process(target=_worker_main, name=f"dse-worker-{i}", daemon=False,
                             args=(self.devices[i], n_here, len(self.devices), self.options,
                                   tasks, results, os.getpid()))
        p.start()
        self.slots[i] = _Slot(p, tasks, results)

    def __enter__(self):
        for i in range(len(self.devices)):
            self._start(i)
        return self

    def __exit__(self, *exc):
        for s in self.slots:
            with contextlib.suppress(Exception):
                s.tasks.put(None)
        for s in self.slots:
            s.process.join(timeout=None if s.key is None and exc[0] is None else 0.5)
            if s.process.is_alive():
                s.process.kill()
                s.process.join()

    def free(self) -> bool:
        return any(s.key is None for s in self.slots)

    def submit(self, job: Job):
        s = next(s for s in self.slots if s.key is None)
        s.key = job.key
        s.tasks.put(job)

    def events(self, timeout: float) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while True:
            for s in self.slots:
                if s.process.is_alive() or s.process.exitcode == 0:
                    with contextlib.suppress(queue_mod.Empty):
                        while True:
                            out.append(s.results.get_nowait())
            if out or time.monotonic() >= deadline or any(not s.process.is_alive()
                                                          for s in self.slots):
                break
            time.sleep(0.02)
        done = {ev.key for ev in out if isinstance(ev, Finished)}
        for s in self.slots:
            if s.key in done:
                s.key = None
        for i, s in enumerate(self.slots):
            if not s.process.is_alive():  # killed: its model failed
                if s.key is not None:
                    out.append(Finished(s.key, _failed(
                        f"worker process died (exit code {s.process.exitcode})"),
                        self.devices[i]))
                self._start(i)
        return out
