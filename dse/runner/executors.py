"""Where models train: executors that take jobs and give back typed events.

`InProcess` trains on the calling thread (CPU, one GPU, one job); `dse.runner.processes.Processes`
runs one worker process per (device, job slot). Both answer `free()`, `submit(job)`,
`calibrate(job)` and `events(timeout)`, which returns `AtStep` events (how far into an epoch a
model is, about once a second), `Epoch` events (a model finished an epoch), `Finished`
events (its outcome) and `Returned` events (a job given back untrained). A worker never
writes to the store: the run loop that owns the claims writes the results.

Faults: a CUDA error that is not an out-of-memory leaves a process's CUDA context unusable,
so after one the model is recorded as failed and the worker exits; a fresh process replaces
it. A worker that cannot start (CUDA busy or full) gives its job back uncharged. Restarts
wait 1, 4, 16 s; a slot whose worker failed MAX_FAILURES times in a row is given up, and when
every slot is, `unusable` says why and the run stops with the rest of its models pending.
"""

from __future__ import annotations

from dse.errors import DseError
from dse.runner.jobs import AtStep, Calibrated, Epoch, Finished, Fused, Job, keys_of
from dse.runner.options import TrainOptions
from dse.runner.processes import Processes
from dse.runner.worker import DataCache, calibrate, train_together, train_unit, use_device


def devices_for(device: str, jobs: int) -> list[str]:
    """One entry per worker: `jobs` per device; 'auto'/'cuda' use every GPU."""
    import torch

    from dse.train.trainer import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count()) for _ in range(jobs)]
    return [str(dev)] * jobs


def describe(workers: list[str]) -> str:
    """'1 worker (cpu)', '8 workers (4 × cuda:0, 4 × cuda:1)'."""
    per = {w: workers.count(w) for w in workers}
    where = ", ".join(f"{k} × {w}" if k > 1 else w for w, k in per.items())
    return f"{len(workers)} worker{'s' * (len(workers) > 1)} ({where})"


def executor(workers: list[str], options: TrainOptions, arrays: dict, on_event=None):
    """The executor for these workers: in-process for one, CUDA streams in this process
    with concurrency="streams", worker processes for more. on_event(AtStep | Epoch) hears the
    progress of in-process training as it happens (worker processes send theirs as
    events)."""
    if options.concurrency == "streams":
        if len(set(workers)) != 1 or not workers[0].startswith("cuda"):
            raise DseError(f"models on CUDA streams need one CUDA device (got "
                           f"{', '.join(dict.fromkeys(workers))}); name it with --device "
                           "cuda:N, or use worker processes")
        return InProcess(workers[0], options, arrays, on_event, together=len(workers))
    if len(workers) == 1:
        return InProcess(workers[0], options, arrays, on_event)
    return Processes(workers, options)


# ---- executors -------------------------------------------------------------------------------

class InProcess:
    """Trains on the calling thread: the job submitted, or up to `together` jobs at once on
    CUDA streams (dse.train.multistream), while `events` is called; steps and epochs are
    handed to `on_event(AtStep | Epoch)` as they happen. After a fatal CUDA error this process
    cannot train again: `unusable` says why."""

    def __init__(self, device: str, options: TrainOptions, arrays: dict, on_event=None,
                 together: int = 1):
        try:
            self.dev, self.name = use_device(device, 1)
        except Exception as e:  # noqa: BLE001 - CUDA busy (exclusive mode), full, or missing
            raise DseError(f"{device} cannot be used: "
                           f"{' '.join(f'{type(e).__name__}: {e}'.split())[:300]}; nothing "
                           "was trained") from None
        self.options, self.jobs, self.together = options, [], together
        self.on_event = on_event or (lambda ev: None)
        self.cache = DataCache(self.dev, options, arrays)
        self.unusable: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def free(self) -> bool:
        return len(self.jobs) < self.together and self.unusable is None

    def submit(self, job: Job | Fused):
        self.jobs.append(job)

    def calibrate(self, job: Job) -> Calibrated:
        return calibrate(job, self.cache, self.options)

    def events(self, timeout: float) -> list:
        units, self.jobs = self.jobs, []
        if not units:
            return []
        done = []  # (key, outcome)
        plain = [u for u in units if not isinstance(u, Fused)]
        if self.together > 1 and plain:  # CUDA streams; a Fused unit trains on its own
            done += zip([j.key for j in plain], train_together(
                plain, self.cache, self.options,
                lambda k, epoch, loss: self.on_event(Epoch(plain[k].key, epoch, loss)),
                lambda k, epoch, step, steps: self.on_event(AtStep(plain[k].key, epoch, step,
                                                                   steps))))
            units = [u for u in units if isinstance(u, Fused)]
        for u in units:
            keys = keys_of(u)
            done += zip(keys, train_unit(
                u, self.cache, self.options,
                lambda k, epoch, loss, keys=keys: self.on_event(Epoch(keys[k], epoch, loss)),
                lambda k, epoch, step, steps, keys=keys: self.on_event(
                    AtStep(keys[k], epoch, step, steps))))
        fatal = [o for _, o in done if o.fatal]
        if fatal:
            self.unusable = f"{self.dev} ({self.name}): {fatal[0].message}"
        return [Finished(k, o, self.name) for k, o in done]
