"""One model's training step, written once for both trainers (torch): the SGD update with the
learning rate in a device tensor, and `Stepper`, which holds a model's training state and
runs its step eagerly while warming up, then captures it once in a CUDA graph and replays it.
dse.train.trainer trains one model with it; dse.train.multistream several on their own
streams."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dse.space.spec import AnyNetSpec, Task
from dse.train.models import build
from dse.train.recipe import Recipe

GRAPH_WARMUP_STEPS = 3  # eager steps (on a side stream) before the step is captured


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
        self.bufs = [torch.zeros_like(p) for p in self.params]  # momentum
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
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp,
                            cache_enabled=False):
            loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        sgd_step_(self.params, [p.grad for p in self.params], self.bufs,
                  self.lrs.index_select(0, self.t).squeeze(0), r.momentum, r.wd, r.nesterov)
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
