"""Training a population on a cluster (pure: no torch until a task trains).

One submission is a job array of K tasks, each running the ordinary trainer loop
(dse.runner.loop.run) on a store that every node sees; the leases of dse.runner.leases keep two
tasks from training one model, and a task with nothing left to claim ends at once. Jobs go through
submitit: `slurm` (sbatch), `local` (processes on this machine) or `debug` (in this process).

    record = submit(store, spaces, TrainOptions(...), ClusterOptions("slurm", tasks=8))
    follow(store, record["name"])          # what `dse train --cluster ... --wait` shows

Preemption and time limits: Slurm's signal (USR2, or SIGTERM followed by it) makes a task
give its claims back and requeue itself through submitit's checkpoint, at most max_requeues
times. A task killed hard leaves claims that go stale (dse.runner.leases) and are taken over. Each
task records its own state under the store (Store.write_job), so `dse status` can tell a
failure (data not readable on the node, say) from a task still running.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dse.errors import ArgumentError, DseError, one_line
from dse.runner.options import ClusterOptions, TrainOptions, parse_slurm_args  # noqa: F401 (API)
from dse.runner.pending import jobs_of, select_spaces, status
from dse.runner.submissions import Submission, TaskState
from dse.store.core import Store
from dse.store.schema import RESULT_STATUSES
from dse.system import HOST, pid_alive, stamp

FINAL = ("done", "failed", "stopped", "cancelled", "killed")  # task states that do not change
REQUEUE_GRACE_S = 5.0  # after a SIGTERM on Slurm, how long a task waits for USR2 (preemption)


# ---- a task ------------------------------------------------------------------------------------

class Stop(KeyboardInterrupt):
    """A signal asked this task to stop: raised in the trainer loop, which gives the claims
    back and, as for Ctrl-C, does not count the model in flight as failed. args: (signum,)"""


def _usr_signal() -> int:
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


_RECEIVED: list[int] = []  # the stop signals this task received, in order


def _raise_stop(signum, frame):
    """Stop the task at the first signal; later ones (Slurm's USR2 right after its SIGTERM)
    are only recorded, so they cannot cut short the claims being given back. Python runs
    this in the main thread even when another thread (torch's) took the signal."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, _usr_signal()})
    _RECEIVED.append(signum)
    if len(_RECEIVED) == 1:
        raise Stop(signum)


@dataclass(frozen=True)
class TrainTask:
    """One array task: the trainer loop over the shared store. submitit calls it with the
    task's index, and calls `checkpoint` when Slurm signals preemption or the time limit."""

    store: str
    name: str                         # the submission (Store.job_dir)
    spaces: tuple
    options: TrainOptions
    cluster: str
    max_requeues: int = 3
    requeues: int = 0
    tasks: int = 1                    # tasks training at once, sharing the models (the ETA)

    def checkpoint(self, index: int):
        """The same task again (the store is its checkpoint); None once requeued enough."""
        import submitit

        if self.requeues >= self.max_requeues:
            return None
        return submitit.helpers.DelayedSubmission(replace(self, requeues=self.requeues + 1),
                                                  index)

    def __call__(self, index: int) -> dict:
        store, job_id = Store(self.store), _job_id(self.cluster, index)
        rec = dict(index=index, job_id=job_id, state="running", host=HOST, pid=os.getpid(),
                   started_at=stamp(), requeues=self.requeues, message="")

        def note(state: str, message: str = "", **extra):
            rec.update(state=state, message=message, ended_at=stamp(), **extra)
            if message:
                print(f"dse task {index}: {state}: {message}", flush=True)
            with contextlib.suppress(DseError):
                store.write_job(self.name, rec, index)

        store.write_job(self.name, rec, index)
        print(f"dse task {index} of {self.name} (job {job_id}) on {HOST}, pid {os.getpid()}, "
              f"requeued {self.requeues}x", flush=True)
        usr, mask = _usr_signal(), signal.pthread_sigmask(signal.SIG_BLOCK, [])
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, usr)}
        _RECEIVED.clear()
        for s in handlers:
            signal.signal(s, _raise_stop)
        try:
            counts = self._train()
        except Stop as stop:
            self._stopped(stop.args[0], handlers[usr], note)
        except BaseException as e:
            msg = str(e) if isinstance(e, DseError) else f"{type(e).__name__}: {e}"
            note("failed", one_line(msg))  # the traceback follows in the .err log
            raise
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        note("done", **counts)
        return counts

    def _train(self) -> dict:
        """Run the trainer loop until a pass trains nothing (models of a task killed meanwhile
        are taken over once their claims are stale)."""
        from dse.runner import loop as runner
        from dse.runner.progress import Progress

        counts = dict.fromkeys(RESULT_STATUSES, 0)
        while True:
            s = runner.run(self.store, self.spaces, self.options, tasks=self.tasks,
                           report=Progress(tty=False, epochs=self.options.recipe.epochs,
                                           warn_after_s=None))
            for k, v in s.counts.items():
                counts[k] += v
            if s.finished == 0 or self.options.max_models is not None:
                return counts

    def _stopped(self, signum: int, requeue, note) -> None:
        """After a signal, with every claim given back: requeue (Slurm's USR2) or end."""
        import submitit

        usr, name = _usr_signal(), signal.Signals(signum).name
        if signum == signal.SIGTERM and self.cluster == "slurm":  # preemption: TERM, then USR2
            end = time.monotonic() + REQUEUE_GRACE_S
            while usr not in _RECEIVED and time.monotonic() < end:
                # USR2 is either pending here (blocked) or recorded by _raise_stop when
                # another thread took it, which the main thread sees between waits
                with contextlib.suppress(OSError):
                    if signal.sigtimedwait([usr], 0.1):
                        _RECEIVED.append(usr)
            signum = usr if usr in _RECEIVED else signum
        if signum == usr and callable(requeue):
            if self.requeues < self.max_requeues:  # else checkpoint() refuses: see below
                note("requeued", f"{name}: claims given back; requeued "
                     f"({self.requeues + 1} of at most {self.max_requeues})")
            try:
                requeue(usr, None)  # submitit: checkpoint, requeue and exit
            except submitit.core.utils.UncompletedJobError as e:
                note("stopped", f"{name}: claims given back; not requeued: {e}")
                raise
        note("cancelled", f"{name}: claims given back")
        raise SystemExit(128 + signum)


