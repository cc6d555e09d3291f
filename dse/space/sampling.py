"""Draw distinct models from a design space under complexity windows (pure numpy).

Candidates are drawn in fixed-size batches from an explicit numpy Generator, made compatible
(group/bottleneck rounding), filtered by the stage-count rule and the flops/params/acts
windows, and kept in draw order unless their architecture was seen before. The same seed and
arguments give the same population. Each space draws from its own stream, derived from
(seed, space name), so spaces sampled with one seed share no draws. A space's `shared` and
`non_decreasing` constraints hold on the models as built: a candidate whose widths, bottleneck
ratios or group widths break them after compatibility rounding is drawn again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dse.errors import DseError
from dse.space import regnet
from dse.space.complexity import cost_arrays
from dse.space.definition import Space
from dse.space.spec import AnyNetSpec, Task, model_id
from dse.units import si

BATCH = 8192
MAX_DRAWS = 2_000_000
GIVE_UP = 32 * BATCH  # draws with no model in the windows at all: treat them as unreachable


@dataclass(frozen=True)
class Window:
    """An inclusive [lo, hi] range of a complexity metric; None bounds are open."""

    lo: float | None = None
    hi: float | None = None

    def __post_init__(self):
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise DseError(f"window {si(self.lo)}:{si(self.hi)} is reversed; write LO:HI "
                           "with LO ≤ HI")

    def contains(self, x: np.ndarray) -> np.ndarray:
        ok = np.ones(x.shape, dtype=bool)
        if self.lo is not None:
            ok &= x >= self.lo
        if self.hi is not None:
            ok &= x <= self.hi
        return ok

    def __str__(self):
        return f"{si(self.lo) if self.lo is not None else ''}:" \
               f"{si(self.hi) if self.hi is not None else ''}"


def parse_window(text: str, what: str = "window") -> Window:
    """'360M:400M' -> Window(3.6e8, 4e8); either side may be empty; K/M/G suffixes."""
    if text is None:
        return Window()
    parts = str(text).split(":")
    if len(parts) != 2:
        raise DseError(f"{what} {text!r} is malformed; write LO:HI, e.g. 360M:400M "
                       "(K, M, G suffixes; either side may be empty)")
    return Window(*(parse_amount(p, what, text) if p.strip() else None for p in parts))


def parse_amount(s: str, what: str = "value", whole: str | None = None) -> float:
    s = s.strip()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:].upper(), 1)
    body = s[:-1] if scale != 1 else s
    try:
        v = float(body) * scale
    except ValueError:
        raise DseError(f"{what} {whole or s!r} is malformed: {s!r} is not a number "
                       "(use e.g. 360M, 0.4G, 5e6)") from None
    if not np.isfinite(v) or v < 0:
        raise DseError(f"{what} {whole or s!r}: bounds must be finite and ≥ 0")
    return v


def _draw_anynet(space: Space, rng: np.random.Generator, n: int):
    """(ds, ws, bs, gs) arrays of shape (n, S) for an AnyNet space, made compatible."""
    out = {}
    for k in ("d", "w", "b", "g"):
        dist = space.params[k]
        if k in space.shared:
            v = np.repeat(dist.draw(rng, (n, 1)), space.stages, axis=1)
        elif k in space.non_decreasing:
            v = dist.draw_non_decreasing(rng, n, space.stages)
        else:
            v = dist.draw(rng, (n, space.stages))
        out[k] = v.astype(np.int64)
    ws, bs, gs = regnet.make_compatible(out["w"], out["b"], out["g"])
    ok = obeys(space, dict(d=out["d"], w=ws, b=bs, g=gs))
    return np.where(ok[:, None], out["d"], 0), ws, bs, gs, {}


def obeys(space: Space, built: dict) -> np.ndarray:
    """Rows whose built per-stage values (d, w, b, g: (n, S) arrays after compatibility
    rounding) keep the space's shared and non-decreasing constraints."""
    ok = np.ones(len(built["d"]), dtype=bool)
    for k in space.shared:
        ok &= (built[k] == built[k][:, :1]).all(axis=1)
    for k in space.non_decreasing:
        ok &= (np.diff(built[k], axis=1) >= 0).all(axis=1)
    return ok


def stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of one space: derived from (seed, space name), so that spaces
    sampled with the same seed draw independently of each other."""
    key = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def _draw_regnet(space: Space, rng: np.random.Generator, n: int):
    """(ds, ws, bs, gs) for a RegNet space plus its parameters; rows that do not have exactly
    `space.stages` stages (or skip an exponent) get d = 0 everywhere and are dropped later."""
    p = {k: space.params[k].draw(rng, n) for k in ("d", "w0", "wa", "wm", "g", "b")}
    gen = regnet.quantized_widths(p["d"], p["w0"], p["wa"], p["wm"])
    ok = (gen.num_stages == gen.total_stages) & (gen.total_stages == space.stages)
    ds, ws = regnet.stages_from_widths(gen.ks, gen.w, space.stages)
    ds = np.where(ok[:, None], ds, 0)
    ws = np.where(ok[:, None], ws, 8)
    S = space.stages
    g = np.repeat(p["g"].astype(np.int64)[:, None], S, axis=1)
    b = np.repeat(p["b"].astype(np.int64)[:, None], S, axis=1)
    ws, bs, gs = regnet.make_compatible(ws, b, g)
    return ds, ws, bs, gs, p


def sample(space: Space, n: int, task: Task, flops: Window = Window(),
           params: Window = Window(), acts: Window = Window(), seed: int = 0,
           exclude=frozenset(), max_draws: int = MAX_DRAWS) -> list[dict]:
    """Draw n distinct models whose complexity lies in every window.

    Returns rows (dicts) with the architecture (ds, ws, bs, gs; RegNet params d, w0, wa, wm,
    group_w, b), complexity and model_id. Models whose id is in `exclude` are skipped, so
    sampling into an existing population adds new models. Raises DseError naming the windows
    when n models are not found within `max_draws` candidates.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DseError(f"the number of models must be a positive integer (got {n!r})")
    rng = stream(seed, space.name)
    draw = _draw_anynet if space.kind == "anynet" else _draw_regnet
    rows, seen, draws, in_window = [], set(exclude), 0, 0
    flops_seen = []
    while len(rows) < n and draws < max_draws and (in_window or draws < GIVE_UP):
        ds, ws, bs, gs, p = draw(space, rng, BATCH)
        draws += BATCH
        total, *_ = cost_arrays(ds, ws, bs, gs, task, space.se_ratio)
        valid = ds.sum(axis=1) > 0
        if len(flops_seen) < 8:
            flops_seen.append(total.flops[valid][:256])
        keep = valid & flops.contains(total.flops) & params.contains(total.params) \
            & acts.contains(total.acts)
        in_window += int(keep.sum())
        for i in np.flatnonzero(keep):
            spec = AnyNetSpec(tuple(ds[i].tolist()), tuple(ws[i].tolist()),
                              tuple(bs[i].tolist()), tuple(gs[i].tolist()), space.se_ratio)
            mid = model_id(spec, task)
            if mid in seen:
                continue
            seen.add(mid)
            row = dict(model_id=mid, ds=list(spec.ds), ws=list(spec.ws), bs=list(spec.bs),
                       gs=list(spec.gs), se_ratio=spec.se_ratio, stem_w=spec.stem_w,
                       flops=int(total.flops[i]), params=int(total.params[i]),
                       acts=int(total.acts[i]))
            if space.kind == "regnet":
                row.update(d=int(p["d"][i]), w0=int(p["w0"][i]), wa=float(p["wa"][i]),
                           wm=float(p["wm"][i]), group_w=int(p["g"][i]), b=int(p["b"][i]))
            rows.append(row)
            if len(rows) == n:
                break
    if len(rows) < n:
        fl = np.concatenate(flops_seen) if flops_seen else np.zeros(1)
        limits = ", ".join(f"{name} {w}" for name, w in
                           (("flops", flops), ("params", params), ("acts", acts))
                           if w.lo is not None or w.hi is not None) or "no window"
        hint = (f"; flops of its models range {si(fl.min())}–{si(fl.max())} "
                f"(median {si(float(np.median(fl)))})" if fl.size > 1 else "")
        dup = f", {in_window - len(rows)} repeats of models already drawn" \
            if in_window > len(rows) else ""
        raise DseError(f"found only {len(rows)} of {n} {space.name} models with {limits} in "
                       f"{draws:,} draws{dup}{hint}; widen the window or ask for fewer")
    return rows
