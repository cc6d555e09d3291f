"""The `train:` and `promote:` keys of an experiment file (dse.method.experiment reads the
rest): a `train:` mapping as the TrainOptions of its `dse train` (lr, wd, epochs and
batch_size may be drawn per model: docs/trials.md), each `promote:` stage as the TrainOptions
of its own. `err(key, problem)` makes the error that names the file and key. No torch."""

from __future__ import annotations

from dataclasses import replace

from dse.analysis.halving import check as check_halving
from dse.errors import ArgumentError, DseError, out_of_bounds
from dse.method.halving import Halving
from dse.runner.options import TrainOptions
from dse.train.recipe import DRAWABLE, Recipe, check_draws

# train: key → (Recipe or TrainOptions field, type)
TRAIN_KEYS = {
    "epochs": ("recipe", "epochs"), "batch_size": ("recipe", "batch_size"),
    "lr": ("recipe", "lr"), "momentum": ("recipe", "momentum"), "wd": ("recipe", "wd"),
    "warmup": ("recipe", "warmup_epochs"), "zero_gamma": ("recipe", "zero_init_final_gamma"),
    "augment": ("recipe", "augment"), "seed": ("recipe", "seed"),
    "train_subset": ("recipe", "train_subset"), "paper": (None, "paper"),
    **{k: ("recipe", k) for k in ("label_smoothing", "mixup_alpha", "ema_alpha", "ema_period",
                                  "bn_wd", "warmup_factor", "lr_policy", "lr_steps",
                                  "lr_mult", "min_lr")},
    "device": ("options", "device"), "jobs": ("options", "jobs"),
    "concurrency": ("options", "concurrency"), "retry_failed": ("options", "retry_failed"),
    "download": ("options", "download"), "skip_bad_images": ("options", "skip_bad_images"),
    "cache_dir": ("options", "cache_dir"), "amp": ("options", "amp"),
    "cuda_graph": ("options", "cuda_graph"), "channels_last": ("options", "channels_last"),
    "fuse": ("options", "fuse")}
FLOAT_KEYS = ("lr", "momentum", "wd", "warmup_epochs", "label_smoothing", "mixup_alpha",
              "ema_alpha", "bn_wd", "warmup_factor", "lr_mult", "min_lr")
BOOL_TRAIN = ("zero_gamma", "augment", "paper", "retry_failed", "download", "skip_bad_images")


def int_key(err, key, v, lo):
    """`v`, an integer ≥ lo; else err(key, why)."""
    if why := out_of_bounds(v, lo, integer=True):
        raise err(key, why)
    return v


def train_options(err, value, data_dir) -> TrainOptions:
    """The TrainOptions of a `train:` mapping (a drawable recipe key given as a
    distribution goes to options.draws)."""
    if not isinstance(value, dict):
        raise err("train", "must be a mapping of `dse train` options (epochs, batch_size, ...)")
    recipe, options, paper, draws = {}, {}, False, {}
    for k, v in value.items():
        if k not in TRAIN_KEYS:
            raise err(f"train.{k}", f"unknown key; allowed: {', '.join(TRAIN_KEYS)}")
        if isinstance(v, dict) and k in DRAWABLE:  # drawn per model (docs/trials.md)
            try:
                draws.update(check_draws("", {k: v}))
            except DseError as e:
                raise err(f"train.{k}", str(e)) from None
            continue
        if k in BOOL_TRAIN and not isinstance(v, bool):
            raise err(f"train.{k}", f"must be true or false (got {v!r})")
        where, fld = TRAIN_KEYS[k]
        if where is None:
            paper = v
        elif where == "recipe":
            recipe[fld] = float(v) if fld in FLOAT_KEYS and isinstance(v, int) and \
                not isinstance(v, bool) else v
        else:
            options[fld] = v
    keys = {fld: k for k, (_, fld) in TRAIN_KEYS.items()}
    try:
        r = Recipe(**recipe)
        if paper:
            r = r.paper()
        if options.get("device") is not None and not isinstance(options["device"], str):
            raise ArgumentError("device", f"must be auto, cpu, cuda or cuda:N (got "
                                f"{options['device']!r})")
        return TrainOptions(recipe=r, data_dir=data_dir, draws=draws, **options)
    except ArgumentError as e:
        raise err(f"train.{keys.get(e.param, e.param)}", e.problem) from None
    except TypeError as e:  # a value of the wrong type that the checks above let through
        raise err("train", str(e)) from None