def _job_id(cluster: str, index: int) -> str:
    if cluster == "debug":
        return f"debug-{index}"
    import submitit

    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:  # called outside a submitit job
        return f"{cluster}-{os.getpid()}"


# ---- submitting --------------------------------------------------------------------------------

def submit(store: Store | str, spaces=(), options: TrainOptions | None = None,
           cluster: ClusterOptions | None = None, echo=None) -> dict:
    """Submit one job array of cluster.tasks trainer tasks over the store's pending models
    (spaces: names or aliases, default all) and record it under the store; returns the
    record. With `debug` the tasks run here, one after the other, before it returns."""
    options, cluster = options or TrainOptions(), cluster or ClusterOptions()
    store = Store(Store.existing(store).root.resolve())
    names = select_spaces(store, spaces, options.data_dir)
    pending = sum(len(jobs_of(store, n, options.retry_failed, options.data_dir, options))
                  for n in names)
    if options.data_dir is not None:  # the tasks may start elsewhere
        options = replace(options, data_dir=str(Path(options.data_dir).resolve()))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    name = f"{when}-{secrets.token_hex(3)}"
    logs = store.job_logs_dir(name)
    task = TrainTask(str(store.root), name, tuple(names), options, cluster.cluster,
                     cluster.max_requeues,
                     tasks=min(cluster.tasks, cluster.array_parallelism or cluster.tasks))
    sub = Submission(name, cluster.cluster, cluster.tasks, [], stamp(), HOST, str(store.root),
                     names, pending, str(logs), " ".join(sys.argv),
                     dict(train=asdict(options), cluster=asdict(cluster)))
    if cluster.cluster == "debug":
        sub.job_ids = [f"debug-{k}" for k in range(cluster.tasks)]
        store.write_job(name, sub.record())
        for k in range(cluster.tasks):
            if echo:
                echo(f"{name}: task {k} of {cluster.tasks}, in this process")
            task(k)
        return sub
    jobs = _submit_array(task, cluster, logs)
    sub.job_ids = [j.job_id for j in jobs]
    store.write_job(name, sub.record())
    return sub


