"""The record of each training run on a store (pure): what its plan predicted when it started
and how long it took, in <store>/runs/<name>.json, so that `dse status` shows a stage's
prediction beside its time (an experiment's train stage, each promote stage, each rung of a
successive-halving stage are runs of their own).

    name = start(store, plan, spaces, options)     # after the plan is said
    finish(store, name, summary, seconds, "done")  # or "stopped" (interrupted)

A record that cannot be written (a read-only store) is skipped: it never stops training.
"""

from __future__ import annotations

import contextlib
import os

from dse.errors import DseError
from dse.runner.options import TrainOptions
from dse.runner.plan import Plan
from dse.store.core import Store
from dse.store.recipes import label
from dse.system import HOST, pid_alive, stamp
from dse.train.recipe import spec_of


def what(options: TrainOptions) -> str:
    """The run's recipe and its choice of models, in words."""
    o = options
    picks = [f"top {o.top}" if o.top else "", f"sample {o.sample}" if o.sample else "",
             f"{o.seeds} seeds" if o.seeds else "", "curves" if o.curves else ""]
    return " ".join([label(spec_of(o.recipe, o.draws)), *(p for p in picks if p)])


def start(store: Store, plan: Plan, spaces, options: TrainOptions) -> dict | None:
    """Record a run's prediction as it starts (None when it cannot be written)."""
    at = stamp()
    rec = dict(name=f"{at.replace(':', '').replace('-', '')}-{HOST}-{os.getpid()}",
               started_at=at, host=HOST, pid=os.getpid(), spaces=list(spaces),
               what=what(options),
               models=plan.models, predicted_s=None if plan.eta_s is None
               else plan.spent_s + plan.eta_s, plan=plan.to_json(), status="running",
               actual_s=None, finished_at=None, trained=0)
    with contextlib.suppress(OSError, DseError):
        store.write_run(rec["name"], rec)
        return rec
    return None


def finish(store: Store, rec: dict | None, trained: int, seconds: float, status: str) -> None:
    """Record how a run ended: `status` (done | stopped), its wall seconds from its start
    (reading the data included) and the models it trained."""
    if rec is None:
        return
    rec = dict(rec, status=status, actual_s=seconds, finished_at=stamp(), trained=trained)
    with contextlib.suppress(OSError, DseError):
        store.write_run(rec["name"], rec)


def rows(store: Store) -> list[dict]:
    """The store's runs, oldest first, with `ratio` (actual over predicted seconds); a run
    still "running" whose process on this host is gone was killed."""
    out = []
    for r in store.read_runs():
        p, a = r.get("predicted_s"), r.get("actual_s")
        if r.get("status") == "running" and r.get("host") == HOST and r.get("pid") and \
                not pid_alive(int(r["pid"])):
            r = dict(r, status="killed")
        out.append(dict(r, ratio=a / p if p and a is not None else None))
    return out
