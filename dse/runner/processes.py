"""Worker processes: one per (device, job slot), each training one model at a time.

A worker takes jobs from its task queue and sends `AtStep`, `Epoch` and `Finished` events
back on its own result queue; asked to `Calibrate` a job, it times a few of its steps and
answers `Calibrated`. After a fatal CUDA error (dse.runner.worker.cuda_fault) it records the
model and exits; one that cannot take its device sends `StartFailed` and exits, and its job is given
back (`Returned`) uncharged; one killed while training (OOM killer, segfault) fails its
model. Each is restarted after a back-off (BACKOFF_S), up to MAX_FAILURES in a row; when
every slot is given up, `unusable` says why.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import time
from dataclasses import dataclass

from dse.errors import described
from dse.runner.jobs import (
    BACKOFF_S,
    MAX_FAILURES,
    AtStep,
    Calibrate,
    Calibrated,
    Epoch,
    Finished,
    Fused,
    Job,
    Returned,
    StartFailed,
    keys_of,
)
from dse.runner.options import TrainOptions
from dse.runner.worker import DataCache, calibrate, train_unit, use_device
from dse.train.outcome import Outcome

CALIBRATE_TIMEOUT_S = 300.0  # a worker's start, its data and a few steps; then train unplanned


def _worker_main(device: str, n_here: int, n_all: int, options: TrainOptions, tasks, results,
                 parent: int) -> None:
    """A worker process: train the jobs it is sent on `device` until it gets None."""
    import signal

    with contextlib.suppress(Exception):  # die with the parent (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    try:
        dev, name = use_device(device, n_here)
        cache = DataCache(dev, options, trainers=n_all)
    except Exception as e:  # noqa: BLE001 - CUDA busy (exclusive mode), full, or missing
        results.put(StartFailed(described(e, 300)))
        return
    while True:
        try:
            job = tasks.get(timeout=5)
        except queue_mod.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        if isinstance(job, Calibrate):
            results.put(calibrate(job.job, cache, options))
            continue

        def send(ev):
            if os.getppid() != parent:
                raise SystemExit(0)
            results.put(ev)

        keys = keys_of(job)
        outcomes = train_unit(job, cache, options,
                              lambda i, epoch, loss, keys=keys: send(Epoch(keys[i], epoch, loss)),
                              lambda i, epoch, n, steps, keys=keys: send(
                                  AtStep(keys[i], epoch, n, steps)))
        for k, outcome in zip(keys, outcomes):
            results.put(Finished(k, outcome, name))
        if any(o.fatal for o in outcomes):
            return  # this process's CUDA context is gone; a fresh process takes over


@dataclass
class _Slot:
    """One worker slot: its process (None while it waits to restart), task queue, own result
    queue (a worker killed while writing holds its queue's lock forever, which would block
    every writer of a shared queue), the keys of the jobs it trains and has not finished (a
    Job, or the jobs of a Fused unit; empty when idle), and its record of failures."""

    process: object = None
    tasks: object = None
    results: object = None
    keys: tuple = ()
    failures: int = 0              # in a row: start failures, fatal errors, deaths
    restart_at: float = 0.0        # monotonic time of the next start while process is None
    why: str = ""                  # the last failure
    exiting: bool = False          # its worker said it exits (after a fatal CUDA error)
    given_up: bool = False

    @property
    def ready(self) -> bool:
        return self.process is not None and not (self.exiting or self.given_up)


class Processes:
    """Worker processes, one per entry of `devices`; each trains one model at a time. A
    worker that dies (OOM killer, segfault) fails its model; one that cannot start gives its
    job back; either way it is restarted after a back-off, up to MAX_FAILURES in a row."""

    def __init__(self, devices: list[str], options: TrainOptions):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.devices, self.options = devices, options
        self.slots = [_Slot() for _ in devices]
        self.early = [[] for _ in devices]  # events a slot sent while it calibrated
        self.unusable: str | None = None

    def _start(self, i: int) -> None:
        s = self.slots[i]
        s.tasks, s.results, s.exiting = self.ctx.Queue(), self.ctx.Queue(), False
        n_here = self.devices.count(self.devices[i])
        # not daemonic: a worker may start processes of its own (the DataLoader of a
        # streamed dataset); it still dies with this process (prctl) and is joined or killed
        # on exit
        s.process = self.ctx.Process(
            target=_worker_main, name=f"dse-worker-{i}", daemon=False,
            args=(self.devices[i], n_here, len(self.devices), self.options, s.tasks,
                  s.results, os.getpid()))
        s.process.start()

    def __enter__(self):
        for i in range(len(self.devices)):
            self._start(i)
        return self

    def __exit__(self, *exc):
        live = [s for s in self.slots if s.process is not None]
        for s in live:
            with contextlib.suppress(Exception):
                s.tasks.put(None)
        for s in live:
            s.process.join(timeout=None if not s.keys and exc[0] is None else 0.5)
            if s.process.is_alive():
                s.process.kill()
                s.process.join()

    def free(self) -> bool:
        return any(s.ready and not s.keys for s in self.slots)

    def submit(self, job: Job | Fused):
        s = next(s for s in self.slots if s.ready and not s.keys)
        s.keys = keys_of(job)
        s.tasks.put(job)

    def calibrate(self, job: Job, timeout: float = CALIBRATE_TIMEOUT_S) -> Calibrated:
        """Time a few steps of `job` on the first idle worker and wait for the answer (a
        late answer is dropped; the worker then trains as usual)."""
        return self.calibrate_many([job], timeout)[0]

    def calibrate_many(self, jobs: list[Job], timeout: float = CALIBRATE_TIMEOUT_S
                       ) -> list[Calibrated]:
        """Time a few steps of each job, as many at once as there are idle workers (one
        each: they share the machine as training will), and wait for every answer."""
        idle = [i for i, s in enumerate(self.slots) if s.ready and not s.keys]
        if not idle:
            return [Calibrated(j.key, None, 0, "no worker was ready") for j in jobs]
        out = []
        for at in range(0, len(jobs), len(idle)):
            group = list(zip(idle, jobs[at:at + len(idle)]))
            for i, job in group:
                self.slots[i].tasks.put(Calibrate(job))
            deadline = time.monotonic() + timeout
            out += [self._calibrated(i, job, deadline, timeout) for i, job in group]
        return out

    def _calibrated(self, i: int, job: Job, deadline: float, timeout: float) -> Calibrated:
        """Worker i's answer to the calibration of `job`, waited for until `deadline` (the
        call's `timeout` from its start)."""
        s = self.slots[i]
        while time.monotonic() < deadline:
            try:
                ev = s.results.get(timeout=0.2)
            except queue_mod.Empty:
                if not s.process.is_alive():
                    return Calibrated(job.key, None, 0, f"its worker process died (exit code "
                                      f"{s.process.exitcode})")
                continue
            if isinstance(ev, Calibrated):
                return ev
            self.early[i].append(ev)  # booked by the next events()
            if isinstance(ev, StartFailed):
                return Calibrated(job.key, None, 0, f"its worker cannot start: {ev.message}")
        return Calibrated(job.key, None, 0, f"no answer within {timeout:.0f} s")

    def events(self, timeout: float) -> list:
        got, self.early = self.early, [[] for _ in self.slots]  # what each worker sent
        deadline = time.monotonic() + timeout
        while True:
            for s, g in zip(self.slots, got):
                if s.process is not None and (s.process.is_alive() or s.process.exitcode == 0):
                    g += _drain(s.results)
            if any(got) or time.monotonic() >= deadline or any(
                    s.process is not None and not s.process.is_alive() for s in self.slots):
                break
            time.sleep(0.02)
        return self._settle(got)

    def _settle(self, got: list[list]) -> list:
        """Book what the workers sent, account for dead ones and restart them in time."""
        out, now = [], time.monotonic()
        for i, s in enumerate(self.slots):
            if s.process is not None and not s.process.is_alive():
                got[i] += _drain(s.results)  # its last words
            for ev in got[i]:
                if isinstance(ev, Calibrated):
                    continue  # a calibration that came after its wait ended
                if isinstance(ev, StartFailed):
                    s.failures, s.why = s.failures + 1, f"cannot start: {ev.message}"
                    s.exiting = True
                    out += [Returned(k) for k in s.keys]
                    s.keys = ()
                    continue
                out.append(ev)
                if isinstance(ev, Finished):
                    s.keys = tuple(k for k in s.keys if k != ev.key)
                    fatal = bool(ev.outcome.fatal)
                    if not (fatal and s.exiting):  # a fused unit's fault counts once
                        s.failures = s.failures + 1 if fatal else 0
                    s.why = ev.outcome.message if fatal else s.why
                    s.exiting = s.exiting or fatal
            if s.process is None or s.process.is_alive():
                continue
            if s.keys:  # killed while training (OOM killer, segfault)
                why = f"worker process died (exit code {s.process.exitcode})"
                out += [Finished(k, Outcome.failed(why), self.devices[i]) for k in s.keys]
                s.keys, s.failures, s.why = (), s.failures + 1, why
            s.process = None
            if s.failures >= MAX_FAILURES:
                s.given_up = True
            else:
                s.restart_at = now + (BACKOFF_S[s.failures - 1] if s.failures else 0.0)
        for i, s in enumerate(self.slots):
            if s.process is None and not s.given_up and now >= s.restart_at:
                self._start(i)
        if all(s.given_up for s in self.slots):
            self.unusable = "; ".join(sorted({f"{d}: {s.why}" for d, s in
                                              zip(self.devices, self.slots)})) + \
                f" ({MAX_FAILURES} failures in a row of every worker)"
        return out


def _drain(q) -> list:
    """Everything waiting in a queue, without blocking."""
    out = []
    with contextlib.suppress(queue_mod.Empty):
        while True:
            out.append(q.get_nowait())
    return out
