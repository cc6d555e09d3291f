"""Training one job in this process, for both executors (internal to dse.runner): the data
cache of a device, taking a device, and turning every exception into a `failed` outcome
(fatal after a CUDA error that leaves the process's CUDA context unusable)."""

from __future__ import annotations

import gc
import os
import time

from dse.data.datasets import DataRef
from dse.errors import DseError, described
from dse.runner.jobs import Calibrated, Fused, Job
from dse.runner.options import TrainOptions
from dse.system import cpu_cores
from dse.train.outcome import Outcome

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


# ---- training one job ------------------------------------------------------------------------

def guarded(run):
    """run(), or a `failed` outcome with the message of any exception it raised (fatal=True
    after a CUDA error that leaves the process's CUDA unusable); Ctrl-C and exits pass."""
    import torch

    t0 = time.perf_counter()
    try:
        return run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except DseError as e:
        return Outcome.failed(str(e), time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001 - OOM, cuDNN errors, bad shapes: record them
        msg = described(e, 500)
        oom, fatal = isinstance(e, torch.cuda.OutOfMemoryError), cuda_fault(e)
    # here the exception, and the frames that held the model and its graph pool, are gone
    if oom:
        gc.collect()
        torch.cuda.empty_cache()
    return Outcome.failed(msg, time.perf_counter() - t0, fatal)


def train_one(job: Job, cache: DataCache, options: TrainOptions, on_epoch,
              on_step=None) -> Outcome:
    """Train a job, turning any exception into a `failed` outcome (guarded).
    on_epoch(epoch, loss) and on_step(epoch, step, steps) as dse.train.trainer.train's."""
    from dse.train import trainer as train

    def run():
        data = cache.get(job.data, job.recipe.train_subset)
        return train.train(job.spec, job.task, data, job.recipe, amp=options.amp,
                           cuda_graph=options.cuda_graph, channels_last=options.channels_last,
                           on_epoch=on_epoch, on_step=on_step,
                           step_report_s=options.step_report_s, curves=options.curves)

    return guarded(run)


def train_fused(unit: Fused, cache: DataCache, options: TrainOptions, on_epoch,
                on_step=None) -> list[Outcome]:
    """Train a Fused unit's jobs as one fused network (dse.train.fused); an exception fails
    every one of them (guarded). on_epoch(k, epoch, loss) and on_step(k, epoch, step, steps)
    hear job k."""
    from dse.train import fused

    jobs = unit.jobs

    def run():
        data = cache.get(jobs[0].data, jobs[0].recipe.train_subset)
        return fused.train_fused(jobs[0].spec, jobs[0].task, data, [j.recipe for j in jobs],
                                 amp=options.amp, cuda_graph=options.cuda_graph,
                                 channels_last=options.channels_last, on_epoch=on_epoch,
                                 on_step=on_step, step_report_s=options.step_report_s,
                                 curves=options.curves)

    got = guarded(run)
    return got if isinstance(got, list) else [got] * len(jobs)


def train_unit(unit: Job | Fused, cache: DataCache, options: TrainOptions, on_epoch,
               on_step=None) -> list[Outcome]:
    """Train a unit of work, one job or a Fused group: its outcomes in the order of its
    keys (dse.runner.jobs.keys_of); on_epoch(k, …) and on_step(k, …) hear its job k."""
    if isinstance(unit, Fused):
        return train_fused(unit, cache, options, on_epoch, on_step)
    return [train_one(unit, cache, options, lambda e, loss: on_epoch(0, e, loss),
                      None if on_step is None else
                      lambda e, n, steps: on_step(0, e, n, steps))]


def calibrate(job: Job, cache: DataCache, options: TrainOptions) -> Calibrated:
    """How fast a job trains here (dse.train.trainer.calibrate: a few steps, nothing kept);
    an exception gives no speed and its message (training will meet and record it)."""
    import torch

    from dse.train import trainer as train

    try:
        data = cache.get(job.data, job.recipe.train_subset)
        ips, steps = train.calibrate(job.spec, job.task, data, job.recipe, amp=options.amp,
                                     cuda_graph=options.cuda_graph,
                                     channels_last=options.channels_last)
        return Calibrated(job.key, ips, steps)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - as train_one
        msg = described(e, 300)
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    return Calibrated(job.key, None, 0, msg)


def train_together(jobs: list[Job], cache: DataCache, options: TrainOptions,
                    on_epoch, on_step=None) -> list[Outcome]:
    """Train jobs on one CUDA device at once, one stream each, group by group of the same
    data, input resolution and recipe; an exception fails the group it hit (fatal after a sticky
    CUDA error). on_epoch(k, epoch, loss) and on_step(k, epoch, step, steps) hear job k."""
    from dse.data.device import at_resolution
    from dse.train import multistream

    outcomes = {}
    for ref, side, recipe in dict.fromkeys((j.data, j.task.resolution, j.recipe) for j in jobs):
        group = [k for k, j in enumerate(jobs)
                 if (j.data, j.task.resolution, j.recipe) == (ref, side, recipe)]
        t0 = time.perf_counter()
        try:
            data = at_resolution(cache.get(ref, recipe.train_subset), side)
            got = multistream.train_together(
                [(jobs[k].spec, jobs[k].task) for k in group], data, recipe,
                amp=options.amp, channels_last=bool(options.channels_last),
                on_epoch=lambda i, e, loss, group=group: on_epoch(group[i], e, loss),
                on_step=None if on_step is None else
                lambda i, e, n, steps, group=group: on_step(group[i], e, n, steps),
                step_report_s=options.step_report_s)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - as train_one, for the whole group
            msg = described(e, 500)
            got = [Outcome.failed(msg, time.perf_counter() - t0, cuda_fault(e))] * len(group)
        outcomes.update(zip(group, got))
    return [outcomes[k] for k in range(len(jobs))]


class DataCache:
    """Data put on one device, loaded once per DataRef and train subset: host arrays moved to
    the device (dse.data.device), or a dataset streamed from disk (dse.data.ondisk)."""

    def __init__(self, device, options: TrainOptions, arrays: dict | None = None,
                 trainers: int = 1):
        self.device, self.options, self.arrays = device, options, dict(arrays or {})
        self.trainers = trainers  # training processes on this machine, for decode workers
        self.on_device = {}

    def get(self, ref: DataRef, train_subset: int | None):
        from dse.data import datasets
        from dse.data import device as data

        key = (ref, train_subset)
        if key not in self.on_device:
            self.on_device.clear()  # one dataset on the device at a time
            if datasets.get(ref.dataset).stream:
                from dse.data.ondisk import StreamData, default_workers

                self.on_device[key] = StreamData(
                    datasets.stream_root(ref.root), self.device, train_subset,
                    resolution=ref.resolution, workers=default_workers(self.trainers))
            else:
                if ref not in self.arrays:
                    self.arrays[ref] = datasets.load_ref(ref, self.options.load_options())
                self.on_device[key] = data.DeviceData(self.arrays[ref], self.device,
                                                      train_subset)
        return self.on_device[key]


def use_device(device: str, n_here: int):
    """Make `device` current for this process: CPU threads (its share of the cores, or
    $OMP_NUM_THREADS) or the current CUDA device. Returns the torch.device and its name."""
    import torch

    from dse.train.trainer import device_name

    dev = torch.device(device)
    if dev.type == "cpu":
        env = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0
                              else max(1, cpu_cores() // n_here))
    elif dev.index is not None:
        torch.cuda.set_device(dev)
    return dev, device_name(dev)


