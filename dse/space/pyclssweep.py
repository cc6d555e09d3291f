"""A pycls sweep config drawn as dse models (pure; docs/interop.md).

A sweep config (YACS YAML) is recognized by its `SETUP` section. Its `SETUP.SAMPLERS` map
config keys to samplers; each draw sets those keys on `SETUP.BASE_CFG`, and the draw is kept
when it is new (pycls's key: "K1 V1 K2 V2 …"), a RegNet has all its stages and their number
within `CONSTRAINTS.REGNET.NUM_STAGES`, and its flops, params and acts (at `TRAIN.IM_SIZE`)
lie in `CONSTRAINTS.CX` (a side given as 0 is open; [0, 0] is no constraint).

The samplers and their arithmetic are pycls's (`pycls/sweep/random.py`), with an explicit
numpy Generator. A value is quantized to q with decimal arithmetic and takes q's type
(int or float):

    uniform                f ~ U[lo, hi + q), floored to q
    log_uniform            f = exp(−U(−log hi, −log(lo − min(q, lo/2)))), ceiled to q
    power2_uniform         2^floor(U[log2 lo, log2 hi + 1)), floored to q
    power2_or_log_uniform  a power of two from power2_uniform(lo, hi, lo); if it is ≥ q,
                           log_uniform(max(lo, q), hi, min(hi, q)) instead
    normal, log_normal     N(μ, σ) (of log f), μ = mid-range, σ = range / 6, redrawn until
                           within [lo, hi], rounded to q

`regnet_sampler` draws DEPTH uniform (q 1), W0 log-uniform (q 8), WA log-uniform (q 0.1), WM
log-uniform (q 0.001), GROUP_W power2_or_log_uniform (q 8), BOT_MUL power2_uniform (q 1/128).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from dse.errors import DseError
from dse.space import pyclsnet, regnet
from dse.space.complexity import batch
from dse.space.spec import AnyNetSpec, Task

TOP_KEYS = ("ROOT_DIR", "NAME", "DESC", "NUM_PROC", "SWEEP_CFG_FILE", "SETUP", "LAUNCH",
            "COLLECT", "ANALYZE")
SETUP_KEYS = ("NUM_CONFIGS", "NUM_SAMPLES", "CHUNK_SIZE", "RNG_SEED", "BASE_CFG", "SAMPLERS",
              "CONSTRAINTS")
RAND_TYPES = ("uniform", "log_uniform", "power2_uniform", "power2_or_log_uniform", "normal",
              "log_normal")
SAMPLER_FIELDS = {
    "value_sampler": dict(VALUES=[]),
    "float_sampler": dict(RAND_TYPE="uniform", RANGE=[0.0, 0.0], QUANTIZE=0.00001),
    "int_sampler": dict(RAND_TYPE="uniform", RANGE=[0, 0], QUANTIZE=1),
    "list_sampler": dict(LENGTH=0, ITEM_SAMPLER={}),
    "regnet_sampler": dict(DEPTH=[12, 28], W0=[8, 256], WA=[8.0, 256.0], WM=[2.0, 3.0],
                           GROUP_W=[8, 128], BOT_MUL=[1.0, 1.0]),
}
# regnet_sampler: (field, rand type, q) in pycls's order of draws
REGNET_DRAWS = (("DEPTH", "uniform", 1), ("W0", "log_uniform", 8), ("WA", "log_uniform", 0.1),
                ("WM", "log_uniform", 0.001), ("GROUP_W", "power2_or_log_uniform", 8),
                ("BOT_MUL", "power2_uniform", 1 / 128))
SAMPLED_SECTIONS = ("MODEL", "REGNET", "ANYNET", "OPTIM", "BN", "TRAIN", "TEST")


def is_sweep(obj) -> bool:
    """Whether a parsed YAML is a pycls sweep config (it has a SETUP section)."""
    return isinstance(obj, dict) and isinstance(obj.get("SETUP"), dict)


# ---- pycls's random numbers -------------------------------------------------------------------

def quantize(f, q, op=math.floor):
    """f as a multiple of q (op: floor, ceil or round of f / q), of q's type."""
    v = Decimal(float(op(f / q))) * Decimal(str(q))
    return type(q)(v)


