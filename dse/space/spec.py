"""Model specs and tasks: frozen dataclasses validated once (pure).

An `AnyNetSpec` is the concrete architecture every other stage consumes (complexity, the
torch builder, the store); a RegNet is turned into one by quantized linear widths.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace

import numpy as np

from dse.errors import DseError
from dse.space import blocks, regnet, zoo

STEMS = ("imagenet", "cifar")
STEM_W = 32  # stem width of both stems unless a spec says otherwise
ONE_GROUP = 2**31 - 1  # a group width no block reaches: compatibility makes it g = w_b


@dataclass(frozen=True)
class Task:
    """What the network sees and predicts: input resolution, stem, channels, classes."""

    resolution: int = 224
    stem: str = "imagenet"
    in_channels: int = 3
    num_classes: int = 1000

    def __post_init__(self):
        if self.stem not in STEMS:
            raise DseError(f"unknown stem {self.stem!r}; allowed: {', '.join(STEMS)}")
        for name in ("resolution", "in_channels", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DseError(f"{name} must be a positive integer (got {v!r})")

    @property
    def stem_stride(self) -> int:
        return 2 if self.stem == "imagenet" else 1


@dataclass(frozen=True)
class AnyNetSpec:
    """A concrete network: per-stage depths, widths, bottleneck ratios b = w/w_b (b < 1: an
    inverted bottleneck), group widths g, the SE ratio (0 = no SE), the stem width, the
    block type (dse.space.blocks), the activation and the stride of the first stage (2, or 1
    as in NDS's CIFAR networks). Blocks without a bottleneck have b = 1; blocks without
    groups have one group (g = w_b)."""

    ds: tuple[int, ...]
    ws: tuple[int, ...]
    bs: tuple[float, ...]
    gs: tuple[int, ...]
    se_ratio: float = 0.0
    stem_w: int = STEM_W
    block: str = blocks.DEFAULT
    activation: str = blocks.DEFAULT_ACTIVATION
    first_stride: int = 2

    def __post_init__(self):
        # a whole b is an int, so ids and JSON of the X/Y specs stay what they always were
        object.__setattr__(self, "bs", tuple(_ratio(b) for b in self.bs))
        blocks.get(self.block, "spec")
        blocks.activation(self.activation, "spec")
        if self.first_stride not in (1, 2):
            raise DseError(f"first_stride must be 1 or 2 (got {self.first_stride!r})")

    @property
    def depth(self) -> int:
        return sum(self.ds)

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride of each stage's first block: first_stride, then 2."""
        return tuple(self.first_stride if i == 0 else 2 for i in range(len(self.ds)))

    @property
    def is_default_block(self) -> bool:
        """The X/Y network of the paper: x blocks, ReLU, every stage with stride 2."""
        return (self.block, self.activation, self.first_stride) == (blocks.DEFAULT,
                                                                   blocks.DEFAULT_ACTIVATION, 2)

    def compatible(self) -> AnyNetSpec:
        """The same spec with widths made compatible with b and g (pycls rounding)."""
        ws, bs, gs = regnet.make_compatible(list(self.ws), list(self.bs), list(self.gs))
        return replace(self, ws=tuple(map(int, ws)), bs=tuple(bs.tolist()),
                       gs=tuple(map(int, gs)))


def _ratio(b) -> int | float:
    """A bottleneck ratio as an int when whole (1, 2, 4), else a float (0.25, 0.5)."""
    b = float(b)
    return int(b) if b.is_integer() else b


def neutral_bg(block: str, ws) -> tuple[tuple, tuple]:
    """(bs, gs) of a block that has no b or no g: b = 1 without a bottleneck, and one group
    (g = w_b) without group conv; the caller's values otherwise (returned as None)."""
    bt = blocks.get(block)
    bs = None if bt.bottleneck else (1,) * len(ws)
    gs = None if bt.groups else (ONE_GROUP,) * len(ws)  # g' = min(g, w_b) = w_b: one group
    return bs, gs


def from_row(row) -> tuple[AnyNetSpec, Task]:
    """The spec and task of a stored model (a row of models.parquet, as a mapping); rows of
    stores written before block types existed read as x blocks with ReLU."""
    get = row.get if hasattr(row, "get") else (lambda k, d=None: row[k])
    spec = AnyNetSpec(tuple(int(x) for x in row["ds"]), tuple(int(x) for x in row["ws"]),
                      tuple(float(x) for x in row["bs"]), tuple(int(x) for x in row["gs"]),
                      float(row["se_ratio"]), int(row["stem_w"]),
                      _or(get("block"), blocks.DEFAULT),
                      _or(get("activation"), blocks.DEFAULT_ACTIVATION),
                      int(_or(get("first_stride"), 2)))
    task = Task(int(row["resolution"]), str(row["stem"]), int(row["in_channels"]),
                int(row["num_classes"]))
    return spec, task


def regnet_params(row) -> dict | None:
    """The RegNet parameters (d, w0, wa, wm, group_w, b) of a stored RegNet model, None for
    a null one (group_w of a space without groups); None for a model of another kind."""
    if row["kind"] != "regnet":
        return None
    return {k: (None if _or(row[k], None) is None else
                float(row[k]) if k in ("wa", "wm", "b") else int(row[k]))
            for k in ("d", "w0", "wa", "wm", "group_w", "b")}


def _or(v, default):
    """A stored value, or the default where the column is absent or null."""
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


def model_id(spec: AnyNetSpec, task: Task) -> str:
    """A stable 16-hex id of architecture + task: the same network gets the same id (an X/Y
    network's id is the one it had before block types existed)."""
    parts = [list(spec.ds), list(spec.ws), list(spec.bs), list(spec.gs),
             round(float(spec.se_ratio), 6), spec.stem_w, task.resolution, task.stem,
             task.in_channels, task.num_classes]
    if not spec.is_default_block:
        parts += [spec.block, spec.activation, spec.first_stride]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def _int(where, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < lo:
        raise DseError(f"{where} must be an integer ≥ {lo} (got {v!r})")
    return int(v)


def _num(where, v, lo=None, lo_open=False, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DseError(f"{where} must be a number (got {v!r})")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise DseError(f"{where} must be {'>' if lo_open else '≥'} {lo} (got {v!r})")
    if hi is not None and v > hi:
        raise DseError(f"{where} must be ≤ {hi} (got {v!r})")
    return float(v)


BLOCK_KEYS = {"block", "activation", "first_stride"}
REGNET_KEYS = {"kind", "depth", "w0", "wa", "wm", "group_w", "b", "se_ratio", "stem_w"} | BLOCK_KEYS
ANYNET_KEYS = {"kind", "ds", "ws", "bs", "gs", "se_ratio", "stem_w"} | BLOCK_KEYS


def parse_spec(obj) -> tuple[AnyNetSpec, dict]:
    """Validate a spec in its JSON form; returns (compatible AnyNetSpec, RegNet params or {}).

    {"kind":"regnet","depth":..,"w0":..,"wa":..,"wm":..,"group_w":..,"b":1,"se_ratio":0}
    {"kind":"anynet","ds":[..],"ws":[..],"bs":[..],"gs":[..],"se_ratio":0}; optional
    "stem_w", "block" (x, r, v, vr, basic, plain), "activation" (relu, silu) and
    "first_stride" (2, or 1). b may be fractional (0.25: an inverted bottleneck); b and g
    are given only for blocks that have them (dse.space.blocks).
    A text that is not JSON is a name of the zoo (`RegNetX-400MF`, any case; dse.space.zoo).
    """
    if isinstance(obj, str) and not obj.lstrip().startswith(("{", "[", '"')):
        obj = zoo.regnet_json(obj)
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as e:
            raise DseError(f"spec is not valid JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise DseError("spec must be a JSON object with \"kind\": \"regnet\" or \"anynet\"")
    kind = obj.get("kind")
    if kind not in ("regnet", "anynet"):
        raise DseError(f"spec \"kind\" must be \"regnet\" or \"anynet\" (got {kind!r})")
    allowed = REGNET_KEYS if kind == "regnet" else ANYNET_KEYS
    unknown = set(obj) - allowed
    if unknown:
        raise DseError(f"unknown key(s) {sorted(unknown)} in {kind} spec; "
                       f"allowed: {sorted(allowed)}")
    se = _num("se_ratio", obj.get("se_ratio", 0), lo=0, hi=1)
    opts = dict(se_ratio=se, stem_w=_int("stem_w", obj.get("stem_w", STEM_W)),
                block=blocks.get(obj.get("block", blocks.DEFAULT), "spec").name,
                activation=blocks.activation(obj.get("activation", blocks.DEFAULT_ACTIVATION),
                                             "spec"),
                first_stride=_stride(obj.get("first_stride", 2)))
    bt = blocks.get(opts["block"])
    b_key, g_key = ("bs", "gs") if kind == "anynet" else ("b", "group_w")
    blocks.check_params(bt, "spec", b_key in obj, g_key in obj, se)
    spec, rp = _anynet(obj, bt, opts) if kind == "anynet" else _regnet(obj, bt, opts)
    _check_buildable(spec)
    return spec, rp


def _stride(v) -> int:
    if v not in (1, 2) or isinstance(v, bool):
        raise DseError(f"first_stride must be 1 or 2 (got {v!r})")
    return int(v)


def _anynet(obj, bt: blocks.Block, opts: dict) -> tuple[AnyNetSpec, dict]:
    """The compatible spec of an anynet JSON spec; bs and gs only where the block has them."""
    need = ["ds", "ws"] + (["bs"] if bt.bottleneck else []) + (["gs"] if bt.groups else [])
    lists = {}
    for k in need:
        v = obj.get(k)
        if not isinstance(v, list) or not v:
            raise DseError(f"anynet spec needs \"{k}\" as a non-empty list of "
                           f"{'positive numbers' if k == 'bs' else 'integers'}")
        lists[k] = tuple((_num(f"{k}[{i}]", x, lo=0, lo_open=True) if k == "bs"
                          else _int(f"{k}[{i}]", x)) for i, x in enumerate(v))
    if len({len(v) for v in lists.values()}) != 1:
        raise DseError(f"{', '.join(need)} must have one entry per stage (lengths differ: "
                       + ", ".join(f"{k}={len(v)}" for k, v in lists.items()) + ")")
    bs, gs = neutral_bg(bt.name, lists["ws"])
    spec = AnyNetSpec(lists["ds"], lists["ws"], lists.get("bs", bs), lists.get("gs", gs), **opts)
    return spec.compatible(), {}


def _regnet(obj, bt: blocks.Block, opts: dict) -> tuple[AnyNetSpec, dict]:
    """The compatible spec of a regnet JSON spec and its parameters."""
    need = {"depth", "w0", "wa", "wm"} | ({"group_w"} if bt.groups else set())
    missing = need - set(obj)
    if missing:
        raise DseError(f"regnet spec needs {sorted(missing)}")
    d = _int("depth", obj["depth"])
    w0 = _int("w0", obj["w0"])
    if w0 % regnet.Q:
        raise DseError(f"w0 must be a multiple of {regnet.Q} (got {w0})")
    wa = _num("wa", obj["wa"], lo=0, lo_open=True)
    wm = _num("wm", obj["wm"], lo=1, lo_open=True)
    g = _int("group_w", obj["group_w"]) if bt.groups else ONE_GROUP
    b = _ratio(_num("b", obj.get("b", 1), lo=0, lo_open=True))
    ds, ws, gen = regnet.regnet_stages(d, w0, wa, wm)
    if int(gen.num_stages[0]) != int(gen.total_stages[0]):
        raise DseError(f"regnet spec skips a stage: w_m={wm:g} with w_0={w0}, w_a={wa:g} "
                       "gives widths that round onto each other; pick another w_m or w_a")
    n = len(ds)
    spec = AnyNetSpec(tuple(ds), tuple(ws), (b,) * n, (g,) * n, **opts).compatible()
    rp = {"d": d, "w0": w0, "wa": wa, "wm": wm, "group_w": g if bt.groups else None, "b": b}
    return spec, rp


def _check_buildable(spec: AnyNetSpec) -> None:
    """Refuse a spec whose bottleneck width does not split into its groups."""
    ok = regnet.buildable(spec.ws, spec.bs, spec.gs)
    for i in np.flatnonzero(~ok):
        wb = int(regnet.bottleneck([spec.ws[i]], [spec.bs[i]])[0])
        raise DseError(f"stage {i + 1} cannot be built: width {spec.ws[i]} with b = "
                       f"{spec.bs[i]:g} gives a bottleneck of {wb} channels, which is no whole "
                       f"number of groups of g = {spec.gs[i]}; choose g dividing 1/b · w, or "
                       "another width")
