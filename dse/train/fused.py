"""K trainings of one architecture as one fused network (torch): K trials for the price of
one model's per-op overhead (HFTA, Wang et al., MLSys 2021).

The network is dse.train.models.AnyNet with `copies` = K: every conv holds the K copies'
kernels in K times the groups, so BN, SE and the head act per copy and no value of one copy
reaches another. Each copy keeps what makes it a trial of its own:

- its init: copy k is built alone under torch.manual_seed(seed_k) exactly as an unfused
  model is (dse.train.step.Stepper) and its tensors are placed in the fused ones;
- its data: its own generator seeded by its seed gives its own permutation and crops; the K
  batches are stacked along channels into the first conv's K groups (copies with one seed
  share one build of their batch);
- its learning rate and weight decay: the SGD step applies per-copy values (the unfused
  dse.train.step.sgd_step_ itself when all copies share them);
- its loss: the K cross-entropies are summed, so copy k's gradients are its own loss's; each
  copy's mean loss is read once per epoch, and a copy whose loss is not finite ends as
  `diverged` there (its tensors are zeroed and its loss weighted 0, so it stays finite and
  inert) while the others go on.

`train_fused(spec, task, data, recipes)` returns one Outcome per recipe, as
dse.train.trainer.train does for one. CUDA: bf16 autocast and the CUDA graph of Stepper apply
unchanged (the fused step is captured and replayed like a single model's); unmeasured on a
GPU so far (bench/device_check.sh, stage `fused`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from dse.data.device import Data
from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task
from dse.store.status import Status
from dse.train import fusion, trainer
from dse.train.models import AnyNet, build
from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule
from dse.train.step import Stepper, momentum_, sgd_step_
from dse.train.trainer import EVAL_BATCH, run_outcome


def build_fused(spec: AnyNetSpec, task: Task, recipes: list[Recipe]) -> AnyNet:
    """The fused network of len(recipes) copies, copy k initialized bit for bit as an
    unfused model trained with recipes[k] (its seed and zero-γ setting)."""
    copies = []
    for r in recipes:
        torch.manual_seed(r.seed)  # as Stepper does before building one model
        copies.append(build(spec, task, r.zero_init_final_gamma).state_dict())
    fused = AnyNet(spec, task, copies=len(recipes))
    fused.load_state_dict({name: torch.cat([c[name] for c in copies]) if t.dim() else t
                           for name, t in copies[0].items()})
    return fused


def copy_of(tensor: torch.Tensor, k: int, copies: int) -> torch.Tensor:
    """Copy k's part of a fused tensor (a view): its block of the first axis."""
    return tensor.unflatten(0, (copies, -1))[k]


def split(model: AnyNet) -> list[dict]:
    """The state of each copy of a fused network, named and shaped as an unfused model's."""
    k = model.copies
    state = model.state_dict()
    return [{name: copy_of(t, i, k) if t.dim() else t for name, t in state.items()}
            for i in range(k)]


@torch.no_grad()
def fused_sgd_step_(params, grads, bufs, lr: torch.Tensor, lr_peak, wd_per, momentum: float,
                    nesterov: bool) -> None:
    """sgd_step_ with each copy's own peak lr and weight decay: lr_peak and wd_per are, per
    parameter, tensors of its shape holding each copy's value in the copy's rows (None when
    all copies share lr's peak, resp. have no weight decay); lr is the schedule's factor of
    this step (the learning rate itself when lr_peak is None)."""
    if wd_per is not None:
        torch._foreach_addcmul_(grads, params, wd_per)     # g ← g + wd_k·p
    momentum_(grads, bufs, momentum, nesterov)
    if lr_peak is not None:
        torch._foreach_mul_(grads, lr_peak)
    torch._foreach_mul_(grads, lr)
    torch._foreach_sub_(params, grads)                     # p ← p − lr_k·g