def rand(rng: np.random.Generator, kind: str, lo, hi, q):
    """One draw of a pycls RAND_TYPE on [lo, hi], quantized to q."""
    if kind == "uniform":
        return quantize(rng.uniform(lo, hi + q), q, math.floor)
    if kind == "log_uniform":
        f = math.exp(-rng.uniform(-math.log(hi), -math.log(lo - min(q, lo / 2))))
        return quantize(f, q, math.ceil)
    if kind == "power2_uniform":
        return quantize(2 ** math.floor(rng.uniform(math.log2(lo), math.log2(hi) + 1)), q)
    if kind == "power2_or_log_uniform":
        f = type(q)(rand(rng, "power2_uniform", lo, hi, lo))
        return rand(rng, "log_uniform", max(lo, q), hi, min(hi, q)) if f >= q else f
    if kind in ("normal", "log_normal"):
        a, b = (lo, hi) if kind == "normal" else (math.log(lo), math.log(hi))
        mu, sigma, f = (a + b) / 2, (b - a) / 6, math.inf
        while not lo <= f <= hi:
            f = rng.normal(mu, sigma) if kind == "normal" else rng.lognormal(mu, sigma)
        return quantize(f, q, round)
    raise DseError(f"unknown RAND_TYPE {kind!r}; pycls has {', '.join(RAND_TYPES)}")


def check_rand(where: str, kind, lo, hi, q) -> None:
    """pycls's checks of a RAND_TYPE and its range, as one DseError."""
    bad = f"{where}: {kind}(low={lo}, high={hi}, q={q}) is invalid"
    if kind not in RAND_TYPES:
        raise DseError(f"{where}: unknown RAND_TYPE {kind!r}; pycls has {', '.join(RAND_TYPES)}")
    nums = (lo, hi, q)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in nums) \
            or len({type(v) for v in nums}) != 1:
        raise DseError(f"{bad}: low, high and q must be numbers of one type (all int or all "
                       "float)")
    if not (q > 0 and lo <= hi):
        raise DseError(f"{bad}: q must be > 0 and low ≤ high")
    if lo <= 0 and kind not in ("uniform", "normal"):
        raise DseError(f"{bad}: low must be > 0 for {kind}")
    dq = Decimal(str(q))
    if kind != "power2_or_log_uniform" and (Decimal(str(lo)) % dq or Decimal(str(hi)) % dq):
        raise DseError(f"{bad}: low and high must be multiples of q")
    if kind.startswith("power2") and not all(math.log2(v).is_integer() for v in nums):
        raise DseError(f"{bad}: low, high and q must be powers of two")


# ---- samplers ---------------------------------------------------------------------------------

def sampler(key: str, obj, where: str = "SETUP.SAMPLERS") -> dict:
    """A sampler with pycls's defaults filled in, checked; DseError naming what is wrong."""
    at = f"{where}.{key}"
    if not isinstance(obj, dict) or "TYPE" not in obj:
        raise DseError(f"{at}: a sampler needs a TYPE ({', '.join(SAMPLER_FIELDS)})")
    kind = str(obj["TYPE"]).lower()
    if kind not in SAMPLER_FIELDS:
        raise DseError(f"{at}: unknown sampler TYPE {obj['TYPE']!r}; pycls has "
                       f"{', '.join(SAMPLER_FIELDS)}")
    unknown = sorted(set(obj) - {"TYPE"} - set(SAMPLER_FIELDS[kind]))
    if unknown:
        raise DseError(f"{at}: {kind} has no {', '.join(unknown)} (it takes "
                       f"{', '.join(SAMPLER_FIELDS[kind])})")
    s = {**copy.deepcopy(SAMPLER_FIELDS[kind]), **obj, "TYPE": kind}
    if kind in ("float_sampler", "int_sampler"):
        if not isinstance(s["RANGE"], list) or len(s["RANGE"]) != 2:
            raise DseError(f"{at}: RANGE must be [LOW, HIGH]")
        check_rand(at, s["RAND_TYPE"], *s["RANGE"], s["QUANTIZE"])
    elif kind == "value_sampler":
        if not isinstance(s["VALUES"], list) or not s["VALUES"]:
            raise DseError(f"{at}: VALUES must be a non-empty list")
    elif kind == "list_sampler":
        if isinstance(s["LENGTH"], bool) or not isinstance(s["LENGTH"], int) or s["LENGTH"] < 1:
            raise DseError(f"{at}: LENGTH must be a positive integer")
        s["ITEM_SAMPLER"] = sampler("ITEM_SAMPLER", s["ITEM_SAMPLER"], at)
    else:
        if key != "REGNET":
            raise DseError(f"{at}: regnet_sampler can only sample the key REGNET")
        for name, rt, q in REGNET_DRAWS:
            if not isinstance(s[name], list) or len(s[name]) != 2:
                raise DseError(f"{at}.{name}: must be [LOW, HIGH]")
            check_rand(f"REGNET.{name}", rt, *s[name], q)
    return s


