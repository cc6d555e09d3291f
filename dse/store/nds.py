"""The NDS data release read as records (pure; docs/interop.md).

A file is a JSON list of trained models, or `{"top": [...], "mid": [...]}` (the `_reruns`
files: the same networks trained again). A record's `net` gives per-stage lists whose
element 0 is the stem (`ds[0] == 1`, `ws[0]` the stem width, `ss[0]` its stride); `num_gs`
counts groups, so a stage's group width is its bottleneck width / num_gs. The block types
dse builds: `res_bottleneck_block…` (x), `res_basic_block…` (basic), `double_plain_block`
and `vanilla_block` (plain); anything else (the NAS cells' `genotype`, a stem of another
stride, later stages with stride 1) is an opaque model. `bot_muls` is read first as pycls's
multiplier (w_b = w · bot_mul, so b = 1 / bot_mul) and then as dse's ratio; the reading
whose flops match the file's is kept. A file whose name ends in `_in` is ImageNet
(224 px, 1000 classes), every other one CIFAR-10.
"""

from __future__ import annotations

import math
import re

from dse.errors import DseError
from dse.space import regnet
from dse.space.spec import AnyNetSpec, Task
from dse.store.records import Record, ints, need, net_json, number, outcome, series

CIFAR = ("cifar10", Task(32, "cifar", 3, 10))
IMAGENET = ("imagenet", Task(224, "imagenet", 3, 1000))
BLOCK_PREFIXES = (("res_bottleneck_block", "x"), ("res_basic_block", "basic"),
                  ("double_plain_block", "plain"), ("vanilla_block", "plain"))
REQUIRED = ("net", "optim", "rng_seed", "flops", "params", "test_ep_top1")
OPTIM_REQUIRED = ("base_lr", "wd", "max_ep")
_HAVE, _OPTIM_HAVE = frozenset(REQUIRED), frozenset(OPTIM_REQUIRED)  # checked at C speed
_RERUN = re.compile(r"_(rng\d+|reruns)$")


def is_nds(data) -> str | None:
    """'list' or 'reruns' when `data` (parsed JSON) has an NDS shape, else None."""
    if isinstance(data, dict) and set(data) == {"top", "mid"}:
        return "reruns"
    if isinstance(data, list) and data and isinstance(data[0], dict) \
            and "net" in data[0] and "optim" in data[0]:
        return "list"
    return None


def space_name(stem: str) -> str:
    """The default space of an NDS file: `ResNet_rng2` → nds-resnet (its reruns join the
    original's), `ResNeXt-A_in` → nds-resnext-a-in, `DARTS_lr-wd` → nds-darts-lr-wd."""
    base = _RERUN.sub("", stem)
    return "nds-" + base.lower().replace("_", "-")


def dataset_of(stem: str) -> tuple[str, Task]:
    """(dataset, task) of an NDS file by its name: `_in` is ImageNet, the rest CIFAR-10."""
    return IMAGENET if _RERUN.sub("", stem).endswith("_in") else CIFAR


def jobs(data, where: str) -> list[dict]:
    """The records of either shape, the reruns' `top` before `mid`."""
    if isinstance(data, dict):
        out = []
        for part in ("top", "mid"):
            got = data[part]
            if not isinstance(got, list):
                raise DseError(f"{where}: {part!r} must be a list of records")
            out += got
        return out
    return data


def records(data, stem: str, where: str) -> list[Record]:
    """Every record of an NDS file (parsed JSON) named `stem`; DseError naming the record and
    the key on the first malformed one."""
    dataset, task = dataset_of(stem)
    return [_record(j, i, dataset, task, f"{where}: record {i}")
            for i, j in enumerate(jobs(data, where))]


