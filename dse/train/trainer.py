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

import contextlib
import math
import os
import platform
import time
from dataclasses import replace

import torch

from dse.data.device import Data, at_resolution
from dse.errors import ArgumentError, DseError
from dse.space.spec import AnyNetSpec, Task
from dse.store.status import Status
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule
from dse.train.step import GRAPH_WARMUP_STEPS, Stepper, sgd_step_  # noqa: F401 (sgd_step_: API)

# CPU NHWC is the default up to this input side: ~2× faster on our grouped convs at 32 px,
# while torch 2.14.1's CPU channels-last backward corrupts the heap on some RegNetX models
# from 192 px up (a segfault in the second model trained at 224; NCHW is fine there).
CPU_CHANNELS_LAST_MAX = 160
EVAL_BATCH = 1000
STEP_REPORT_S = 1.0   # wall seconds between on_step calls (a host counter: no device sync)
CALIBRATE_S = 1.0     # seconds of timed steps in a calibration, after its warm-up
CALIBRATE_STEPS = 3   # and at least this many timed steps


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
          channels_last: bool | None = None, on_epoch=None, on_step=None,
          step_report_s: float | None = None, curves: bool = False) -> Outcome:
    """Train one network with `recipe` on `data` (dse.data.device.Data: on its device, or streamed
    to it) and measure its top-1 test error. amp (bf16 autocast) and cuda_graph default to on
    for CUDA, off for CPU; channels_last (NHWC activations and weights) to on for CPU inputs
    up to CPU_CHANNELS_LAST_MAX px, where it measured ~2× faster on our grouped convs, off
    for CUDA. on_epoch(epoch, mean_loss) is called after each epoch, on_step(epoch, step,
    steps) about every step_report_s (default STEP_REPORT_S) seconds within one (the host's
    step count: the device may still be behind it; nothing waits for it). Returns the outcome:
    status (done | diverged), error (percent), message, train_loss, train_seconds,
    images_per_second, epochs_run, precision, cuda_graph (whether a captured graph was
    replayed), channels_last, history_loss (each epoch's mean loss), with curves the test
    error after every epoch (history_error), and with a weight EMA (recipe.ema_alpha > 0) its
    test error after every epoch (history_ema_error); evaluations are left out of
    train_seconds and images_per_second. On CUDA the whole run has the data's device
    current: a graph captured while another device is current would be empty and its
    replays would do nothing."""
    with _on(data.device):
        return _train(spec, task, data, recipe, amp, cuda_graph, channels_last, on_epoch,
                      on_step, STEP_REPORT_S if step_report_s is None else step_report_s,
                      curves)