def draw_value(rng: np.random.Generator, s: dict):
    """One draw of a checked sampler: a value, or [(key, value), …] for regnet_sampler."""
    kind = s["TYPE"]
    if kind == "value_sampler":
        return s["VALUES"][int(rng.integers(len(s["VALUES"])))]
    if kind in ("float_sampler", "int_sampler"):
        return rand(rng, s["RAND_TYPE"], *s["RANGE"], s["QUANTIZE"])
    if kind == "list_sampler":
        return [draw_value(rng, s["ITEM_SAMPLER"]) for _ in range(s["LENGTH"])]
    return [(f"REGNET.{name}", rand(rng, rt, *s[name], q)) for name, rt, q in REGNET_DRAWS]


# ---- a sweep ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    """A pycls sweep config, checked: its samplers, base config and constraints."""

    name: str
    num_configs: int
    num_samples: int
    seed: int
    base: dict
    samplers: dict
    cx: dict            # flops/params/acts → (lo or None, hi or None)
    num_stages: tuple[int, int]


def _window(where: str, v) -> tuple:
    if not isinstance(v, list) or len(v) != 2 or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v):
        raise DseError(f"{where} must be [LOW, HIGH] with numbers ≥ 0 (0: open side)")
    return (float(v[0]) or None, float(v[1]) or None)


def parse(obj, where: str = "sweep config") -> Sweep:
    """A checked Sweep; DseError naming every key dse does not know, at once."""
    if not is_sweep(obj):
        raise DseError(f"{where} is not a pycls sweep config (no SETUP section)")
    setup = obj["SETUP"]
    unknown = [k for k in obj if k not in TOP_KEYS] + \
        [f"SETUP.{k}" for k in setup if k not in SETUP_KEYS]
    cons = setup.get("CONSTRAINTS") or {}
    unknown += [f"SETUP.CONSTRAINTS.{k}" for k in cons if k not in ("CX", "REGNET")]
    unknown += [f"SETUP.CONSTRAINTS.CX.{k}" for k in (cons.get("CX") or {})
                if k not in ("FLOPS", "PARAMS", "ACTS")]
    samplers = setup.get("SAMPLERS") or {}
    unknown += [f"SETUP.SAMPLERS.{k}" for k in samplers
                if k != "REGNET" and (k.split(".")[0] not in SAMPLED_SECTIONS
                                      and k != "RNG_SEED")]
    if unknown:
        raise DseError(f"{where}: keys dse does not support: {', '.join(unknown)}")
    n = setup.get("NUM_CONFIGS")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DseError(f"{where}: SETUP.NUM_CONFIGS is required, a positive integer")
    base = setup.get("BASE_CFG") or {}
    if not isinstance(base, dict):
        raise DseError(f"{where}: SETUP.BASE_CFG must be a mapping (a pycls config)")
    cx = {k.lower(): _window(f"SETUP.CONSTRAINTS.CX.{k}", v)
          for k, v in (cons.get("CX") or {}).items()}
    ns = (cons.get("REGNET") or {}).get("NUM_STAGES", [4, 4])
    return Sweep(str(obj.get("NAME") or "pycls-sweep"), n,
                 int(setup.get("NUM_SAMPLES", 1_000_000)), int(setup.get("RNG_SEED", 0)),
                 base, {k: sampler(k, v) for k, v in samplers.items()}, cx,
                 (int(ns[0]), int(ns[1])))


