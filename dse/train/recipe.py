"""The proxy-training `Recipe` (the paper's schedule, with units) and its learning-rate
schedule, torch-free.

The CLI takes its defaults from here, so `dse --help` shows the recipe without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from dse.errors import ArgumentError, out_of_bounds


@dataclass(frozen=True)
class Recipe:
    """The proxy-training recipe. Defaults: the paper's (REFERENCE §6) plus zero-init of each
    block's final BN γ, which keeps deep narrow networks from stalling (docs/training.md)."""

    epochs: int = 10                  # passes over the training images
    batch_size: int = 128             # images per step; the last partial batch is dropped
    lr: float = 0.05                  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    wd: float = 5e-5                  # L2 weight decay on every parameter
    warmup_epochs: float = 0.0        # linear warm-up from 0 to lr, then half-period cosine
    zero_init_final_gamma: bool = True  # each block's final BN γ starts at 0 (paper: 1)
    augment: bool = True              # pad + random crop (+ flip), see dse.data.datasets
    seed: int = 0                     # model init, shuffling and augmentation
    train_subset: int | None = None   # train on N images of a fixed permutation; None = all

    def __post_init__(self):
        checks = {"epochs": dict(lo=1, integer=True), "batch_size": dict(lo=1, integer=True),
                  "lr": dict(lo=0, lo_open=True), "momentum": dict(lo=0, hi=1, hi_open=True),
                  "wd": dict(lo=0), "warmup_epochs": dict(lo=0)}
        if self.train_subset is not None:
            checks["train_subset"] = dict(lo=1, integer=True)
        for name, bounds in checks.items():
            if why := out_of_bounds(getattr(self, name), **bounds):
                raise ArgumentError(name, why)
        if self.warmup_epochs > self.epochs:
            raise ArgumentError("warmup_epochs", f"({self.warmup_epochs:g}) exceeds epochs "
                                f"({self.epochs})")

    def paper(self) -> Recipe:
        """The same recipe with the paper's exact settings: every BN γ = 1, no warm-up."""
        return replace(self, zero_init_final_gamma=False, warmup_epochs=0.0)

    def asdict(self) -> dict:
        return asdict(self)


def lr_schedule(recipe: Recipe, steps_per_epoch: int) -> np.ndarray:
    """Learning rate of every step: lr · ½(1 + cos(π t / T)), t = 0..T−1 (half-period
    cosine per step), times a linear ramp (t + 1) / W over the first W warm-up steps."""
    total = recipe.epochs * steps_per_epoch
    t = np.arange(total, dtype=np.float64)
    lr = recipe.lr * 0.5 * (1 + np.cos(np.pi * t / total))
    warm = round(recipe.warmup_epochs * steps_per_epoch)
    if warm:
        lr *= np.minimum(1.0, (t + 1) / warm)
    return lr
