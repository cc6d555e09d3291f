"""Which trials may train together as one fused network, torch-free (dse.train.fused trains
them; dse.runner groups a run's trials with `key`).

K trials fuse when they train one architecture on one dataset under recipes that differ only
in what each copy keeps its own: its seed (init, data order, augmentation), its peak learning
rate and its weight decay. A recipe setting fusion does not know yet (one added to `Recipe`
after fusion was written) that is off its default keeps the trial unfused, so a new recipe
feature never trains wrong fused: it trains alone until dse.train.fused learns it.
"""

from __future__ import annotations

from dataclasses import fields, replace

from dse.errors import ArgumentError
from dse.train.recipe import Recipe

FUSE = ("auto", "on", "off")  # --fuse
FUSE_MAX = 8                  # copies in one fused network at most
PER_COPY = ("seed", "lr", "wd")  # what each copy keeps its own
SHARED = ("epochs", "batch_size", "momentum", "nesterov", "warmup_epochs",
          "zero_init_final_gamma", "augment", "train_subset")  # the same for all copies
# where --fuse auto fuses: the device types bench/fused_speed.py measured a gain on. None so
# far: on this project's 2-core CPU fused and separate trials ran at the same speed within
# the noise (bench/RESULTS.md, "Fused trials"); CUDA, where HFTA measured its gains, waits
# for bench/device_check.sh (stage fused)
AUTO_ON: tuple[str, ...] = ()


def unsupported(recipe: Recipe) -> list[str]:
    """The recipe's settings, off their defaults, that fused training does not implement."""
    known = set(PER_COPY) | set(SHARED)
    return [f.name for f in fields(Recipe)
            if f.name not in known and getattr(recipe, f.name) != f.default]


def shared(recipe: Recipe) -> Recipe:
    """The part of a recipe every copy of a fused network must share: per-copy settings
    set to the defaults."""
    d = Recipe()
    return replace(recipe, **{k: getattr(d, k) for k in PER_COPY})


def check(recipes: list[Recipe]) -> None:
    """Recipes that can train as copies of one fused network, else an ArgumentError."""
    if not recipes:
        raise ArgumentError("recipes", "is empty; a fused network needs at least one copy")
    if len({shared(r) for r in recipes}) != 1:
        raise ArgumentError("recipes", "differ in more than seed, lr and wd; fused copies "
                            f"share {', '.join(SHARED)}")
    if bad := unsupported(recipes[0]):
        raise ArgumentError("recipes", f"set {', '.join(bad)}, which fused training does not "
                            "implement; train these trials unfused (--fuse off)")


def width(fuse: str, device_type: str) -> int:
    """Copies per fused network for `--fuse` on a device of `device_type` (cpu, cuda): 1 =
    every trial alone."""
    if fuse not in FUSE:
        raise ArgumentError("fuse", f"must be one of {', '.join(FUSE)} (got {fuse!r})")
    if fuse == "off" or (fuse == "auto" and device_type not in AUTO_ON):
        return 1
    return FUSE_MAX