def _set(cfg: dict, key: str, value) -> dict:
    """A copy of cfg with cfg[A][B] = value for key "A.B": the sections on the path are
    copied, the rest shared (sections created as needed)."""
    head, _, rest = key.partition(".")
    out = dict(cfg)
    out[head] = _set(cfg.get(head) or {}, rest, value) if rest else value
    return out


@dataclass(frozen=True)
class Drawn:
    """One kept draw: pycls's key, its config, the network, RegNet parameters, cost."""

    key: str
    cfg: dict
    spec: AnyNetSpec
    task: Task
    regnet: dict
    cx: dict


def draw(sweep: Sweep, n: int, seed: int, chunk: int = 1024) -> tuple[list[Drawn], dict]:
    """Up to n distinct draws that meet the constraints (in at most NUM_SAMPLES tries, in
    the order drawn), and counts of what was rejected and why. Tries are checked a chunk at
    a time: the RegNet stage counts and the complexity of a chunk in one numpy pass."""
    rng = np.random.default_rng(seed)
    out, seen, why = [], set(), {"repeat": 0, "stages": 0, "complexity": 0}
    tried = 0
    while len(out) < n and tried < sweep.num_samples:
        cfgs, keys = [], []
        for _ in range(min(chunk, sweep.num_samples - tried)):
            params = []
            for k, s in sweep.samplers.items():
                v = draw_value(rng, s)
                params += v if s["TYPE"] == "regnet_sampler" else [(k, v)]
            key = " ".join(f"{k} {v}" for k, v in params)
            if key in seen:
                why["repeat"] += 1
                continue
            seen.add(key)
            cfg = sweep.base
            for k, v in params:
                cfg = _set(cfg, k, v)
            cfgs.append(cfg)
            keys.append(key)
        tried += chunk
        ok = _stages_ok(cfgs, sweep.num_stages)
        why["stages"] += int((~ok).sum())
        built = []
        for cfg, key in zip((c for c, g in zip(cfgs, ok) if g), (k for k, g in zip(keys, ok)
                                                                 if g)):
            spec, reason, stem, rp = pyclsnet.network(cfg, f"draw {key!r}")
            if spec is None:
                raise DseError(f"the sweep's models cannot be built by dse: {reason}")
            built.append((key, cfg, spec, pyclsnet.task(cfg, stem), rp))
        costs = batch([b[2] for b in built], [b[3] for b in built])
        for (key, cfg, spec, task, rp), c in zip(built, costs):
            cx = dict(zip(("flops", "params", "acts"), map(int, c)))
            if not all((lo is None or cx[k] >= lo) and (hi is None or cx[k] <= hi)
                       for k, (lo, hi) in sweep.cx.items()):
                why["complexity"] += 1
                continue
            out.append(Drawn(key, _set(copy.deepcopy(cfg), "DESC", key), spec, task, rp, cx))
            if len(out) == n:
                break
    return out, why


def _stages_ok(cfgs: list, num_stages: tuple[int, int]) -> np.ndarray:
    """pycls's RegNet constraint per config: every stage present, their number within
    NUM_STAGES (configs of other model types pass)."""
    ok = np.ones(len(cfgs), dtype=bool)
    idx = [i for i, c in enumerate(cfgs)
           if str(pyclsnet.section(c, "MODEL")["TYPE"]).lower() == "regnet"]
    if not idx:
        return ok
    r = [pyclsnet.section(cfgs[i], "REGNET") for i in idx]
    gen = regnet.quantized_widths(*(np.array([x[k] for x in r], dtype=t) for k, t in
                                    (("DEPTH", np.int64), ("W0", np.int64), ("WA", float),
                                     ("WM", float))), regnet.Q)
    ns, total = np.asarray(gen.num_stages), np.asarray(gen.total_stages)
    ok[idx] = (ns == total) & (ns >= num_stages[0]) & (ns <= num_stages[1])
    return ok
