"""What `dse train` shows while it runs: one log line per finished model and, on a terminal,
a tqdm progress bar under them (models done, in flight, ETA, the last model's error or why
it diverged or failed). When the output is not a terminal, only the log lines."""

from __future__ import annotations

import sys

from dse.runner.loop import Summary


class Progress:
    """A run's report (see dse.runner.loop.run): log lines, a progress bar on a terminal, and the
    summary line at the end. `epochs` is the recipe's, to count partly trained models."""

    def __init__(self, stream=None, tty: bool | None = None, epochs: int = 10):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.epochs, self.bar = epochs, None

    def start(self, total: int, workers: str):
        self.total, self.done, self.last, self.epoch_of = total, 0, "", {}
        if not total:
            return
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, dynamic_ncols=True, leave=False,
                            bar_format="[{bar:24}] {desc}  ETA {remaining}",
                            mininterval=0.2)
        self._print(f"training {total} model{'s' * (total != 1)} on {workers}")

    def begin(self, job):
        self.epoch_of[job.key] = 0
        self.tick()

    def info(self, line: str):
        self._print(line)

    def epoch(self, job, epoch: int, loss: float):
        self.epoch_of[job.key] = epoch
        self.tick()

    def result(self, job, row: dict):
        self.done += 1
        self.epoch_of.pop(job.key, None)
        err = f"{row['error']:.2f}%" if row["error"] is not None else row["status"]
        self.last = (f"{job.model_id[:8]} {err}" if row["status"] == "done" else
                     f"{job.model_id[:8]} {row['status']}: {row['message'][:60]}")
        line = (f"[{self.done}/{self.total}] {job.space} {job.model_id} {row['status']} "
                f"error {err}  {row['train_seconds'] or 0:.1f}s")
        if row.get("images_per_second"):
            line += f"  {row['images_per_second']:.0f} img/s"
        if row["status"] != "done":
            line += f"  ({row['message']})"
        self._print(line)

    def tick(self):
        if self.bar is None:
            return
        self.bar.n = min(self.total, self.done + sum(self.epoch_of.values()) / self.epochs)
        self.bar.set_description_str(
            f"{self.done}/{self.total} models  {len(self.epoch_of)} in flight"
            + (f"  last: {self.last}" if self.last else ""), refresh=False)
        self.bar.refresh()

    def _print(self, line: str):
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def end(self, summary: Summary):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.stream.write(summary.line() + "\n" if summary.total else
                          "nothing to train: every sampled model has a result\n")
        self.stream.flush()