def _per_copy(params, values, device) -> list[torch.Tensor]:
    """Per parameter, a tensor of its shape (and memory format) holding copy k's value in copy
    k's rows."""
    v = torch.tensor(values, dtype=torch.float32, device=device)
    out = []
    for p in params:
        t = torch.empty_like(p)
        t.copy_(v.repeat_interleave(p.shape[0] // len(values))
                .view(-1, *[1] * (p.dim() - 1)).expand_as(p))
        out.append(t)
    return out


class FusedStepper(Stepper):
    """A fused network in training: Stepper's eager warm-up, CUDA-graph capture and replay
    (`advance`), with K copies' losses (loss_sum has one entry per copy), their own lr and wd,
    and a weight per copy's loss (0 once it diverged: `stop`)."""

    def __init__(self, spec: AnyNetSpec, task: Task, recipes: list[Recipe],
                 device: torch.device, steps: int, amp: bool, cuda_graph: bool,
                 fmt=torch.contiguous_format, stream: torch.cuda.Stream | None = None):
        fusion.check(recipes)
        self.copies = k = len(recipes)
        self.model = build_fused(spec, task, recipes).to(device, memory_format=fmt)
        self.model.train()
        self.params = list(self.model.parameters())
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros(k, dtype=torch.float32, device=device)
        self.weight = torch.ones(k, dtype=torch.float32, device=device)  # 0: stopped
        self.recipe, self.amp, self.device = recipes[0], amp, device
        lrs, wds = [r.lr for r in recipes], [r.wd for r in recipes]
        one_lr = len(set(lrs)) == 1
        # one peak lr: the unfused schedule itself; else its shape (peak 1) × each copy's peak
        base = recipes[0] if one_lr else replace(recipes[0], lr=1.0)
        self.lrs = torch.tensor(lr_schedule(base, steps), dtype=torch.float32, device=device)
        self.lr_peak = None if one_lr else _per_copy(self.params, lrs, device)
        self.wd = wds[0] if len(set(wds)) == 1 else None
        self.wd_per = None if self.wd is not None else _per_copy(self.params, wds, device)
        self.cuda_graph = cuda_graph
        self.stream = stream or (torch.cuda.Stream(device) if cuda_graph else None)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple | None = None
        self.done = 0

    def _step(self, x, y) -> None:
        r = self.recipe
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp,
                            cache_enabled=False):
            logits = self.model(x).reshape(len(x), self.copies, -1)  # (B, K, classes)
            losses = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(0)
        (losses * self.weight).sum().backward()
        grads = [p.grad for p in self.params]
        lr = self.lrs.index_select(0, self.t).squeeze(0)
        if self.lr_peak is None and self.wd_per is None:
            sgd_step_(self.params, grads, self.bufs, lr, r.momentum, self.wd, r.nesterov)
        else:
            wd_per = self.wd_per
            if wd_per is None and self.wd:  # one wd, several peak lrs: add it as sgd_step_
                torch._foreach_add_(grads, self.params, alpha=self.wd)
            fused_sgd_step_(self.params, grads, self.bufs, lr, self.lr_peak, wd_per,
                            r.momentum, r.nesterov)
        self.t.add_(1)
        self.loss_sum.add_(losses.detach().float())

    @torch.no_grad()
    def stop(self, k: int) -> None:
        """Take copy k out of training (it diverged): its loss weighs 0 and its tensors are
        zeroed (BN variances 1), so it stays finite and nothing moves it again."""
        self.weight[k] = 0.0
        for t in (*self.params, *self.bufs):
            copy_of(t, k, self.copies).zero_()
        for name, b in self.model.named_buffers():
            if b.dim():
                copy_of(b, k, self.copies).fill_(1.0 if name.endswith("running_var") else 0.0)


def batches(data: Data, recipes: list[Recipe], x_dtype, channels_last: bool):
    """An epoch iterator factory: each call gives one epoch of fused batches (x with the
    copies' images along channels, y (B, K)), every copy drawing from its own generator
    seeded by its seed (as an unfused run does); copies of one seed share a build."""
    device = data.device
    seeds = [r.seed for r in recipes]
    gens = {s: torch.Generator(device).manual_seed(s) for s in dict.fromkeys(seeds)}
    r, fmt = recipes[0], torch.channels_last if channels_last else torch.contiguous_format

    def epoch():
        its = {s: data.batches(r.batch_size, g, r.augment, x_dtype, channels_last)
               for s, g in gens.items()}
        for got in zip(*its.values()):
            by = dict(zip(its, got))
            x = torch.cat([by[s][0] for s in seeds], 1).contiguous(memory_format=fmt)
            yield x, torch.stack([by[s][1] for s in seeds], 1)
    return epoch


