"""A pycls sweep read as records (pure; docs/interop.md).

pycls's jobs log machine-readable lines `json_stats: {...}` (sorted keys, a `_type`), and
its collector folds a sweep's logs into `sweep.json`: one dict per job keyed by type, the
per-epoch types (`train_epoch`, `test_epoch`, `test_ema_epoch`) as lists per field, every
other type as its first instance, with `err` (the job's stderr). Both are read here: a
sweep directory's `sweep.json`, or its `logs/*/stdout.log` (with `stderr.log`) when it was
never collected.

The network comes from `cfg`: `MODEL.TYPE` anynet (what pycls's setup writes, a RegNet
turned into an AnyNet) or regnet, read by dse.space.pyclsnet; what dse cannot build makes
an opaque model. A job is done
when its last evaluation is at its last epoch; an unfinished job is failed with the epochs
it reached, a job with stderr keeps its last line as the message.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dse.errors import DseError
from dse.space import pyclsnet
from dse.store.records import Record, need, net_json, number, series

TAG = "json_stats: "
EPOCH_TYPES = ("train_epoch", "test_epoch", "test_ema_epoch")
TYPES = ("cfg", "complexity", "train_iter", "train_epoch", "test_iter", "test_epoch",
         "test_ema_iter", "test_ema_epoch", "iter_times", "epoch_times")
JOB_KEYS = ("log_file", "err_file", "err")
SERIES = {"test": "test_epoch", "ema": "test_ema_epoch"}
# Recipe settings dse names itself: (its key, the section, pycls's key).
KNOWN = (("epochs", "OPTIM", "MAX_EPOCH"), ("batch_size", "TRAIN", "BATCH_SIZE"),
         ("lr", "OPTIM", "BASE_LR"), ("momentum", "OPTIM", "MOMENTUM"),
         ("nesterov", "OPTIM", "NESTEROV"), ("wd", "OPTIM", "WEIGHT_DECAY"),
         ("warmup_epochs", "OPTIM", "WARMUP_EPOCHS"),
         ("zero_init_final_gamma", "BN", "ZERO_INIT_FINAL_GAMMA"))
# pycls's keys of dse's optional recipe settings (dse.store.recipes.OPTIONAL_KEYS): stored
# in those columns as well, so `--recipe label_smoothing=0.1` reads imported results too.
OPTIONAL = {("TRAIN", "LABEL_SMOOTHING"): "label_smoothing",
            ("TRAIN", "MIXUP_ALPHA"): "mixup_alpha", ("OPTIM", "EMA_ALPHA"): "ema_alpha",
            ("OPTIM", "EMA_UPDATE_PERIOD"): "ema_period",
            ("OPTIM", "WARMUP_FACTOR"): "warmup_factor", ("OPTIM", "LR_POLICY"): "lr_policy",
            ("OPTIM", "STEPS"): "lr_steps", ("OPTIM", "LR_MULT"): "lr_mult",
            ("OPTIM", "MIN_LR"): "min_lr"}
# TRAIN keys that say where data and checkpoints are, not how the model is trained.
NOT_RECIPE = {"DATASET", "SPLIT", "IM_SIZE", "WEIGHTS", "AUTO_RESUME", "CHECKPOINT_PERIOD",
              "EVAL_PERIOD"}


def is_sweep(data) -> bool:
    """Whether parsed JSON is a pycls sweep.json (a list of jobs with a `cfg`)."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) \
        and "cfg" in data[0]


def parse_log(text: str, where: str, err: str = "") -> dict:
    """One job's stdout.log as the collector folds it: per-epoch types as lists per field
    (in epoch order), the iteration types skipped, other types their first instance."""
    job: dict = {}
    for n, line in enumerate(text.splitlines(), 1):
        at = line.find(TAG)
        if at < 0:
            continue
        try:
            stats = json.loads(line[at + len(TAG):])
        except json.JSONDecodeError as e:
            raise DseError(f"{where} line {n}: json_stats is not valid JSON ({e.msg})") from None
        kind = need(stats, "_type", f"{where} line {n}")
        if kind not in TYPES:
            raise DseError(f"{where} line {n}: unknown _type {kind!r}; pycls writes "
                           f"{', '.join(TYPES)}")
        if kind.endswith("_iter"):
            continue
        stats = {k: v for k, v in stats.items() if k != "_type"}
        if "epoch" in stats:
            per = job.setdefault(kind, {})
            for k, v in stats.items():
                per.setdefault(k, []).append(v)
        else:
            job.setdefault(kind, stats)
    return {**job, "err": err}


def read_dir(path: Path) -> tuple[list[dict], list[Path]]:
    """A sweep directory's jobs (its sweep.json, else its logs) and the files read."""
    if (path / "sweep.json").is_file():
        return None, [path / "sweep.json"]
    logs = sorted(path.glob("logs/*/stdout.log"))
    if not logs:
        raise DseError(f"{path} holds neither sweep.json nor logs/*/stdout.log; name a pycls "
                       "sweep directory, its sweep.json or an NDS file")
    jobs = []
    for log in logs:
        err_file = log.with_name("stderr.log")
        err = err_file.read_text(errors="replace") if err_file.is_file() else ""
        jobs.append({**parse_log(log.read_text(errors="replace"), str(log), err),
                     "log_file": str(log)})
    return jobs, logs


