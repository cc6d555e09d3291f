"""A store's population as a pycls sweep (pure; docs/interop.md): `dse export --format
pycls-sweep`.

pycls's collector (tools/sweep_collect.py) writes `sweep.json`, a list with one dict per job:
`cfg` (the job's whole config), `complexity` (flops, params, acts), the per-epoch types
(`train_epoch`, `test_epoch`, `test_ema_epoch`) as lists per field, and `log_file`,
`err_file`, `err`. pycls's analysis (pycls/sweep/analysis.py) keeps the jobs that have
`test_ema_epoch` and reads `cfg.OPTIM.BASE_LR`, `cfg.OPTIM.WEIGHT_DECAY`,
`test_epoch.epoch_ind` / `epoch_max` / `min_top1_err`, `test_ema_epoch.min_top1_err` and
whatever metric it is asked for (`complexity.*`, `cfg.ANYNET.*`, `cfg.REGNET.*`, ...).

Here each trial of one recipe is a job: the model as pycls builds it (dse.compare.export's
pycls config; a model pycls cannot build, such as an opaque one, as MODEL.TYPE `dse` with
its id), the recipe in pycls's keys, the trial's seed as RNG_SEED, its test errors as
`test_epoch` (every epoch with `dse train --curves`, else the last) and, when the recipe kept
a weight EMA, the EMA's as `test_ema_epoch`. `dse import` reads the file back as the same
population: the same errors, seeds, statuses and (for networks pycls builds) model ids.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from dse.errors import DseError
from dse.space.spec import Task, from_row, regnet_params
from dse.store.core import Store
from dse.store.recipes import Pick, canonical, choose, setting
from dse.store.status import Status


def jobs(store: Store, space: str, pick: Pick | None = None) -> list[dict]:
    """The jobs of a sweep.json for the trials of one recipe of `space` (pick.recipe; default:
    the recipe of the model's own series with the most results), each with its weight-EMA
    series where the store holds one."""
    pick = pick or Pick()
    models = store.read_models(space).set_index("model_id", drop=False)
    res = store.read_results(space)
    if not len(res):
        raise DseError(f"space {space} of {store.root} has no results to export")
    ema = res["series"].eq("ema") if "series" in res else pd.Series(False, res.index)
    own = res[~ema]
    fp = choose(own, Pick({k: v for k, v in (pick.recipe or {}).items() if k != "series"}
                          or None, flag=pick.flag), f" of {space}")
    rows = own[own["recipe"] == fp].sort_values(["model_id", "seed"], kind="stable")
    twins = {_twin_key(r): r for r in res[ema].to_dict(orient="records")}
    out = []
    for r in rows.to_dict(orient="records"):
        m = models.loc[r["model_id"]]
        out.append(job(space, m, r, twins.get(_twin_key(r))))
    return out


def _twin_key(row: dict) -> str:
    """What a result and its weight-EMA twin share: model, seed and every setting but the
    series."""
    settings = canonical(row)
    settings.pop("series", None)
    return json.dumps([row["model_id"], int(row["seed"]), settings], sort_keys=True,
                      default=str)


def job(space: str, model, row: dict, ema: dict | None) -> dict:
    """One trial as pycls's collector writes a job."""
    cfg = {**network(model), "RNG_SEED": int(row["seed"]),
           "DESC": f"dse {space} {model['model_id']}"}
    for sec, keys in recipe(row, model).items():
        cfg.setdefault(sec, {}).update(keys)
    cx = {k: int(model[k]) for k in ("flops", "params", "acts") if _known(model[k])}
    name = f"{space}/{model['model_id']}-{row['recipe']}-s{int(row['seed'])}"
    out = {"cfg": cfg, "complexity": cx}
    train = _train_epoch(row)
    if train:
        out["train_epoch"] = train
    test = _test_epoch(row)
    if test:
        out["test_epoch"] = test
    if ema is not None and _test_epoch(ema):
        out["test_ema_epoch"] = _test_epoch(ema)
    message = row.get("message") or ""
    return {**out, "log_file": f"{name}/stdout.log", "err_file": f"{name}/stderr.log",
            "err": message if row["status"] != Status.DONE else ""}


def network(model) -> dict:
    """The model's sections of a pycls config (MODEL, ANYNET or REGNET, TRAIN.IM_SIZE);
    MODEL.TYPE `dse` with its id where pycls cannot build it."""
    from dse.compare import export

    task = Task(int(model["resolution"]), model["stem"], int(model["in_channels"]),
                int(model["num_classes"]))
    if model["kind"] != "opaque":
        spec, _ = from_row(model)
        rp = regnet_params(model)
        rp = rp if rp and rp["b"] is not None else None
        try:
            cfg = export.pycls_config(spec, Task(task.resolution, task.stem, 3,
                                                 task.num_classes), rp)
        except DseError:
            cfg = None
        if cfg is not None:
            if task.in_channels != 3:  # pycls has no such key; dse reads it back
                cfg["MODEL"]["IN_CHANNELS"] = task.in_channels
            cfg.pop("TEST", None)
            return cfg
    return {"MODEL": {"TYPE": "dse", "ID": model["model_id"],
                      "NUM_CLASSES": task.num_classes,
                      **({"IN_CHANNELS": task.in_channels} if task.in_channels != 3 else {})},
            "TRAIN": {"IM_SIZE": task.resolution}}


def recipe(row: dict, model) -> dict:
    """The result's recipe in pycls's keys (its own value of a drawn lr or wd)."""
    def v(key):
        return setting(row, key)

    bn_wd = v("bn_wd")
    ema = bool(v("ema_alpha"))
    return {
        "OPTIM": {"BASE_LR": v("lr"), "MAX_EPOCH": v("epochs"), "MOMENTUM": v("momentum"),
                  "NESTEROV": v("nesterov"), "WEIGHT_DECAY": v("wd"),
                  "WARMUP_EPOCHS": v("warmup_epochs"), "WARMUP_FACTOR": v("warmup_factor"),
                  "LR_POLICY": v("lr_policy"), "STEPS": v("lr_steps"),
                  "LR_MULT": v("lr_mult"), "MIN_LR": v("min_lr"),
                  "EMA_ALPHA": v("ema_alpha"), "EMA_UPDATE_PERIOD": v("ema_period") if ema
                  else 0},
        "BN": {"ZERO_INIT_FINAL_GAMMA": v("zero_init_final_gamma"),
               "USE_CUSTOM_WEIGHT_DECAY": bn_wd is not None,
               "CUSTOM_WEIGHT_DECAY": 0.0 if bn_wd is None else bn_wd},
        "TRAIN": {"DATASET": model["dataset"], "BATCH_SIZE": v("batch_size"),
                  "LABEL_SMOOTHING": v("label_smoothing"), "MIXUP_ALPHA": v("mixup_alpha")},
    }


def _test_epoch(row: dict) -> dict | None:
    """A result's test errors as pycls's test_epoch lists: every epoch's with a history,
    else the last epoch's; a diverged training ends in NaN; none when it has no error."""
    hist = _floats(row.get("history_error"))
    epochs = int(row["epochs"])
    if row["status"] == Status.DONE and not hist:
        errs, inds = [float(row["error"])], [epochs]
    else:
        ended = bool(hist) and not math.isfinite(hist[-1])  # an imported divergence
        errs = hist + ([math.nan] if row["status"] == Status.DIVERGED and not ended else [])
        inds = list(range(1, len(errs) + 1))
        if row["status"] == Status.DONE and inds[-1] != epochs:  # not one per epoch
            inds = [epochs - len(errs) + i for i in inds]
    if not errs:
        return None
    mins = np.fmin.accumulate(np.asarray(errs, dtype=float)).tolist()
    return {"epoch": [f"{i}/{epochs}" for i in inds], "epoch_ind": inds,
            "epoch_max": [epochs] * len(inds), "top1_err": errs, "min_top1_err": mins}


def _train_epoch(row: dict) -> dict | None:
    """A result's training losses as pycls's train_epoch lists (time_epoch: its training
    seconds spread over the epochs run)."""
    losses = _floats(row.get("history_loss"))
    if not losses:
        return None
    n, epochs = len(losses), int(row["epochs"])
    secs = row.get("train_seconds")
    out = {"epoch": [f"{i}/{epochs}" for i in range(1, n + 1)],
           "epoch_ind": list(range(1, n + 1)), "epoch_max": [epochs] * n, "loss": losses}
    if _known(secs):
        out["time_epoch"] = [float(secs) / n] * n
    return out


def _floats(v) -> list[float]:
    return [] if v is None or isinstance(v, float) else [float(x) for x in v]


def _known(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))
