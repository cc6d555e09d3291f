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
    # pycls's recipe (pycls/core/net.py, optimizer.py); each default leaves training as it was
    label_smoothing: float = 0.0      # ε: targets (1 − ε)·one-hot + ε / classes
    mixup_alpha: float = 0.0          # mixup of each batch with a permutation of it, λ ~ Beta(α, α)
    ema_alpha: float = 0.0            # weight EMA (pycls's EMA_ALPHA); 0 = no EMA model
    ema_period: int = 32              # steps between EMA updates (EMA_UPDATE_PERIOD)
    bn_wd: float | None = None        # weight decay of BN γ and β; None = wd, as every other
    warmup_factor: float = 0.0        # warm-up starts at lr · factor (pycls's WARMUP_FACTOR)
    lr_policy: str = "cos"            # cos | lin | steps
    lr_steps: tuple = ()              # steps: epochs where the lr is multiplied again (from 0)
    lr_mult: float = 0.1              # steps: the multiplier
    min_lr: float = 0.0               # cos, lin: the final lr, as a fraction of lr

    def __post_init__(self):
        checks = {"epochs": dict(lo=1, integer=True), "batch_size": dict(lo=1, integer=True),
                  "lr": dict(lo=0, lo_open=True), "momentum": dict(lo=0, hi=1, hi_open=True),
                  "wd": dict(lo=0), "warmup_epochs": dict(lo=0),
                  "label_smoothing": dict(lo=0, hi=1, hi_open=True), "mixup_alpha": dict(lo=0),
                  "ema_alpha": dict(lo=0), "ema_period": dict(lo=1, integer=True),
                  "warmup_factor": dict(lo=0, hi=1), "lr_mult": dict(lo=0, lo_open=True),
                  "min_lr": dict(lo=0, hi=1, hi_open=True)}
        if self.train_subset is not None:
            checks["train_subset"] = dict(lo=1, integer=True)
        if self.bn_wd is not None:
            checks["bn_wd"] = dict(lo=0)
        for name, bounds in checks.items():
            if why := out_of_bounds(getattr(self, name), **bounds):
                raise ArgumentError(name, why)
        if self.warmup_epochs > self.epochs:
            raise ArgumentError("warmup_epochs", f"({self.warmup_epochs:g}) exceeds epochs "
                                f"({self.epochs})")
        if self.lr_policy not in LR_POLICIES:
            raise ArgumentError("lr_policy", f"{self.lr_policy!r} is unknown; allowed: "
                                f"{', '.join(LR_POLICIES)}")
        if not isinstance(self.lr_steps, (tuple, list)):
            raise ArgumentError("lr_steps", f"must be a list of epochs (got {self.lr_steps!r})")
        steps = tuple(self.lr_steps)
        object.__setattr__(self, "lr_steps", steps)  # a list given is kept as a tuple
        if self.lr_policy == "steps":
            if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])) \
                    or any(out_of_bounds(x, lo=0) for x in steps):
                raise ArgumentError("lr_steps", f"must be increasing epochs from 0, e.g. "
                                    f"(0, 30, 60) (got {steps!r})")
        elif steps:
            raise ArgumentError("lr_steps", f"apply to lr_policy steps only (lr_policy is "
                                f"{self.lr_policy})")

    @property
    def ema(self) -> bool:
        """Whether a weight-EMA model is kept (and its test error recorded every epoch)."""
        return self.ema_alpha > 0

    def paper(self) -> Recipe:
        """The same recipe with the paper's exact settings: every BN γ = 1, no warm-up."""
        return replace(self, zero_init_final_gamma=False, warmup_epochs=0.0)

    def asdict(self) -> dict:
        return asdict(self)


LR_POLICIES = ("cos", "lin", "steps")


def lr_schedule(recipe: Recipe, steps_per_epoch: int) -> np.ndarray:
    """Learning rate of every step t = 0..T−1, pycls's policies evaluated per step at the
    fractional epoch e = t / steps_per_epoch (pycls evaluates them once per epoch) over E
    epochs, with m = min_lr:
      cos:   lr · ((1 − m) · ½(1 + cos(π e / E)) + m)   (m = 0: the half-period cosine)
      lin:   lr · ((1 − m) · (1 − e / E) + m)
      steps: lr · lr_mult^i, i the last index with lr_steps[i] ≤ e;
    times the warm-up factor f + (1 − f) · min(1, (t + 1) / W) over the first W steps
    (f = warmup_factor; f = 0 ramps from lr / W)."""
    r = recipe
    total = r.epochs * steps_per_epoch
    t = np.arange(total, dtype=np.float64)
    if r.lr_policy == "steps":
        i = np.searchsorted(np.asarray(r.lr_steps, dtype=np.float64) * steps_per_epoch, t,
                            side="right") - 1
        lr = r.lr * r.lr_mult ** i
    else:
        shape = 0.5 * (1 + np.cos(np.pi * t / total)) if r.lr_policy == "cos" \
            else 1 - t / total
        lr = r.lr * ((1 - r.min_lr) * shape + r.min_lr)
    warm = round(r.warmup_epochs * steps_per_epoch)
    if warm:
        ramp = np.minimum(1.0, (t + 1) / warm)
        lr *= r.warmup_factor + (1 - r.warmup_factor) * ramp if r.warmup_factor else ramp
    return lr


def ema_schedule(recipe: Recipe, steps_per_epoch: int) -> np.ndarray:
    """The weight each step gives the model in the EMA (ema ← (1 − a)·ema + a·model), as
    pycls's update_model_ema: on the steps whose index within the epoch is a multiple of
    ema_period, a = min(1, ema_alpha · batch_size / epochs · ema_period), and 1 (a copy)
    while the epoch is below warmup_epochs; 0 (no update) on every other step."""
    r = recipe
    t = np.arange(r.epochs * steps_per_epoch)
    epoch, it = np.divmod(t, steps_per_epoch)
    a = min(1.0, r.ema_alpha * r.batch_size / r.epochs * r.ema_period)
    return np.where(it % r.ema_period == 0, np.where(epoch < r.warmup_epochs, 1.0, a), 0.0)


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