def records(jobs, where: str, which: str = "test") -> list[Record]:
    """Every job of a sweep as a record; `which` (test or ema) names the error series."""
    if which not in SERIES:
        raise DseError(f"--series {which!r}: choose test or ema")
    if not isinstance(jobs, list):
        raise DseError(f"{where}: a pycls sweep.json is a list of jobs")
    return [_record(j, i, which, f"{where}: job {i}") for i, j in enumerate(jobs)]


def _section(cfg: dict, name: str) -> dict:
    s = cfg.get(name) or {}
    return s if isinstance(s, dict) else {}


def _record(job, i: int, which: str, where: str) -> Record:
    if not isinstance(job, dict):
        raise DseError(f"{where} is not a JSON object")
    unknown = sorted(set(job) - set(TYPES) - set(JOB_KEYS))
    if unknown:
        raise DseError(f"{where}: unknown _type {unknown[0]!r}; pycls writes "
                       f"{', '.join(TYPES)}")
    cfg = need(job, "cfg", where)
    for sec, key in (("TRAIN", "DATASET"), ("TRAIN", "IM_SIZE"), ("MODEL", "NUM_CLASSES"),
                     ("MODEL", "TYPE")):
        need(_section(cfg, sec), key, f"{where} cfg.{sec}")
    dataset = str(cfg["TRAIN"]["DATASET"])
    spec, why, stem, _ = pyclsnet.network(cfg, where)
    specs = (spec,) if spec is not None else ()
    task = pyclsnet.task(cfg, stem)
    recipe, extra = _recipe(cfg, which)
    settings = _settings(cfg)
    cx = {k: int(v) for k, v in (job.get("complexity") or {}).items()
          if k in ("flops", "params", "acts") and isinstance(v, (int, float))}
    status, error, message, hist = _outcome(job, which, where)
    train_ep = job.get("train_epoch") or {}
    loss = series(train_ep["loss"], f"{where} train_epoch.loss") if "loss" in train_ep else None
    inds = train_ep.get("epoch_ind") or []
    secs = train_ep.get("time_epoch")
    return Record(index=i, task=task, dataset=dataset, specs=specs, opaque=why,
                  net="" if specs else net_json({k: cfg.get(k) for k in
                                                 ("MODEL", "ANYNET", "REGNET", "EN")}),
                  file_cx=cx, recipe=recipe, extra=extra, settings=settings,
                  seed=int(number(cfg.get("RNG_SEED", 0), f"{where} RNG_SEED")),
                  status=status, error=error, message=message, history_error=hist,
                  history_loss=loss, epochs_run=int(inds[-1]) if inds else 0,
                  train_seconds=float(sum(secs)) if isinstance(secs, list) and secs else None)


def _outcome(job: dict, which: str, where: str):
    """(status, error, message, error history) of a job from the chosen test series."""
    key = SERIES[which]
    err = (job.get("err") or "").strip()
    last_err = err.splitlines()[-1][:300] if err else ""
    got = job.get(key)
    if not got:
        why = f"no {key} records" + (" (EMA off or never evaluated)" if which == "ema" else "")
        return "failed", None, last_err or f"unfinished: {why}", None
    for k in ("top1_err", "epoch_ind", "epoch_max"):
        need(got, k, f"{where} {key}")
    hist = series(got["top1_err"], f"{where} {key}.top1_err")
    ind, top = int(got["epoch_ind"][-1]), int(got["epoch_max"][-1])
    if not all(math.isfinite(e) for e in hist):
        return "diverged", None, "test error not finite", hist
    if ind < top:
        return "failed", None, last_err or f"unfinished: {ind} of {top} epochs", hist
    return "done", hist[-1], "", hist


def _settings(cfg: dict) -> dict:
    """The job's settings of dse's optional recipe keys (OPTIONAL, and BN weight decay)."""
    out = {}
    for (sec, key), name in OPTIONAL.items():
        v = _section(cfg, sec).get(key)
        ok = isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) \
            if name == "lr_steps" else isinstance(v, str) if name == "lr_policy" \
            else type(v) is int if name == "ema_period" \
            else isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok:
            out[name] = v
    bn = _section(cfg, "BN")
    if bn.get("USE_CUSTOM_WEIGHT_DECAY") is True and \
            isinstance(bn.get("CUSTOM_WEIGHT_DECAY"), (int, float)):
        out["bn_wd"] = bn["CUSTOM_WEIGHT_DECAY"]
    return out


def _recipe(cfg: dict, which: str) -> tuple[dict, dict]:
    """(RECIPE_KEYS settings, every other training setting by its pycls key)."""
    recipe = {k: _section(cfg, sec)[key] for k, sec, key in KNOWN if key in _section(cfg, sec)}
    recipe["augment"] = True
    named = {(sec, key) for _, sec, key in KNOWN}
    extra = {}
    for sec in ("OPTIM", "BN", "TRAIN"):
        for k, v in _section(cfg, sec).items():
            if (sec, k) not in named and not (sec == "TRAIN" and k in NOT_RECIPE):
                extra[f"{sec}.{k}"] = v
    if which == "ema":
        extra["series"] = "ema"
    return recipe, extra