@torch.no_grad()
def evaluate_fused(model: AnyNet, data: Data, amp: bool = False,
                   fmt: torch.memory_format = torch.contiguous_format) -> list[float]:
    """Top-1 test error in percent of each copy (BN in inference mode): every copy sees the
    whole test split."""
    model.eval()
    k = model.copies
    wrong = torch.zeros(k, dtype=torch.long, device=data.device)
    n = 0
    for x, y in data.test_batches(max(1, EVAL_BATCH // k), torch.float32,
                                  fmt == torch.channels_last):
        x = x.repeat(1, k, 1, 1).contiguous(memory_format=fmt)
        with torch.autocast(data.device.type, torch.bfloat16, enabled=amp):
            logits = model(x).reshape(len(x), k, -1)
        wrong += (logits.argmax(2) != y[:, None]).sum(0)
        n += len(y)
    model.train()
    return [100.0 * w / n for w in wrong.tolist()]


def train_fused(spec: AnyNetSpec, task: Task, data: Data, recipes: list[Recipe], *,
                amp: bool | None = None, cuda_graph: bool | None = None,
                channels_last: bool | None = None, on_epoch=None, on_step=None,
                step_report_s: float | None = None, curves: bool = False) -> list[Outcome]:
    """Train len(recipes) trials of one architecture as one fused network on `data`; each
    recipe is a copy's (they may differ in seed, lr and wd only: dse.train.fusion.check).
    Returns one Outcome per recipe, as dse.train.trainer.train's for one model, with `fused`
    = the number of copies; train_seconds is the fused run's. on_epoch(k, epoch, mean_loss)
    and on_step(k, epoch, step, steps) hear copy k (a copy that diverged no more)."""
    with trainer._on(data.device):
        return _train(spec, task, data, list(recipes), amp, cuda_graph, channels_last,
                      on_epoch, on_step, trainer.STEP_REPORT_S if step_report_s is None
                      else step_report_s, curves)


def _train(spec, task, data, recipes, amp, cuda_graph, channels_last, on_epoch, on_step,
           every_s, curves) -> list[Outcome]:
    fusion.check(recipes)
    data, amp, cuda_graph, channels_last, fmt = trainer.defaults(task, data, amp, cuda_graph,
                                                                 channels_last)
    r, k = recipes[0], len(recipes)
    steps = data.steps(r.batch_size)
    m = FusedStepper(spec, task, recipes, data.device, steps, amp, cuda_graph, fmt)
    epoch_batches = batches(data, recipes, torch.bfloat16 if amp else torch.float32,
                            channels_last)
    ended: list[Outcome | None] = [None] * k
    losses: list[list[float]] = [[] for _ in range(k)]
    errors: list[list[float]] = [[] for _ in range(k)]
    start, evaluating = time.perf_counter(), 0.0
    report_at = start + every_s

    def outcome(i, status, error, message, epochs_run):
        o = run_outcome(status, error, message, losses[i][-1], time.perf_counter() - start
                        - evaluating, epochs_run, steps, recipes[i], amp, m.replayed,
                        channels_last)
        hist = trainer._finite(losses[i]) if status != Status.DONE else tuple(losses[i])
        return replace(o, history_loss=hist, fused=k,
                       history_error=tuple(errors[i]) if curves else None)

    for epoch in range(r.epochs):
        live = [i for i in range(k) if ended[i] is None]
        if not live:
            break
        m.loss_sum.zero_()
        n = 0
        for x, y in epoch_batches():
            m.advance(x, y)
            n += 1
            if on_step is not None and time.perf_counter() >= report_at:
                for i in live:
                    on_step(i, epoch + 1, n, steps)
                report_at = time.perf_counter() + every_s
        if n != steps:
            raise DseError(f"{data.name} gave {n} batches in epoch {epoch + 1}, not "
                                   f"the {steps} its steps() promised")
        means = (m.loss_sum / steps).tolist()  # the one host sync of the epoch
        for i in live:
            losses[i].append(means[i])
            if not math.isfinite(means[i]):
                ended[i] = outcome(i, Status.DIVERGED, None, f"train loss became {means[i]} "
                                   f"in epoch {epoch + 1}", epoch + 1)
                m.stop(i)
            elif on_epoch is not None:
                on_epoch(i, epoch + 1, means[i])
        if curves and epoch + 1 < r.epochs and any(e is None for e in ended):
            t0 = time.perf_counter()
            for i, e in enumerate(evaluate_fused(m.model, data, amp, fmt)):
                errors[i].append(e)
            evaluating += time.perf_counter() - t0
    if all(e is not None for e in ended):
        return list(ended)
    seconds = time.perf_counter() - start - evaluating
    final = evaluate_fused(m.model, data, amp, fmt)
    out = []
    for i in range(k):
        if ended[i] is not None:
            out.append(ended[i])
            continue
        errors[i].append(final[i])
        o = run_outcome(Status.DONE, final[i], "", losses[i][-1], seconds, r.epochs, steps,
                        recipes[i], amp, m.replayed, channels_last)
        out.append(replace(o, history_loss=tuple(losses[i]), fused=k,
                           history_error=tuple(errors[i]) if curves else None))
    return out
