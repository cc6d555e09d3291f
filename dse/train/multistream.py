"""Several models trained at once by one process on one GPU, each on its own CUDA stream with
its own captured graph (torch, CUDA only).

Without MPS, processes that share a GPU take turns: kernels of different processes never run
together, and the small proxy models leave most of a large GPU idle. Here K models share a
process. Every step each model's graph is replayed on its own stream, so their kernels can
overlap. All K see the same batches (dse.train.trainer already gives every model of a recipe
the same shuffles and crops: the generator is seeded by the recipe), and each batch is built
once. The step, its warm-up and capture are dse.train.step's, as for one model; the
once-per-epoch loss read is dse.train.trainer.train's; `train_together(jobs, ...)` gives the
same outcome per model.
Behind the switch `--concurrency streams` (TrainOptions.concurrency); docs/training.md says
what was measured and what is assumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from dse.data.device import Data
from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task
from dse.store.status import Status
from dse.train import trainer
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule
from dse.train.step import Stepper
from dse.train.trainer import evaluate, run_outcome


def train_together(models: list[tuple[AnyNetSpec, Task]], data: Data, recipe: Recipe, *,
                   amp: bool | None = None, channels_last: bool = False,
                   on_epoch=None, on_step=None, step_report_s: float | None = None
                   ) -> list[Outcome]:
    """Train every (spec, task) of `models` at once on `data`'s CUDA device, one stream and
    one graph each; returns their outcomes in order (as dse.train.trainer.train's). on_epoch(i,
    epoch, mean_loss) is called for model i after each epoch, on_step(i, epoch, step, steps)
    about every step_report_s seconds within one (host counts, as for one model); a model
    that diverges stops and the others go on."""
    if data.device.type != "cuda":
        raise DseError("training models together on CUDA streams needs a CUDA device; use "
                       "worker processes (the default) elsewhere")
    with torch.cuda.device(data.device):
        return _together(models, data, recipe, True if amp is None else amp, channels_last,
                         on_epoch, on_step, trainer.STEP_REPORT_S if step_report_s is None
                         else step_report_s)


def _together(models, data, recipe, amp, channels_last, on_epoch, on_step,
              every_s) -> list[Outcome]:
    device = data.device
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    steps = data.steps(recipe.batch_size)
    lrs = torch.tensor(lr_schedule(recipe, steps), dtype=torch.float32, device=device)
    x_dtype = torch.bfloat16 if amp else torch.float32
    group = [Stepper(spec, task, recipe, device, lrs, amp, True, fmt, torch.cuda.Stream(device))
             for spec, task in models]
    ended: list[Outcome | None] = [None] * len(group)  # set when a model diverged
    ema_errors: list[list[float]] = [[] for _ in group]  # each EMA model's, every epoch
    gen = torch.Generator(device).manual_seed(recipe.seed)
    main = torch.cuda.current_stream(device)
    start, mean = time.perf_counter(), [float("nan")] * len(group)
    report_at = start + every_s
    for epoch in range(recipe.epochs):
        live = [m for k, m in enumerate(group) if ended[k] is None]
        if not live:
            break
        for m in live:
            m.loss_sum.zero_()
        for n, (x, y) in enumerate(data.batches(recipe.batch_size, gen, recipe.augment,
                                                x_dtype, channels_last), 1):
            for m in live:
                m.stream.wait_stream(main)  # the batch is ready
                with torch.cuda.stream(m.stream):
                    m.advance(x, y)
            for m in live:  # the next batch may reuse this one's memory
                main.wait_stream(m.stream)
            if on_step is not None and time.perf_counter() >= report_at:
                for k in (k for k in range(len(group)) if ended[k] is None):
                    on_step(k, epoch + 1, n, steps)
                report_at = time.perf_counter() + every_s
        for k, m in enumerate(group):
            if ended[k] is not None:
                continue
            mean[k] = m.loss_sum.item() / steps  # one host read per model and epoch
            if not math.isfinite(mean[k]):
                ended[k] = run_outcome(Status.DIVERGED, None, f"train loss became {mean[k]} in "
                                       f"epoch {epoch + 1}", mean[k], time.perf_counter() - start,
                                       epoch + 1, steps, recipe, amp, m.replayed, channels_last)
            else:
                if on_epoch is not None:
                    on_epoch(k, epoch + 1, mean[k])
                if m.ema is not None:  # (its seconds count as training here)
                    ema_errors[k].append(evaluate(m.ema.model, data, amp, fmt))
    seconds = time.perf_counter() - start  # the last .item() waited for every stream
    return [replace(ended[k] or run_outcome(Status.DONE, evaluate(m.model, data, amp, fmt), "",
                                            mean[k], seconds, recipe.epochs, steps, recipe,
                                            amp, m.replayed, channels_last),
                    history_ema_error=tuple(ema_errors[k]) if m.ema is not None else None)
            for k, m in enumerate(group)]
