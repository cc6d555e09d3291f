"""One model's training step, written once for both trainers (torch): the loss (label
smoothing, mixup), the SGD update with the learning rate in a device tensor (BN parameters
with their own weight decay), the weight EMA, and `Stepper`, which holds a model's training
state and runs its step eagerly while warming up, then captures it once in a CUDA graph and
replays it. dse.train.trainer trains one model with it; dse.train.multistream several on
their own streams.

Every per-step quantity that the recipe fixes in advance (the learning rate, mixup's λ, the
EMA's weight) is a device tensor indexed by the device step counter, so the captured step
needs nothing from the host."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from dse.space.spec import AnyNetSpec, Task
from dse.train.models import build
from dse.train.recipe import Recipe, ema_schedule

GRAPH_WARMUP_STEPS = 3  # eager steps (on a side stream) before the step is captured


@torch.no_grad()
def sgd_step_(params, grads, bufs, lr: torch.Tensor, momentum: float, wd: float,
              nesterov: bool) -> None:
    """torch.optim.SGD's update (dampening 0), in place, with lr a 0-dim device tensor so the
    step can be captured in a CUDA graph (torch's SGD reads a tensor lr back to the host).
    Overwrites grads."""
    if wd:
        torch._foreach_add_(grads, params, alpha=wd)       # g ← g + wd·p
    momentum_(grads, bufs, momentum, nesterov)
    torch._foreach_mul_(grads, lr)
    torch._foreach_sub_(params, grads)                     # p ← p − lr·g


def momentum_(grads, bufs, momentum: float, nesterov: bool) -> None:
    """The momentum part of SGD's update, in place: v ← m·v + g, then g ← g + m·v (Nesterov)
    or g ← v."""
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)                       # v ← m·v + g
    if nesterov:
        torch._foreach_add_(grads, bufs, alpha=momentum)   # g ← g + m·v
    else:
        torch._foreach_copy_(grads, bufs)                  # g ← v


def loss_of(model, x, y, recipe: Recipe, mix=None) -> torch.Tensor:
    """The training loss of batch (x, y): cross-entropy against targets smoothed by
    recipe.label_smoothing ((1 − ε)·one-hot + ε / classes, pycls's smooth_one_hot_labels);
    with mix = (λ, perm) the batch is mixed with its permutation first (pycls's mixup),
    x ← λ·x + (1 − λ)·x[perm], and the loss is λ·CE(y) + (1 − λ)·CE(y[perm]) (the
    cross-entropy against the mixed targets: it is linear in them)."""
    ls = recipe.label_smoothing
    if mix is None:
        return F.cross_entropy(model(x), y, label_smoothing=ls)
    lam, perm = mix
    out = model(lam * x + (1 - lam) * x.index_select(0, perm))
    return lam * F.cross_entropy(out, y, label_smoothing=ls) + \
        (1 - lam) * F.cross_entropy(out, y.index_select(0, perm), label_smoothing=ls)


def mixup_lams(recipe: Recipe, steps: int) -> np.ndarray:
    """mixup's λ of every step, drawn from Beta(α, α) (seeded by the recipe's seed)."""
    rng = np.random.default_rng([recipe.seed, 0x6D6978])  # apart from every other stream
    a = recipe.mixup_alpha
    return rng.beta(a, a, size=recipe.epochs * steps)


def decay_groups(model: torch.nn.Module, recipe: Recipe) -> list[tuple[list, float]]:
    """The model's parameters by weight decay: [(parameters, wd)]. With recipe.bn_wd set,
    the BN layers' γ and β get it (pycls's BN.CUSTOM_WEIGHT_DECAY), the rest recipe.wd."""
    params = list(model.parameters())
    if recipe.bn_wd is None:
        return [(params, recipe.wd)]
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
          for p in m.parameters(recurse=False)}
    return [([p for p in params if id(p) not in bn], recipe.wd),
            ([p for p in params if id(p) in bn], recipe.bn_wd)]


class WeightEMA:
    """An exponential moving average of a model's weights and BN statistics (every floating
    tensor of its state, as pycls's update_model_ema): a copy of the model, updated after
    each step t as ema ← ema·(1 − a_t) + model·a_t, a_t from `weights` (a device tensor,
    dse.train.recipe.ema_schedule: 0 on the steps between updates)."""

    def __init__(self, model: torch.nn.Module, weights: torch.Tensor):
        self.model = copy.deepcopy(model)
        self.src = [v for v in model.state_dict().values() if v.is_floating_point()]
        self.dst = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        self.weights = weights

    @torch.no_grad()
    def update(self, t: torch.Tensor) -> None:
        a = self.weights.index_select(0, t).squeeze(0)
        torch._foreach_mul_(self.dst, 1 - a)
        torch._foreach_add_(self.dst, torch._foreach_mul(self.src, a))


class Stepper:
    """A model in training on `device`: its module (seeded by the recipe, so a model starts
    the same alone or in a group), momentum buffers, a step counter and a loss sum kept on the
    device (read once per epoch), and its step. With cuda_graph the first GRAPH_WARMUP_STEPS
    steps run eagerly on the model's own stream (CUDA graphs require it), the next is
    captured on that stream and every step after is a replay."""

    def __init__(self, spec: AnyNetSpec, task: Task, recipe: Recipe, device: torch.device,
                 lrs: torch.Tensor, amp: bool, cuda_graph: bool, fmt=torch.contiguous_format,
                 stream: torch.cuda.Stream | None = None):
        torch.manual_seed(recipe.seed)
        self.model = build(spec, task, recipe.zero_init_final_gamma).to(device,
                                                                        memory_format=fmt)
        self.model.train()
        self.params = list(self.model.parameters())
        # (parameters, their momentum buffers, weight decay) per decay group
        self.groups = [(ps, [torch.zeros_like(p) for p in ps], wd)
                       for ps, wd in decay_groups(self.model, recipe)]
        steps = len(lrs) // recipe.epochs
        self.lams = torch.tensor(mixup_lams(recipe, steps), dtype=torch.float32,
                                 device=device) if recipe.mixup_alpha else None
        self.ema = WeightEMA(self.model, torch.tensor(
            ema_schedule(recipe, steps), dtype=torch.float32, device=device)) \
            if recipe.ema else None
        self.t = torch.zeros(1, dtype=torch.long, device=device)  # global step, read by the graph
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.recipe, self.lrs, self.amp, self.device = recipe, lrs, amp, device
        self.cuda_graph = cuda_graph
        self.stream = stream or (torch.cuda.Stream(device) if cuda_graph else None)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple | None = None
        self.done = 0  # steps taken

    @property
    def replayed(self) -> bool:
        """Whether the step was captured and replayed (what the outcome records)."""
        return self.graph is not None

    def _step(self, x, y) -> None:
        r = self.recipe
        mix = None
        if self.lams is not None:  # λ of this step; the permutation drawn on the device
            mix = (self.lams.index_select(0, self.t).squeeze(0),
                   torch.argsort(torch.rand(len(y), device=self.device)))
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp,
                            cache_enabled=False):
            loss = loss_of(self.model, x, y, r, mix)
        loss.backward()
        lr = self.lrs.index_select(0, self.t).squeeze(0)
        for params, bufs, wd in self.groups:
            sgd_step_(params, [p.grad for p in params], bufs, lr, r.momentum, wd, r.nesterov)
        if self.ema is not None:
            self.ema.update(self.t)
        self.t.add_(1)
        self.loss_sum.add_(loss.detach().float())

    def advance(self, x, y) -> None:
        """One training step on batch (x, y)."""
        self.done += 1
        if self.graph is not None:
            self.static[0].copy_(x)
            self.static[1].copy_(y)
            self.graph.replay()
            return
        for p in self.params:
            p.grad = None  # backward allocates the grads (inside the graph when capturing)
        if self.stream is None:
            self._step(x, y)
        elif self.cuda_graph and self.done > GRAPH_WARMUP_STEPS:
            self.static = (x.clone(memory_format=torch.preserve_format), y.clone())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=self.stream):
                self._step(*self.static)
            self.graph.replay()  # capturing records the step without running it
        else:  # warm-up off the current stream, as capturing later requires
            current = torch.cuda.current_stream(self.device)
            self.stream.wait_stream(current)
            with torch.cuda.stream(self.stream):
                self._step(x, y)
            current.wait_stream(self.stream)