def _on(device: torch.device):
    """The device current while a model trains on it (CUDA); nothing to do on the CPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def defaults(task, data, amp, cuda_graph, channels_last):
    """The device's defaults filled in for a model of `task` on `data` (also for
    dse.train.fused): (the data at the model's input side, amp, cuda_graph, channels_last,
    memory format)."""
    cuda = data.device.type == "cuda"
    amp = cuda if amp is None else amp
    cuda_graph = cuda if cuda_graph is None else cuda_graph
    if channels_last is None:
        channels_last = not cuda and task.resolution <= CPU_CHANNELS_LAST_MAX
    if cuda_graph and not cuda:
        raise DseError("CUDA graphs need a CUDA device")
    data = at_resolution(data, task.resolution)  # a space may draw smaller inputs than its data
    check_fits_data(task, data)
    if cuda:
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return data, amp, cuda_graph, channels_last, fmt


def _setup(spec, task, data, recipe, amp, cuda_graph, channels_last):
    """A model ready to train on data's device, with the device's defaults filled in:
    (Stepper, the data at the model's input side, steps per epoch, amp, channels_last,
    memory format, input dtype)."""
    device = data.device
    data, amp, cuda_graph, channels_last, fmt = defaults(task, data, amp, cuda_graph,
                                                         channels_last)
    steps = data.steps(recipe.batch_size)
    lrs = torch.tensor(lr_schedule(recipe, steps), dtype=torch.float32, device=device)
    m = Stepper(spec, task, recipe, device, lrs, amp, cuda_graph, fmt)
    return m, data, steps, amp, channels_last, fmt, torch.bfloat16 if amp else torch.float32


def _train(spec, task, data, recipe, amp, cuda_graph, channels_last, on_epoch, on_step,
           every_s, curves=False) -> Outcome:
    m, data, steps, amp, channels_last, fmt, x_dtype = _setup(spec, task, data, recipe, amp,
                                                              cuda_graph, channels_last)
    gen = torch.Generator(data.device).manual_seed(recipe.seed)
    start = time.perf_counter()
    mean_loss = float("nan")
    report_at = start + every_s
    losses, errors, ema_errors, evaluating = [], [], [], 0.0
    for epoch in range(recipe.epochs):
        m.loss_sum.zero_()
        n = 0
        for x, y in data.batches(recipe.batch_size, gen, recipe.augment, x_dtype,
                                 channels_last):
            m.advance(x, y)
            n += 1
            if on_step is not None and time.perf_counter() >= report_at:
                on_step(epoch + 1, n, steps)
                report_at = time.perf_counter() + every_s
        if n != steps:  # the schedule and the mean loss assume every step ran
            raise DseError(f"{data.name} gave {n} batches in epoch {epoch + 1}, not "
                           f"the {steps} its steps() promised")
        mean_loss = m.loss_sum.item() / steps  # the one host sync of the epoch
        losses.append(mean_loss)
        if not math.isfinite(mean_loss):
            return replace(run_outcome(
                Status.DIVERGED, None, f"train loss became {mean_loss} in epoch {epoch + 1}",
                mean_loss, time.perf_counter() - start - evaluating, epoch + 1, steps, recipe,
                amp, m.replayed, channels_last), history_loss=_finite(losses),
                history_error=tuple(errors) if curves else None,
                history_ema_error=tuple(ema_errors) if m.ema is not None else None)
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss)
        t0 = time.perf_counter()
        if curves and epoch + 1 < recipe.epochs:
            errors.append(evaluate(m.model, data, amp, fmt))
        if m.ema is not None:  # the EMA model's error every epoch (pycls's test_ema_epoch)
            ema_errors.append(evaluate(m.ema.model, data, amp, fmt))
        evaluating += time.perf_counter() - t0
    seconds = time.perf_counter() - start - evaluating  # .item() waited for the last step
    error = evaluate(m.model, data, amp, fmt)
    out = run_outcome(Status.DONE, error, "", mean_loss, seconds, recipe.epochs, steps, recipe,
                      amp, m.replayed, channels_last)  # whether a graph really was replayed
    return replace(out, history_loss=tuple(losses),
                   history_error=(*errors, error) if curves else None,
                   history_ema_error=tuple(ema_errors) if m.ema is not None else None)


def _finite(xs) -> tuple:
    """Losses with non-finite values as None-free NaN-free floats for storage (inf → nan)."""
    return tuple(float(x) if math.isfinite(x) else float("nan") for x in xs)


def calibrate(spec: AnyNetSpec, task: Task, data: Data, recipe: Recipe, *,
              amp: bool | None = None, cuda_graph: bool | None = None,
              channels_last: bool | None = None, seconds: float | None = None
              ) -> tuple[float, int]:
    """How fast this model trains on `data` as `train` would run it: (images per second,
    steps timed) over about `seconds` (default CALIBRATE_S) of steps after its warm-up (the
    first eager steps and the graph capture are not timed). The model is thrown away."""
    seconds = CALIBRATE_S if seconds is None else seconds
    with _on(data.device):
        m, data, _, _, channels_last, _, x_dtype = _setup(spec, task, data, recipe, amp,
                                                          cuda_graph, channels_last)
        warm = GRAPH_WARMUP_STEPS + 2 if m.cuda_graph else 2
        gen = torch.Generator(data.device).manual_seed(recipe.seed)
        t0 = None
        while True:  # epochs, in case one is shorter than the calibration
            m.t.zero_()  # from the schedule's start again: it may hold a single epoch
            for x, y in data.batches(recipe.batch_size, gen, recipe.augment, x_dtype,
                                     channels_last):
                m.advance(x, y)
                if m.done == warm:
                    _sync(data.device)
                    t0 = time.perf_counter()
                elif t0 is not None and m.done - warm >= CALIBRATE_STEPS and \
                        time.perf_counter() - t0 >= seconds:
                    _sync(data.device)  # the steps still queued on the device count too
                    timed = m.done - warm
                    return timed * recipe.batch_size / (time.perf_counter() - t0), timed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_fits_data(task: Task, data: Data) -> None:
    """Models of `task` can train on `data`: the same image shape, enough outputs."""
    c, h, w = data.image_shape
    if (task.in_channels, task.resolution, task.resolution) != (c, h, w):
        raise DseError(f"models for {task.resolution}×{task.resolution}×{task.in_channels} "
                       f"inputs cannot train on {data.name} images {(c, h, w)}")
    if data.num_classes > task.num_classes:
        raise DseError(f"models with {task.num_classes} outputs cannot train on {data.name}, "
                       f"whose labels run to {data.num_classes - 1}")


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


def run_outcome(status, error, message, loss, seconds, epochs_run, steps, recipe, amp, graph,
                channels_last) -> Outcome:
    """The outcome of a training run that ended with `status` after `epochs_run` epochs."""
    return Outcome(status=status, error=error, message=message, train_loss=loss,
                   train_seconds=seconds,
                   images_per_second=epochs_run * steps * recipe.batch_size / seconds,
                   epochs_run=epochs_run, steps=steps,
                   precision="bf16-autocast" if amp else "fp32",
                   cuda_graph=bool(graph), channels_last=bool(channels_last))