def _record(job, i: int, dataset: str, task: Task, where: str) -> Record:
    if not (isinstance(job, dict) and job.keys() >= _HAVE):  # the error names the key
        for k in REQUIRED:
            need(job, k, where)
    optim = job["optim"]
    if not (isinstance(optim, dict) and optim.keys() >= _OPTIM_HAVE):
        for k in OPTIM_REQUIRED:
            need(optim, k, f"{where} optim")
    epochs = int(number(optim["max_ep"], f"{where} optim.max_ep"))
    errors = series(job["test_ep_top1"], f"{where} test_ep_top1")
    loss = series(job["train_ep_loss"], f"{where} train_ep_loss") \
        if "train_ep_loss" in job else None
    status, error, message = outcome(errors, epochs)
    net = job["net"]
    specs, why = _specs(net, task, where)
    recipe = dict(epochs=epochs, lr=number(optim["base_lr"], f"{where} optim.base_lr"),
                  wd=number(optim["wd"], f"{where} optim.wd"), augment=True)
    for k in ("momentum", "nesterov"):
        if k in optim:
            recipe[k] = optim[k]
    extra = {f"optim.{k}": v for k, v in optim.items()
             if k not in ("base_lr", "wd", "max_ep", "momentum", "nesterov")}
    cx = dict(flops=int(number(job["flops"], f"{where} flops")),
              params=int(number(job["params"], f"{where} params")))
    return Record(index=i, task=task, dataset=dataset, specs=specs, opaque=why,
                  net="" if specs else net_json(net), file_cx=cx, recipe=recipe, extra=extra,
                  seed=int(number(job["rng_seed"], f"{where} rng_seed")), status=status,
                  error=error, message=message, history_error=errors, history_loss=loss,
                  epochs_run=len(errors))


def block_of(block_type: str) -> str | None:
    """dse's block of an NDS block type, None when dse has none."""
    for prefix, name in BLOCK_PREFIXES:
        if block_type.startswith(prefix) and "linear" not in block_type:
            return name
    return None


def _specs(net: dict, task: Task, where: str) -> tuple[tuple[AnyNetSpec, ...], str]:
    """The candidate specs of a `net` (pycls's bot_mul reading first), or () and why dse
    cannot build it."""
    if not isinstance(net, dict):
        raise DseError(f"{where}: net must be a JSON object")
    if "genotype" in net:
        return (), "a NAS cell network"
    bt = need(net, "block_type", f"{where} net")
    block = block_of(str(bt))
    if block is None:
        return (), f"block type {bt} has no dse equivalent"
    lists = {k: ints(need(net, k, f"{where} net"), f"{where} net.{k}")
             for k in ("ds", "ws", "ss")}
    if len({len(v) for v in lists.values()}) != 1 or len(lists["ds"]) < 2:
        raise DseError(f"{where}: net ds, ws and ss must have one entry per stage after the "
                       "stem (element 0)")
    ds, ws, ss = (v[1:] for v in lists.values())
    if lists["ds"][0] != 1 or lists["ss"][0] != task.stem_stride:
        return (), f"a stem of depth {lists['ds'][0]}, stride {lists['ss'][0]}"
    if ss[0] not in (1, 2) or any(s != 2 for s in ss[1:]):
        return (), f"stage strides {ss}"
    common = dict(stem_w=lists["ws"][0], block=block, first_stride=ss[0],
                  se_ratio=float(net.get("se_r") or 0.0))
    n = len(ds)
    if block != "x":
        # no bottleneck and one group: compatible as it stands (b = 1, g = w_b = w)
        return (AnyNetSpec(tuple(ds), tuple(ws), (1,) * n, tuple(ws), **common),), ""
    bms = series(need(net, "bot_muls", f"{where} net"), f"{where} net.bot_muls")
    ngs = ints(need(net, "num_gs", f"{where} net"), f"{where} net.num_gs")
    if len(bms) != n + 1 or len(ngs) != n + 1:
        raise DseError(f"{where}: net bot_muls and num_gs need one entry per stage after the "
                       "stem (element 0)")
    out = []
    for bs in ([1 / b for b in bms[1:]], bms[1:]):
        if any(b <= 0 or not math.isfinite(b) for b in bs):
            continue
        wbs = regnet.bottleneck(ws, bs)
        if any(int(wb) % g for wb, g in zip(wbs, ngs[1:])):
            continue
        gs = tuple(int(wb) // g for wb, g in zip(wbs, ngs[1:]))
        spec = AnyNetSpec(tuple(ds), tuple(ws), tuple(bs), gs, **common)
        if spec not in out:
            out.append(spec)
    if not out:
        return (), "bottleneck widths that do not split into num_gs groups"
    return tuple(out), ""
