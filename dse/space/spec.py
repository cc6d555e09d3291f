"""Model specs and tasks: frozen dataclasses validated once (pure).

An `AnyNetSpec` is the concrete architecture every other stage consumes (complexity, the
torch builder, the store); a RegNet is turned into one by quantized linear widths.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from dse.errors import DseError
from dse.space import regnet, zoo

STEMS = ("imagenet", "cifar")
STEM_W = 32  # stem width of both stems unless a spec says otherwise


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
    """A concrete network: per-stage depths, widths, bottleneck ratios b = w/w_b, group
    widths g, the SE ratio (0 = X block) and the stem width."""

    ds: tuple[int, ...]
    ws: tuple[int, ...]
    bs: tuple[int, ...]
    gs: tuple[int, ...]
    se_ratio: float = 0.0
    stem_w: int = STEM_W

    @property
    def depth(self) -> int:
        return sum(self.ds)

    def compatible(self) -> AnyNetSpec:
        """The same spec with widths made compatible with b and g (pycls rounding)."""
        ws, bs, gs = regnet.make_compatible(list(self.ws), list(self.bs), list(self.gs))
        return AnyNetSpec(self.ds, tuple(map(int, ws)), tuple(map(int, bs)),
                          tuple(map(int, gs)), self.se_ratio, self.stem_w)


def from_row(row) -> tuple[AnyNetSpec, Task]:
    """The spec and task of a stored model (a row of models.parquet, as a mapping)."""
    spec = AnyNetSpec(*(tuple(int(x) for x in row[k]) for k in ("ds", "ws", "bs", "gs")),
                      float(row["se_ratio"]), int(row["stem_w"]))
    task = Task(int(row["resolution"]), str(row["stem"]), int(row["in_channels"]),
                int(row["num_classes"]))
    return spec, task


def model_id(spec: AnyNetSpec, task: Task) -> str:
    """A stable 16-hex id of architecture + task: the same network gets the same id."""
    key = json.dumps([list(spec.ds), list(spec.ws), list(spec.bs), list(spec.gs),
                      round(float(spec.se_ratio), 6), spec.stem_w, task.resolution, task.stem,
                      task.in_channels, task.num_classes])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


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


REGNET_KEYS = {"kind", "depth", "w0", "wa", "wm", "group_w", "b", "se_ratio", "stem_w"}
ANYNET_KEYS = {"kind", "ds", "ws", "bs", "gs", "se_ratio", "stem_w"}


def parse_spec(obj) -> tuple[AnyNetSpec, dict]:
    """Validate a spec in its JSON form; returns (compatible AnyNetSpec, RegNet params or {}).

    {"kind":"regnet","depth":..,"w0":..,"wa":..,"wm":..,"group_w":..,"b":1,"se_ratio":0}
    {"kind":"anynet","ds":[..],"ws":[..],"bs":[..],"gs":[..],"se_ratio":0}; optional "stem_w".
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
    stem_w = _int("stem_w", obj.get("stem_w", STEM_W))
    if kind == "anynet":
        lists = {}
        for k in ("ds", "ws", "bs", "gs"):
            v = obj.get(k)
            if not isinstance(v, list) or not v:
                raise DseError(f"anynet spec needs \"{k}\" as a non-empty list of integers")
            lists[k] = tuple(_int(f"{k}[{i}]", x) for i, x in enumerate(v))
        if len({len(v) for v in lists.values()}) != 1:
            raise DseError("ds, ws, bs and gs must have one entry per stage (lengths differ: "
                           + ", ".join(f"{k}={len(v)}" for k, v in lists.items()) + ")")
        return AnyNetSpec(**lists, se_ratio=se, stem_w=stem_w).compatible(), {}
    missing = {"depth", "w0", "wa", "wm", "group_w"} - set(obj)
    if missing:
        raise DseError(f"regnet spec needs {sorted(missing)}")
    d = _int("depth", obj["depth"])
    w0 = _int("w0", obj["w0"])
    if w0 % regnet.Q:
        raise DseError(f"w0 must be a multiple of {regnet.Q} (got {w0})")
    wa = _num("wa", obj["wa"], lo=0, lo_open=True)
    wm = _num("wm", obj["wm"], lo=1, lo_open=True)
    g = _int("group_w", obj["group_w"])
    b = _int("b", obj.get("b", 1))
    ds, ws, gen = regnet.regnet_stages(d, w0, wa, wm)
    if int(gen.num_stages[0]) != int(gen.total_stages[0]):
        raise DseError(f"regnet spec skips a stage: w_m={wm:g} with w_0={w0}, w_a={wa:g} "
                       "gives widths that round onto each other; pick another w_m or w_a")
    n = len(ds)
    spec = AnyNetSpec(tuple(ds), tuple(ws), (b,) * n, (g,) * n, se, stem_w).compatible()
    return spec, {"d": d, "w0": w0, "wa": wa, "wm": wm, "group_w": g, "b": b}
