"""Small files in the exact formats of other tools, for the import tests: NDS records (lists
and the reruns' {"top", "mid"}), pycls `json_stats:` log lines as its logger writes them and
a `sweep.json` as its collector folds them (per-epoch types as lists per field, other types
their first instance, the iteration types left out)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

R56 = dict(block_type="res_basic_block", ds=[1, 9, 9, 9], ws=[16, 16, 32, 64], ss=[1, 1, 2, 2])
R56_FLOPS, R56_PARAMS = 125_747_850, 855_770


def nds_job(net: dict, errs, *, flops: int, params: int, seed: int = 1, lr: float = 0.1,
            wd: float = 5e-4, job_id: int = 0, optim: dict | None = None) -> dict:
    """One NDS record: every key of the release, per-epoch lists of length max_ep."""
    n = len(errs)
    return dict(job_id=job_id, rng_seed=seed, params=params, flops=flops, net=net,
                optim=dict(base_lr=lr, wd=wd, max_ep=n, lr_policy="cos", momentum=0.9,
                           nesterov=True, **(optim or {})),
                min_test_top1=min(errs), test_ep_top1=list(errs),
                train_ep_top1=[e - 5 for e in errs], train_ep_loss=[2.0 / (i + 1)
                                                                    for i in range(n)],
                train_it_loss=[2.0, 1.0], train_it_top1=[80.0, 50.0], prec_time=0.01,
                iter_time=0.02, exp_mem=1.0, act_mem=0.5)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


# ---- pycls ------------------------------------------------------------------------------------

def _round(v):
    """pycls rounds floats of its stats to 4 decimals before dumping them."""
    if isinstance(v, float):
        return Decimal(f"{v:.4f}")
    return v


def stats_line(kind: str, stats: dict, where: str = "meters.py: 211") -> str:
    """A stdout.log line as pycls's logger writes it: prefix, tag, sorted-keys JSON."""
    data = {k: _round(v) for k, v in {**stats, "_type": kind}.items()}
    text = json.dumps(data, sort_keys=True, default=lambda d: float(d))
    return f"[{where}]: json_stats: {text}"


def pycls_cfg(*, depths=(9, 9, 9), widths=(16, 32, 64), block="res_basic_block",
              bot_muls=(1.0, 1.0, 1.0), group_ws=(16, 32, 64), se_on=False, lr=0.1,
              wd=5e-4, seed=1, epochs=5, regnet=None) -> dict:
    """A nested pycls config of an AnyNet CIFAR job (with REGNET kept as drawn)."""
    cfg = {
        "MODEL": {"TYPE": "anynet", "NUM_CLASSES": 10, "ACTIVATION_FUN": "relu",
                  "LOSS_FUN": "cross_entropy"},
        "ANYNET": {"STEM_TYPE": "res_stem_cifar", "STEM_W": 16, "BLOCK_TYPE": block,
                   "DEPTHS": list(depths), "WIDTHS": list(widths), "STRIDES": [1, 2, 2][
                       :len(depths)], "BOT_MULS": list(bot_muls), "GROUP_WS": list(group_ws),
                   "HEAD_W": 0, "SE_ON": se_on, "SE_R": 0.25},
        "OPTIM": {"BASE_LR": lr, "MAX_EPOCH": epochs, "MOMENTUM": 0.9, "NESTEROV": True,
                  "WEIGHT_DECAY": wd, "WARMUP_EPOCHS": 1, "WARMUP_FACTOR": 0.1,
                  "LR_POLICY": "cos", "MIN_LR": 0.0, "EMA_ALPHA": 0.00025,
                  "EMA_UPDATE_PERIOD": 32, "DAMPENING": 0.0},
        "BN": {"USE_CUSTOM_WEIGHT_DECAY": True, "CUSTOM_WEIGHT_DECAY": 0.0,
               "ZERO_INIT_FINAL_GAMMA": False, "EPS": 1e-5, "MOM": 0.1},
        "TRAIN": {"DATASET": "cifar10", "SPLIT": "train", "BATCH_SIZE": 1024, "IM_SIZE": 32,
                  "LABEL_SMOOTHING": 0.1, "MIXUP_ALPHA": 0.5, "CUTMIX_ALPHA": 0.0,
                  "MIXED_PRECISION": True, "EVAL_PERIOD": 1, "CHECKPOINT_PERIOD": 1},
        "TEST": {"DATASET": "cifar10", "SPLIT": "test", "BATCH_SIZE": 1000, "IM_SIZE": 32},
        "RNG_SEED": seed, "DESC": f"OPTIM.BASE_LR {lr} OPTIM.WEIGHT_DECAY {wd}",
    }
    if regnet:
        cfg["REGNET"] = regnet
    return cfg


def pycls_log(cfg: dict, complexity: dict, errs, ema_errs, epochs: int) -> str:
    """A job's stdout.log: cfg, complexity, then per epoch its iterations (skipped by the
    collector), train_epoch, test_epoch and test_ema_epoch lines; fewer errors than epochs
    is a job that stopped early."""
    lines = ["[trainer.py:  80]: Config: (the YAML dump, not a stats line)",
             stats_line("cfg", cfg, "trainer.py:  81"),
             stats_line("complexity", complexity, "trainer.py:  94")]
    best, best_ema = 100.0, 100.0
    for i, (e, m) in enumerate(zip(errs, ema_errs)):
        ep = dict(epoch=f"{i + 1}/{epochs}", epoch_ind=i + 1, epoch_max=epochs)
        lines.append(stats_line("train_iter", dict(ep, iter="10/49", loss=2.1, lr=0.1)))
        lines.append(stats_line("train_epoch", dict(ep, loss=2.0 / (i + 1), lr=0.1,
                                                    top1_err=e + 3.0, top5_err=1.0,
                                                    time_avg=0.05, time_epoch=2.5, eta="0:00:10",
                                                    mem=512)))
        best, best_ema = min(best, e), min(best_ema, m)
        for kind, x, b in (("test_epoch", e, best), ("test_ema_epoch", m, best_ema)):
            lines.append(stats_line(kind, dict(ep, top1_err=x, top5_err=1.0, min_top1_err=b,
                                               min_top5_err=1.0, time_avg=0.01,
                                               time_epoch=0.4, mem=512)))
    return "\n".join(lines) + "\n"


def collect(log_text: str) -> dict:
    """One job's dict of sweep.json, folded as pycls's collector does."""
    job: dict = {}
    for line in log_text.splitlines():
        if "json_stats: " not in line:
            continue
        stats = json.loads(line.split("json_stats: ", 1)[1])
        kind = stats.pop("_type")
        if kind.endswith("_iter"):
            continue
        if "epoch" in stats:
            per = job.setdefault(kind, {})
            for k, v in stats.items():
                per.setdefault(k, []).append(v)
        else:
            job.setdefault(kind, stats)
    return job
