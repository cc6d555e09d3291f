"""Proxy training of one model with a `Recipe` (dse.train.recipe), the data on the device (torch).

`train` reads top to bottom: build the network → for each epoch take the data's augmented,
shuffled batches on the device → run the steps (eagerly, or replaying one captured CUDA graph)
→ read the epoch's mean loss once (the only host sync; NaN/inf ends the run as diverged) →
top-1 test error at the end. The data is anything with dse.data.device's interface: `DeviceData`
(resident on the device) or `dse.data.ondisk.StreamData` (decoded from disk by worker processes).
On CUDA it runs in bf16 autocast with fp32 weights and BN, no GradScaler. The same code runs
on CPU, minus the CUDA-only parts. See docs/training.md.
"""

from __future__ import annotations

import math
import os
import platform
import time

import torch
import torch.nn.functional as F

from dse.data.device import Data, at_resolution
from dse.errors import ArgumentError, DseError
from dse.space.spec import AnyNetSpec, Task
from dse.train.models import build
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule

GRAPH_WARMUP_STEPS = 3  # eager steps (on a side stream) before the step is captured
# CPU NHWC is the default up to this input side: ~2× faster on our grouped convs at 32 px,
# while torch 2.14.1's CPU channels-last backward corrupts the heap on some RegNetX models
# from 192 px up (a segfault in the second model trained at 224; NCHW is fine there).
CPU_CHANNELS_LAST_MAX = 160
EVAL_BATCH = 1000


