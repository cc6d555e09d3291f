"""A pycls config's network as a dse spec (pure; docs/interop.md).

pycls's `MODEL.TYPE` anynet (per-stage `ANYNET.*` lists) or regnet (`REGNET.*` parameters,
built through dse.space.spec.parse_spec, which rounds as pycls does) becomes an AnyNetSpec
and Task. pycls's `BOT_MULS` / `BOT_MUL` multiply (w_b = w · bot_mul), so dse's b = 1 /
bot_mul; `GROUP_WS` / `GROUP_W` are group widths. Stems res_stem_cifar and simple_stem_in
are dse's cifar and imagenet stems; block types res_bottleneck_block, res_basic_block and
vanilla_block are x, basic and plain; ReLU and SiLU (swish). Keys a config leaves out take
pycls's defaults (DEFAULTS). What dse has no equivalent of — another model type, stem or
block, a head conv (`HEAD_W` > 0), strides other than (1 or 2, then 2) — is named.
"""

from __future__ import annotations

from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task, parse_spec

STEMS = {"res_stem_cifar": "cifar", "simple_stem_in": "imagenet"}
BLOCKS = {"res_bottleneck_block": "x", "res_basic_block": "basic", "vanilla_block": "plain"}
ACTIVATIONS = {"relu": "relu", "silu": "silu", "swish": "silu"}
_COMMON = dict(STEM_TYPE="simple_stem_in", STEM_W=32, BLOCK_TYPE="res_bottleneck_block",
               SE_ON=False, SE_R=0.25, HEAD_W=0)
DEFAULTS = {
    "MODEL": dict(TYPE="", NUM_CLASSES=10, ACTIVATION_FUN="relu", IN_CHANNELS=3),
    "ANYNET": dict(_COMMON, DEPTHS=[], WIDTHS=[], STRIDES=[], BOT_MULS=[], GROUP_WS=[]),
    "REGNET": dict(_COMMON, STRIDE=2, DEPTH=10, W0=32, WA=5.0, WM=2.5, GROUP_W=16,
                   BOT_MUL=1.0),
    "TRAIN": dict(IM_SIZE=224, DATASET=""),
}


def section(cfg: dict, name: str) -> dict:
    """A config section with pycls's defaults under what the config sets."""
    got = cfg.get(name) or {}
    return {**DEFAULTS.get(name, {}), **(got if isinstance(got, dict) else {})}


def task(cfg: dict, stem: str | None) -> Task:
    """The task of a config: TRAIN.IM_SIZE, the stem (by size where dse has none),
    MODEL.NUM_CLASSES and MODEL.IN_CHANNELS (no pycls key: 3, but what `dse export --format
    pycls-sweep` writes for other inputs)."""
    im = int(section(cfg, "TRAIN")["IM_SIZE"])
    model = section(cfg, "MODEL")
    return Task(im, stem or ("cifar" if im <= 64 else "imagenet"), int(model["IN_CHANNELS"]),
                int(model["NUM_CLASSES"]))


def network(cfg: dict, where: str) -> tuple[AnyNetSpec | None, str, str | None, dict]:
    """(spec, why dse cannot build it — empty when it can —, dse stem, RegNet parameters
    {d, w0, wa, wm, group_w, b} or {})."""
    model = section(cfg, "MODEL")
    kind = str(model["TYPE"]).lower()
    if kind not in ("anynet", "regnet"):
        return None, f"model type {kind or '(none)'!r} has no dse equivalent", None, {}
    sec = section(cfg, kind.upper())
    stem_type, bt = sec["STEM_TYPE"], sec["BLOCK_TYPE"]
    act = ACTIVATIONS.get(str(model["ACTIVATION_FUN"]).lower())
    stem = STEMS.get(stem_type)
    for bad, what in ((stem is None, f"{kind.upper()}.STEM_TYPE {stem_type}"),
                      (bt not in BLOCKS, f"{kind.upper()}.BLOCK_TYPE {bt}"),
                      (act is None, f"MODEL.ACTIVATION_FUN {model['ACTIVATION_FUN']}"),
                      (sec["HEAD_W"], f"{kind.upper()}.HEAD_W {sec['HEAD_W']} (a head conv)")):
        if bad:
            return None, f"{what} has no dse equivalent", stem, {}
    block = BLOCKS[bt]
    se = float(sec["SE_R"]) if sec["SE_ON"] and block == "x" else 0.0
    common = dict(se_ratio=se, stem_w=int(sec["STEM_W"]), block=block, activation=act)
    if kind == "regnet":
        if int(sec["STRIDE"]) != 2:
            return None, f"REGNET.STRIDE {sec['STRIDE']} has no dse equivalent", stem, {}
        obj = {"kind": "regnet", **common, "first_stride": 2, "depth": sec["DEPTH"],
               "w0": sec["W0"], "wa": sec["WA"], "wm": sec["WM"]}
        if block == "x":
            obj.update(group_w=sec["GROUP_W"], b=1 / float(sec["BOT_MUL"]))
        else:
            obj.pop("se_ratio")
        spec, rp = parse_spec(obj)
        return spec, "", stem, rp
    lists = {k: sec[k] for k in ("DEPTHS", "WIDTHS", "STRIDES")}
    for k, v in lists.items():
        if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) for x in v):
            raise DseError(f"{where}: ANYNET.{k} must be a non-empty list of numbers")
    ds, ws, ss = ([int(x) for x in v] for v in lists.values())
    if len({len(ds), len(ws), len(ss)}) != 1:
        raise DseError(f"{where}: ANYNET.DEPTHS, WIDTHS and STRIDES need one entry per stage")
    if ss[0] not in (1, 2) or any(s != 2 for s in ss[1:]):
        return None, f"ANYNET.STRIDES {ss} have no dse equivalent", stem, {}
    n = len(ds)
    if block == "x":
        bms, gws = sec["BOT_MULS"], sec["GROUP_WS"]
        if not isinstance(bms, list) or not isinstance(gws, list) or len(bms) != n \
                or len(gws) != n:
            raise DseError(f"{where}: ANYNET.BOT_MULS and GROUP_WS need one entry per stage")
        bs, gs = tuple(1 / float(x) for x in bms), tuple(int(x) for x in gws)
    else:
        bs, gs = (1,) * n, tuple(ws)  # no bottleneck, one group: g = w_b = w
    return AnyNetSpec(tuple(ds), tuple(ws), bs, gs, first_stride=ss[0], **common), "", stem, {}
