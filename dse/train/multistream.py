"""Several models trained at once by one process on one GPU, each on its own CUDA stream with
its own captured graph (torch, CUDA only).

Without MPS, processes that share a GPU take turns: kernels of different processes never run
together, and the small proxy models leave most of a large GPU idle. Here K models share a
process. Every step each model's graph is replayed on its own stream, so their kernels can
overlap. All K see the same batches (dse.train.trainer already gives every model of a recipe the
same
shuffles and crops: the generator is seeded by the recipe), and each batch is built once.
The recipe, the warm-up on side streams, the graph capture and the once-per-epoch loss read
are those of dse.train.trainer.train; `train_together(jobs, ...)` gives the same outcome per model.
Behind the switch `--concurrency streams` (TrainOptions.concurrency); docs/training.md says
what was measured and what is assumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dse.data.device import Data
from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task
from dse.train.models import build
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule
from dse.train.trainer import GRAPH_WARMUP_STEPS, _outcome, evaluate, sgd_step_


@dataclass
class _Member:
    """One model of the group: its module, optimizer state, step counter, loss sum, stream
    and (once captured) graph with its static inputs."""

    model: torch.nn.Module
    params: list
    bufs: list
    t: torch.Tensor
    loss_sum: torch.Tensor
    stream: torch.cuda.Stream
    graph: torch.cuda.CUDAGraph | None = None
    static: tuple | None = None
    outcome: Outcome | None = None    # set when it diverged


def train_together(models: list[tuple[AnyNetSpec, Task]], data: Data, recipe: Recipe, *,
                   amp: bool | None = None, channels_last: bool = False,
                   on_epoch=None) -> list[dict]:
    """Train every (spec, task) of `models` at once on `data`'s CUDA device, one stream and
    one graph each; returns their outcomes in order (as dse.train.trainer.train's). on_epoch(i,
    epoch, mean_loss) is called for model i after each epoch; a model that diverges stops
    and the others go on."""
    if data.device.type != "cuda":
        raise DseError("training models together on CUDA streams needs a CUDA device; use "
                       "worker processes (the default) elsewhere")
    with torch.cuda.device(data.device):
        return _together(models, data, recipe, True if amp is None else amp, channels_last,
                         on_epoch)


def _together(models, data, recipe, amp, channels_last, on_epoch) -> list[dict]:
    device = data.device
    torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    steps = data.steps(recipe.batch_size)
    lrs = torch.tensor(lr_schedule(recipe, steps), dtype=torch.float32, device=device)
    x_dtype = torch.bfloat16 if amp else torch.float32
    group = []
    for spec, task in models:
        torch.manual_seed(recipe.seed)  # each model starts as it would alone
        model = build(spec, task, recipe.zero_init_final_gamma).to(device, memory_format=fmt)
        model.train()
        params = list(model.parameters())
        group.append(_Member(model, params, [torch.zeros_like(p) for p in params],
                             torch.zeros(1, dtype=torch.long, device=device),
                             torch.zeros((), dtype=torch.float32, device=device),
                             torch.cuda.Stream(device)))

    def step(m: _Member, x, y):
        with torch.autocast("cuda", torch.bfloat16, enabled=amp, cache_enabled=False):
            loss = F.cross_entropy(m.model(x), y)
        loss.backward()
        sgd_step_(m.params, [p.grad for p in m.params], m.bufs,
                  lrs.index_select(0, m.t).squeeze(0), recipe.momentum, recipe.wd,
                  recipe.nesterov)
        m.t.add_(1)
        m.loss_sum.add_(loss.detach().float())

    gen = torch.Generator(device).manual_seed(recipe.seed)
    main = torch.cuda.current_stream(device)
    start, mean = time.perf_counter(), [float("nan")] * len(group)
    for epoch in range(recipe.epochs):
        live = [m for m in group if m.outcome is None]
        if not live:
            break
        for m in live:
            m.loss_sum.zero_()
        for i, (x, y) in enumerate(data.batches(recipe.batch_size, gen, recipe.augment,
                                                x_dtype, channels_last)):
            for m in live:
                m.stream.wait_stream(main)  # the batch is ready
                with torch.cuda.stream(m.stream):
                    _advance(m, step, x, y, epoch * steps + i)
            for m in live:  # the next batch may reuse this one's memory
                main.wait_stream(m.stream)
        for k, m in enumerate(group):
            if m.outcome is not None:
                continue
            mean[k] = m.loss_sum.item() / steps  # one host read per model and epoch
            if not math.isfinite(mean[k]):
                m.outcome = _outcome("diverged", None, f"train loss became {mean[k]} in "
                                     f"epoch {epoch + 1}", mean[k], time.perf_counter() - start,
                                     epoch + 1, steps, recipe, amp, m.graph is not None,
                                     channels_last)
            elif on_epoch is not None:
                on_epoch(k, epoch + 1, mean[k])
    seconds = time.perf_counter() - start  # the last .item() waited for every stream
    return [m.outcome or _outcome("done", evaluate(m.model, data, amp, fmt), "", mean[k],
                                  seconds, recipe.epochs, steps, recipe, amp,
                                  m.graph is not None, channels_last)
            for k, m in enumerate(group)]


def _advance(m: _Member, step, x, y, global_step: int) -> None:
    """One training step of one model on its stream: eager while warming up, then captured
    once and replayed."""
    if m.graph is not None:
        m.static[0].copy_(x)
        m.static[1].copy_(y)
        m.graph.replay()
        return
    for p in m.params:
        p.grad = None
    if global_step < GRAPH_WARMUP_STEPS:
        step(m, x, y)
        return
    m.static = (x.clone(memory_format=torch.preserve_format), y.clone())
    m.graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(m.graph, stream=m.stream):
        step(m, *m.static)
    m.graph.replay()