@torch.no_grad()
def sgd_step_(params, grads, bufs, lr: torch.Tensor, momentum: float, wd: float,
              nesterov: bool) -> None:
    """torch.optim.SGD's update (dampening 0), in place, with lr a 0-dim device tensor so the
    step can be captured in a CUDA graph (torch's SGD reads a tensor lr back to the host).
    Overwrites grads."""
    if wd:
        torch._foreach_add_(grads, params, alpha=wd)       # g ← g + wd·p
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)                       # v ← m·v + g
    if nesterov:
        torch._foreach_add_(grads, bufs, alpha=momentum)   # g ← g + m·v
    else:
        torch._foreach_copy_(grads, bufs)                  # g ← v
    torch._foreach_mul_(grads, lr)
    torch._foreach_sub_(params, grads)                     # p ← p − lr·g


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda if available else cpu; 'cpu'; 'cuda' or 'cuda:N' (checked to exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ArgumentError("device", f"{name!r} is unknown; allowed: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ArgumentError("device", f"{name!r} needs CUDA, but this machine has no usable "
                                "CUDA device; use cpu (or auto)")
        if dev.index is not None and dev.index >= n:
            raise ArgumentError("device", f"{name!r} does not exist; this machine has "
                                f"cuda:0..{n - 1}")
    return dev


def device_name(device: torch.device) -> str:
    """A human name of the device: the card, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu {cpu} ({torch.get_num_threads()} threads of {os.cpu_count()})"


def train(spec: AnyNetSpec, task: Task, data: Data, recipe: Recipe, *,
          amp: bool | None = None, cuda_graph: bool | None = None,
          channels_last: bool | None = None, on_epoch=None) -> dict:
    """Train one network with `recipe` on `data` (dse.data.device.Data: on its device, or streamed
    to it) and measure its top-1 test error. amp (bf16 autocast) and cuda_graph default to on
    for CUDA, off for CPU; channels_last (NHWC activations and weights) to on for CPU inputs
    up to CPU_CHANNELS_LAST_MAX px, where it measured ~2× faster on our grouped convs, off
    for CUDA. on_epoch(epoch, mean_loss) is called after each epoch. Returns the outcome:
    status (done | diverged), error (percent), message, train_loss, train_seconds,
    images_per_second, epochs_run, precision, cuda_graph (whether a captured graph was
    replayed), channels_last. On CUDA the whole run has the data's device current: a graph
    captured while another device is current would be empty and its replays would do
    nothing."""
    if data.device.type != "cuda":
        return _train(spec, task, data, recipe, amp, cuda_graph, channels_last, on_epoch)
    with torch.cuda.device(data.device):
        return _train(spec, task, data, recipe, amp, cuda_graph, channels_last, on_epoch)


def _train(spec, task, data, recipe, amp, cuda_graph, channels_last, on_epoch) -> dict:
    device = data.device
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    cuda_graph = cuda if cuda_graph is None else cuda_graph
    if channels_last is None:
        channels_last = not cuda and task.resolution <= CPU_CHANNELS_LAST_MAX
    if cuda_graph and not cuda:
        raise DseError("CUDA graphs need a CUDA device")
    data = at_resolution(data, task.resolution)  # a space may draw smaller inputs than its data
    c, h, w = data.image_shape
    if (task.in_channels, task.resolution, task.resolution) != (c, h, w):
        raise DseError(f"models for {task.resolution}×{task.resolution}×{task.in_channels} "
                       f"inputs cannot train on {data.name} images {(c, h, w)}")
    if data.num_classes > task.num_classes:
        raise DseError(f"models with {task.num_classes} outputs cannot train on {data.name}, "
                       f"whose labels run to {data.num_classes - 1}")
    if cuda:
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    torch.manual_seed(recipe.seed)
    gen = torch.Generator(device).manual_seed(recipe.seed)
    model = build(spec, task, recipe.zero_init_final_gamma).to(device, memory_format=fmt)
    model.train()
    params = list(model.parameters())
    bufs = [torch.zeros_like(p) for p in params]  # momentum
    steps = data.steps(recipe.batch_size)
    lrs = torch.tensor(lr_schedule(recipe, steps), dtype=torch.float32, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)  # global step, read by the graph
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    x_dtype = torch.bfloat16 if amp else torch.float32

    def step(x, y):
        with torch.autocast(device.type, torch.bfloat16, enabled=amp, cache_enabled=False):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        sgd_step_(params, [p.grad for p in params], bufs, lrs.index_select(0, t).squeeze(0),
                  recipe.momentum, recipe.wd, recipe.nesterov)
        t.add_(1)
        loss_sum.add_(loss.detach().float())

    replay = None
    side = torch.cuda.Stream(device) if cuda_graph else None
    start = time.perf_counter()
    mean_loss = float("nan")
    for epoch in range(recipe.epochs):
        loss_sum.zero_()
        i = -1
        for i, (x, y) in enumerate(data.batches(recipe.batch_size, gen, recipe.augment,
                                                x_dtype, channels_last)):
            if replay is not None:
                replay(x, y)
            elif cuda_graph and epoch * steps + i >= GRAPH_WARMUP_STEPS:
                replay = _capture(step, x, y, params)
                replay(x, y)
            else:
                for p in params:
                    p.grad = None
                if side is None:
                    step(x, y)
                else:  # warm-up before capture runs on a side stream, as CUDA graphs require
                    side.wait_stream(torch.cuda.current_stream(device))
                    with torch.cuda.stream(side):
                        step(x, y)
                    torch.cuda.current_stream(device).wait_stream(side)
        if i + 1 != steps:  # the schedule and the mean loss assume every step ran
            raise DseError(f"{data.name} gave {i + 1} batches in epoch {epoch + 1}, not "
                           f"the {steps} its steps() promised")
        mean_loss = loss_sum.item() / steps  # the one host sync of the epoch
        if not math.isfinite(mean_loss):
            return _outcome("diverged", None, f"train loss became {mean_loss} in epoch "
                            f"{epoch + 1}", mean_loss, time.perf_counter() - start, epoch + 1,
                            steps, recipe, amp, replay is not None, channels_last)
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss)
    seconds = time.perf_counter() - start  # the last .item() waited for the last step
    error = evaluate(model, data, amp, fmt)
    return _outcome("done", error, "", mean_loss, seconds, recipe.epochs, steps, recipe, amp,
                    replay is not None, channels_last)  # whether a graph really was replayed


def _capture(step, x, y, params):
    """Record one whole training step in a CUDA graph; returns replay(x, y)."""
    for p in params:
        p.grad = None  # backward inside the graph allocates the grads that replays overwrite
    static_x, static_y = x.clone(memory_format=torch.preserve_format), y.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_x, static_y)

    def replay(x, y):
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()

    return replay


@torch.no_grad()
def evaluate(model, data: Data, amp: bool = False,
             fmt: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 error in percent on the whole test split (BN in inference mode)."""
    model.eval()
    wrong = torch.zeros((), dtype=torch.long, device=data.device)
    n = 0
    # fp32 inputs; under amp, autocast rounds them to bf16 where the convs need it
    for x, y in data.test_batches(EVAL_BATCH, torch.float32,
                                  fmt == torch.channels_last):
        with torch.autocast(data.device.type, torch.bfloat16, enabled=amp):
            logits = model(x)
        wrong += (logits.argmax(1) != y).sum()
        n += len(y)
    model.train()
    return 100.0 * wrong.item() / n


def _outcome(status, error, message, loss, seconds, epochs_run, steps, recipe, amp, graph,
             channels_last):
    return Outcome(status=status, error=error, message=message, train_loss=loss,
                   train_seconds=seconds,
                   images_per_second=epochs_run * steps * recipe.batch_size / seconds,
                   epochs_run=epochs_run, steps=steps,
                   precision="bf16-autocast" if amp else "fp32",
                   cuda_graph=bool(graph), channels_last=bool(channels_last))
