"""What `dse train` shows while it runs: the plan (work, ETA, a warning with levers when it is
long), one log line per finished model and, on a terminal, a tqdm bar under them that moves
with every model's steps (models done, in flight, the current model's epoch and step, the
run's ETA, the last model's error or why it diverged or failed). When the output is not a
terminal, a progress line instead at least every LOG_EVERY_S seconds while models train.

The ETA counts work in multiply-adds (dse.runner.plan: training, and the test passes at the
time they take): the plan's speed until the first steps are heard, then the speed this run
has shown.
"""

from __future__ import annotations

import sys
import time

from dse.runner.loop import Summary
from dse.runner.options import WARN_AFTER_S
from dse.runner.plan import Plan
from dse.store.status import Status
from dse.units import clock, eta

LOG_EVERY_S = 30.0  # off a terminal: a progress line after this many seconds of silence


class Progress:
    """A run's report (see dse.runner.loop.run): the plan, log lines, a progress bar on a
    terminal (progress lines elsewhere), and the summary line at the end. `epochs` is the
    recipe's; `warn_after_s` the ETA above which the plan warns (None: never); `command`
    ('train' or 'run') the command whose options the warning's levers name; `dry_run` says
    that only the plan will follow."""

    def __init__(self, stream=None, tty: bool | None = None, epochs: int = 10,
                 warn_after_s: float | None = WARN_AFTER_S, command: str = "train",
                 log_every_s: float | None = None, dry_run: bool = False):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.epochs, self.bar, self.plan_ = epochs, None, None
        self.warn_after_s, self.command, self.dry_run = warn_after_s, command, dry_run
        self.log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
        self.total = self.done = 0
        self.last = ""
        self.flight: dict = {}  # key → [job, mult-adds, share trained, epoch, step, steps]
        self.work_done, self.t0 = 0.0, time.monotonic()
        self.said_at = self.t0  # when the last line was written

    # ---- the report protocol --------------------------------------------------------------

    def start(self, total: int, workers: str):
        self.total, models = total, f"{total} model{'s' * (total != 1)}"
        if total and self.dry_run:
            self._print(f"dry run: {models} to train on {workers}; nothing is claimed or "
                        "trained")
        elif total:
            self._print(f"training {models} on {workers}")

    def info(self, line: str):
        self._print(line)

    def plan(self, plan: Plan):
        self.plan_ = plan
        for line in plan.lines():
            self._print(line)
        warning = plan.warning(self.warn_after_s, self.command)
        if warning:
            self._print(warning)
        self.t0 = time.monotonic()  # training starts now: the calibration is not its speed
        if self.tty and self.total and not self.dry_run:
            from tqdm import tqdm

            self.bar = tqdm(total=100, file=self.stream, dynamic_ncols=True, leave=False,
                            bar_format="[{bar:24}] {desc}", mininterval=0.2)

    def begin(self, job):
        cost = self.plan_.cost_of(job) if self.plan_ else float(job.flops)
        self.flight[job.key] = [job, cost, 0.0, 1, 0, None]
        self.tick()

    def step(self, job, epoch: int, step: int, steps: int):
        if job.key in self.flight:
            self.flight[job.key][2:] = [(epoch - 1 + step / steps) / self._epochs(job), epoch, step,
                                        steps]
        self.tick()

    def epoch(self, job, epoch: int, loss: float):
        if job.key in self.flight:
            f = self.flight[job.key]
            f[2:] = [epoch / self._epochs(job), epoch, f[5], f[5]]
        self.tick()

    def result(self, job, row: dict):
        self.done += 1
        f = self.flight.pop(job.key, None)
        self.work_done += f[1] if f else 0.0
        err = f"{row['error']:.2f}%" if row["error"] is not None else row["status"]
        self.last = (f"{job.model_id[:8]} {err}" if row["status"] == Status.DONE else
                     f"{job.model_id[:8]} {row['status']}: {row['message'][:60]}")
        line = (f"[{self.done}/{self.total}] {job.space} {job.model_id} {row['status']} "
                f"error {err}  {row['train_seconds'] or 0:.1f}s")
        if row.get("images_per_second"):
            line += f"  {row['images_per_second']:.0f} img/s"
        if row["status"] != Status.DONE:
            line += f"  ({row['message']})"
        self._print(line)

    def tick(self):
        if self.bar is not None:
            self.bar.n = min(100.0, 100 * self._fraction())
            self.bar.set_description_str(self._status(short=True), refresh=False)
            self.bar.refresh()
        elif self.flight and time.monotonic() - self.said_at >= self.log_every_s:
            self._print("progress: " + self._status(short=False))

    def end(self, summary: Summary):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.stream.write(summary.line() + "\n" if summary.total else
                          "nothing to train: every sampled model has a result\n")
        self.stream.flush()

    # ---- where the run is -----------------------------------------------------------------

    def _work(self) -> float:
        """Multiply-adds trained so far: finished models, and the trained part of the others."""
        return self.work_done + sum(f[1] * f[2] for f in self.flight.values())

    def _fraction(self) -> float:
        """The share of the run's work done (of its models, without a plan)."""
        if self.plan_ and self.plan_.work:
            return self._work() / self.plan_.work
        return (self.done + sum(f[2] for f in self.flight.values())) / max(1, self.total)

    def _eta(self) -> float | None:
        """Seconds left: the work left at the speed this run has shown, or at the plan's
        speed before it has shown any."""
        p, elapsed, work = self.plan_, time.monotonic() - self.t0, self._work()
        if p is None or not p.work:
            return None
        if work > 0:
            return max(0.0, (p.work - work) * elapsed / work / p.tasks)
        return None if p.eta_s is None else max(0.0, p.eta_s - elapsed)

    def _epochs(self, job) -> int:
        """The epochs a job trains: its own recipe's (a promoted or drawn recipe may differ
        from the run's)."""
        recipe = getattr(job, "recipe", None)
        return recipe.epochs if recipe is not None else self.epochs

    def _status(self, short: bool) -> str:
        """Models done and in flight, each one's epoch and step, the share done and the ETA."""
        where = []
        for job, _, _, e, s, n in list(self.flight.values())[:2]:
            name = job.model_id[:8] if short else f"{job.space}/{job.model_id}"
            seed = getattr(getattr(job, "recipe", None), "seed", 0)
            name += f" seed {seed}" if seed else ""
            where.append(f"{name} epoch {e}/{self._epochs(job)}"
                         + (f" step {s}/{n}" if n else ""))
        more = len(self.flight) - len(where)
        inside = ", ".join(where) + (f" and {more} more" if more > 0 else "")
        text = (f"{self.done}/{self.total} models, {len(self.flight)} in flight"
                + (f" ({inside})" if inside else ""))
        text += (f" · {100 * self._fraction():.1f}%" if short else
                 f"; {100 * self._fraction():.1f}% of the work in "
                 f"{clock(time.monotonic() - self.t0)}")
        text += f" · ETA {eta(self._eta())}" if short else f"; ETA {eta(self._eta())}"
        if short and self.last:
            text += f" · last {self.last}"
        return text

    def _print(self, line: str):
        self.said_at = time.monotonic()
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