def _submit_array(task: TrainTask, cluster: ClusterOptions, logs: Path) -> list:
    import shutil

    import submitit

    if cluster.cluster == "slurm" and shutil.which("sbatch") is None:
        raise DseError("--cluster slurm needs Slurm's sbatch on PATH (submit from a login "
                       "node of the cluster); --cluster local runs the tasks on this machine")
    ex = submitit.AutoExecutor(folder=logs, cluster=cluster.cluster,
                               **{f"{cluster.cluster}_max_num_timeout": cluster.max_requeues})
    ex.update_parameters(**cluster.parameters())
    try:
        return ex.map_array(task, range(cluster.tasks))
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError, OSError) as e:
        raise DseError(f"the cluster refused the job: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    errs = [ln for ln in text.splitlines() if "error" in ln.lower()]
    return one_line(errs[-1] if errs else text.splitlines()[0] if text else repr(e))


# ---- watching and cancelling -------------------------------------------------------------------

def jobs(store: Store | str) -> list[Submission]:
    """Every submission recorded in the store, each with `task_states`: per task its index,
    job id, state (pending, running, requeued, or final: done, failed, stopped, cancelled,
    killed), host, message and log file."""
    store = Store(store)
    out = []
    for rec in map(Submission.from_record, store.read_jobs()):
        final = all(r.get("state") in FINAL for r in rec.task_records.values())
        queue = {} if final and len(rec.task_records) == rec.tasks else _queue_states(rec)
        rec.task_states = [_task_state(rec, k, queue) for k in range(rec.tasks)]
        out.append(rec)
    return out


def _task_state(rec: Submission, k: int, queue: dict | None) -> TaskState:
    jid = rec.job_ids[k] if k < len(rec.job_ids) else ""
    mine = rec.task_records.get(k) or {}
    log = _log(rec, jid)
    here = TaskState(k, jid, mine.get("state", "pending"), mine.get("host"),
                     mine.get("message", ""), str(log.stdout) if log else None)
    if here.state in FINAL:
        return here
    if queue is None:
        return replace(here, message="Slurm cannot be asked from here (squeue failed): as "
                                     "last recorded")
    if queue.get(jid):  # still in the cluster's queue (or, local, its process is alive)
        if not mine or queue[jid] in ("PENDING", "REQUEUED"):
            return replace(here, state="requeued" if mine else "pending")
        return here
    error = _result_error(log)
    return replace(here, state="failed" if error else "killed",
                   message=error or ("ended without recording an outcome (killed hard, or the "
                                     "node failed); its leases go stale and are taken over"))


def _log(rec: Submission, jid: str):
    if rec.cluster == "debug" or not jid:
        return None
    from submitit.core.utils import JobPaths

    return JobPaths(rec.log_dir, job_id=jid, task_id=0)


def _result_error(paths) -> str:
    """The last line of the exception a task's result file holds, if any."""
    if paths is None or not paths.result_pickle.exists():
        return ""
    import pickle

    with contextlib.suppress(Exception):
        outcome, value = pickle.loads(paths.result_pickle.read_bytes())
        if outcome == "error":
            return str(value).strip().splitlines()[-1]
    return ""


def _queue_states(rec: Submission) -> dict | None:
    """job id → its state while the cluster still holds it (local: RUNNING while the
    process that runs the task lives; debug: nothing); None when Slurm cannot be asked."""
    ids = rec.job_ids
    if rec.cluster == "local":
        here = rec.host == HOST
        return {j: "RUNNING" for j in ids if here and j.isdigit() and pid_alive(int(j))}
    if rec.cluster != "slurm" or not ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:  # squeue refuses the ids of jobs it has forgotten: they ended
        return {} if "Invalid job id" in out.stderr else None
    return dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if " " in line)


def cancel(store: Store | str, name: str | None = None) -> list[tuple[str, str]]:
    """Cancel the unfinished tasks of every submission of the store (or the one named);
    returns (submission, job id) of each. A running task gives its claims back."""
    import submitit

    done = []
    recs = jobs(store)
    if name is not None and name not in {r.name for r in recs}:
        raise ArgumentError("name", f"{name!r} is not a submission of {store} (it has "
                            f"{', '.join(r.name for r in recs) or 'none'})")
    for rec in recs:
        if name is not None and rec.name != name:
            continue
        for t in rec.task_states:
            if t.state in FINAL:
                continue
            if rec.cluster == "slurm":
                submitit.SlurmJob(rec.log_dir, t.job_id).cancel(check=False)
            elif rec.cluster == "local":
                if rec.host != HOST:
                    raise DseError(f"{rec.name} runs on {rec.host}; cancel it there")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(t.job_id), signal.SIGTERM)  # its controller passes it on
            if t.state == "pending":
                Store(store).write_job(rec.name, dict(
                    index=t.index, job_id=t.job_id, state="cancelled", host=None,
                    message="cancelled before it started", ended_at=stamp()), t.index)
            done.append((rec.name, t.job_id))
    return done


def follow(store: Store | str, name: str, echo, poll: float = 2.0) -> list[TaskState]:
    """Print a line whenever the progress of a submission changes, until its tasks end;
    returns the final task states."""
    last = None
    while True:
        (rec,) = [r for r in jobs(store) if r.name == name]
        rows = [r for r in status(store) if r["space"] in rec.spaces]
        states = rec.task_states
        tally: dict = {}
        for t in states:
            tally[t.state] = tally.get(t.state, 0) + 1
        done = sum(r["sampled"] - r["pending"] for r in rows)
        line = (f"{done}/{sum(r['sampled'] for r in rows)} models trained, "
                f"{sum(r['in_flight'] for r in rows)} in flight; tasks: "
                + ", ".join(f"{n} {s}" for s, n in sorted(tally.items())))
        if line != last:
            echo(line)
            last = line
        if all(t.state in FINAL for t in states):
            return states
        time.sleep(poll)
