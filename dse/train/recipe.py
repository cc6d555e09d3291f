"""The proxy-training `Recipe` (the paper's schedule, with units) and its learning-rate
schedule, torch-free.

The CLI takes its defaults from here, so `dse --help` shows the recipe without importing torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from dse.errors import ArgumentError, DseError, out_of_bounds


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


# ---- recipe keys as dimensions -----------------------------------------------------------

DRAWABLE = ("lr", "wd", "epochs", "batch_size")  # recipe keys that may be drawn per model


def check_draws(where: str, draws: dict) -> dict:
    """`draws` (recipe key → {dist: log_uniform|uniform, low, high} or {dist: choice, values})
    checked; a DseError naming the key and what is allowed (prefixed by `where` if given)."""
    def bad(msg: str) -> DseError:
        return DseError(f"{where}: {msg}" if where else msg)

    out = {}
    for key, cfg in draws.items():
        if key not in DRAWABLE:
            raise bad(f"{key} cannot be drawn per model; drawable: {', '.join(DRAWABLE)}")
        kind = cfg.get("dist") if isinstance(cfg, dict) else None
        if kind in ("log_uniform", "uniform"):
            lo, hi = cfg.get("low"), cfg.get("high")
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                     for v in (lo, hi))
            if set(cfg) - {"dist", "low", "high"} or not ok or lo > hi:
                raise bad(f"{key}: write {{dist: {kind}, low, high}} with 0 < low ≤ high "
                          f"(got {cfg!r})")
        elif kind == "choice":
            vals = cfg.get("values")
            if set(cfg) != {"dist", "values"} or not isinstance(vals, list) or not vals or \
                    not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                            for v in vals):
                raise bad(f"{key}: write {{dist: choice, values: [positive numbers]}} "
                          f"(got {cfg!r})")
        else:
            raise bad(f"{key} must be a number or {{dist: log_uniform|uniform|choice, ...}} "
                      f"(got {cfg!r})")
        out[key] = dict(cfg)
    return out


def draw(recipe: Recipe, draws: dict, model_id: str) -> Recipe:
    """`recipe` with each drawn key's value for this model: the same model always draws the
    same values (the draw is seeded by the model id and the key), continuous draws rounded to
    4 significant digits, epochs and batch_size to integers."""
    values = {}
    for key, cfg in sorted(draws.items()):
        seed = int(hashlib.sha1(f"{model_id}:{key}".encode()).hexdigest()[:12], 16)
        rng = np.random.default_rng(seed)
        if cfg["dist"] == "choice":
            v = float(rng.choice(np.asarray(cfg["values"], dtype=float)))
        elif cfg["dist"] == "log_uniform":
            v = float(np.exp(rng.uniform(np.log(cfg["low"]), np.log(cfg["high"]))))
        else:
            v = float(rng.uniform(cfg["low"], cfg["high"]))
        values[key] = (int(round(v)) if key in ("epochs", "batch_size")
                       else float(f"{v:.4g}"))
    return replace(recipe, **values)


def spec_of(recipe: Recipe, draws: dict) -> dict:
    """The recipe's settings with each drawn key as its distribution: what its fingerprint
    (dse.store.recipes.fingerprint) names."""
    return {**recipe.asdict(), **draws}