PROMOTE_KEYS = ("top", "sample", "sample_seed", "seeds", "curves")
HALVING_KEYS = ("eta", "rungs")
NOT_WITH_HALVING = ("top", "sample", "sample_seed", "seeds", "epochs")


def promote_stages(err, value, train: dict, data_dir) -> tuple:
    """The `promote:` stages (one mapping or a list): which models (top K under the
    experiment's results, sample M more), seeds, curves, and the recipe keys that differ
    from `train:` (e.g. epochs: 8); each as the TrainOptions of its `dse train`, or a
    successive-halving stage (`halving: {eta, rungs}`) as a dse.method.halving.Halving."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        key = f"promote[{i + 1}]"
        if not isinstance(item, dict):
            raise err(key, "must be a mapping such as {top: 8, epochs: 8} or {sample: 16, "
                      "seeds: 3}")
        extra = [k for k in item if k not in PROMOTE_KEYS and k not in TRAIN_KEYS
                 and k != "halving"]
        if extra:
            raise err(f"{key}.{extra[0]}", f"unknown key; allowed: "
                      f"{', '.join(PROMOTE_KEYS)}, halving and the train: keys")
        if "halving" in item:
            out.append(halving_stage(err, key, item, train, data_dir))
            continue
        if "top" not in item and "sample" not in item and "seeds" not in item:
            raise err(key, "names no models: give top, sample or seeds")
        sub = lambda k, problem, key=key: err(f"{key}.{k.removeprefix('train.')}",  # noqa: E731
                                              problem)
        opts = train_options(sub, {**train, **{k: v for k, v in item.items()
                                        if k not in PROMOTE_KEYS}}, data_dir)
        picks = {}
        for k in PROMOTE_KEYS:
            if k in item:
                v = item[k]
                if k == "curves":
                    if not isinstance(v, bool):
                        raise err(f"{key}.curves", f"must be true or false (got {v!r})")
                    picks[k] = v
                else:
                    picks[k] = int_key(err, f"{key}.{k}", v, 0 if k == "sample_seed" else 1)
        try:
            out.append(replace(opts, **picks))
        except ArgumentError as e:
            raise err(f"{key}.{e.param}", e.problem) from None
    return tuple(out)


def halving_stage(err, key: str, item: dict, train: dict, data_dir) -> Halving:
    """A `promote:` stage with `halving: {eta: 3, rungs: [1, 3, 9]}` (eta defaults to 3),
    its recipe the experiment's with the stage's keys, its epochs each rung's; checked at
    every rung."""
    h = item["halving"]
    if not isinstance(h, dict):
        raise err(f"{key}.halving", "must be a mapping such as {eta: 3, rungs: [1, 3, 9]} "
                  "(rungs in epochs)")
    extra = [k for k in h if k not in HALVING_KEYS]
    if extra:
        raise err(f"{key}.halving.{extra[0]}", f"unknown key; allowed: {', '.join(HALVING_KEYS)}")
    if "rungs" not in h:
        raise err(f"{key}.halving.rungs", "missing: the epochs of each rung, rising, such as "
                  "[1, 3, 9]")
    clash = [k for k in NOT_WITH_HALVING if k in item]
    if clash:
        raise err(f"{key}.{clash[0]}", "not with halving: it trains every model at the first "
                  "rung and promotes by rank, one seed each; the rungs give the epochs")
    try:
        eta, rungs = check_halving(h.get("eta", 3), h["rungs"])
    except DseError as e:
        raise err(f"{key}.halving", str(e)) from None
    sub = lambda k, problem: err(f"{key}.{k.removeprefix('train.')}", problem)  # noqa: E731
    keys = {k: v for k, v in item.items() if k not in PROMOTE_KEYS and k != "halving"}
    for r in rungs:  # each rung's recipe must be valid (a warm-up longer than a rung is not)
        opts = train_options(sub, {**train, **keys, "epochs": r}, data_dir)
    if isinstance(item.get("curves", False), bool):
        opts = replace(opts, curves=item.get("curves", False))
    else:
        raise err(f"{key}.curves", f"must be true or false (got {item['curves']!r})")
    return Halving(eta, rungs, replace(opts, recipe=replace(opts.recipe, epochs=rungs[0])))
