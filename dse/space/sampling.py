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
from dataclasses import dataclass, replace

import numpy as np

from dse.errors import DseError
from dse.space import blocks as btypes
from dse.space import regnet
from dse.space.complexity import cost_arrays
from dse.space.definition import GROUPS, Space
from dse.space.spec import ONE_GROUP, AnyNetSpec, Task, model_id
from dse.units import from_si, si

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
    try:
        v = from_si(s)
    except ValueError:
        raise DseError(f"{what} {whole or s!r} is malformed: {s!r} is not a number "
                       "(use e.g. 360M, 0.4G, 5e6)") from None
    if not np.isfinite(v) or v < 0:
        raise DseError(f"{what} {whole or s!r}: bounds must be finite and ≥ 0")
    return v


def _draw_anynet(space: Space, rng: np.random.Generator, n: int):
    """(ds, ws, bs, gs) arrays of shape (n, S) for an AnyNet space, before compatibility;
    b and g that the space's blocks lack are 1 and one group."""
    out = {}
    for k in ("d", "w", "b", "g", GROUPS):
        dist = space.params.get(k)
        if dist is None:
            continue
        if k in space.shared:
            v = np.repeat(dist.draw(rng, (n, 1)), space.stages, axis=1)
        elif k in space.non_decreasing:
            v = dist.draw_non_decreasing(rng, n, space.stages)
        else:
            v = dist.draw(rng, (n, space.stages))
        out[k] = v.astype(float if k == "b" else np.int64)
    b = out.get("b", np.ones(out["w"].shape))
    if GROUPS in out:  # NDS counts groups: the group width is w_b / groups
        g = np.maximum(1, regnet.bottleneck(out["w"], b) // out[GROUPS])
    else:
        g = out.get("g", np.full(out["w"].shape, ONE_GROUP, dtype=np.int64))
    return out["d"], out["w"], b, g, {}


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
    """(ds, ws, bs, gs) for a RegNet space, before compatibility, plus its parameters; rows
    whose stage count is outside the space's range (or that skip an exponent) get d = 0
    everywhere and are dropped later. Arrays have the most stages allowed; a sample with
    fewer has d = 0 after its last stage."""
    p = {k: space.params[k].draw(rng, n) for k in ("d", "w0", "wa", "wm", "g", "b")
         if k in space.params}
    gen = regnet.quantized_widths(p["d"], p["w0"], p["wa"], p["wm"])
    lo, S = space.stage_range
    ok = (gen.num_stages == gen.total_stages) & (gen.total_stages >= lo) \
        & (gen.total_stages <= S)
    ds, ws = regnet.stages_from_widths(gen.ks, gen.w, S)
    ds = np.where(ok[:, None], ds, 0)
    ws = np.where(ok[:, None] & (ds > 0), ws, 8)  # absent stages: any width, d = 0
    g = np.repeat(p.get("g", np.full(n, ONE_GROUP)).astype(np.int64)[:, None], S, axis=1)
    b = np.repeat(p.get("b", np.ones(n)).astype(float)[:, None], S, axis=1)
    return ds, ws, b, g, p


def _neutral(block: np.ndarray, b: np.ndarray, g: np.ndarray):
    """b = 1 for models whose block has no bottleneck, one group where it has no groups."""
    for name in set(block.tolist()):
        bt, rows = btypes.get(name), block == name
        if not bt.bottleneck:
            b = np.where(rows[:, None], 1.0, b)
        if not bt.groups:
            g = np.where(rows[:, None], ONE_GROUP, g)
    return b, g


def _choose(values: tuple, rng: np.random.Generator, n: int):
    """One of the values per model, each equally likely; no draw when there is one value
    (so spaces without such a choice sample exactly as before it existed)."""
    if len(values) == 1:
        return np.full(n, values[0], dtype=object)
    return np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]


def _resolutions(space: Space, task: Task, rng: np.random.Generator, n: int) -> np.ndarray:
    """The input side of each model: drawn where the space samples it, else the task's."""
    if space.resolution is None:
        return np.full(n, task.resolution, dtype=np.int64)
    top = int(space.resolution.values.max())
    if top > task.resolution:
        raise DseError(f"{space.name} samples resolutions up to {top} px, above the "
                       f"{task.resolution}×{task.resolution} images of its data; models see "
                       "the images resized down, so allow at most "
                       f"{task.resolution}")
    return space.resolution.draw(rng, n).astype(np.int64)


def _spec(space: Space, ds, ws, bs, gs, block: str, act: str) -> AnyNetSpec:
    """The spec of one drawn model, without the absent stages after its last one (RegNet)."""
    keep = len(ds) if space.kind == "anynet" else int(np.count_nonzero(ds))
    se = space.se_ratio if btypes.get(block).se else 0.0
    return AnyNetSpec(tuple(ds[:keep].tolist()), tuple(ws[:keep].tolist()),
                      tuple(bs[:keep].tolist()), tuple(gs[:keep].tolist()), se, space.stem_w,
                      block, act, space.first_stride)


def sample(space: Space, n: int, task: Task, flops: Window = Window(),
           params: Window = Window(), acts: Window = Window(), seed: int = 0,
           exclude=frozenset(), max_draws: int = MAX_DRAWS) -> list[dict]:
    """Draw n distinct models whose complexity lies in every window.

    Returns rows (dicts) with the architecture (ds, ws, bs, gs, block, activation,
    first_stride, resolution; RegNet params d, w0, wa, wm, group_w, b), complexity and
    model_id. A space that samples the resolution draws each model's input side (at most the
    task's: the data is resized down); its complexity is counted at that side. Models whose
    id is in `exclude` are skipped, so sampling into an existing population adds new models.
    Raises DseError naming the windows when n models are not found within `max_draws`
    candidates.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DseError(f"the number of models must be a positive integer (got {n!r})")
    rng = stream(seed, space.name)
    draw = _draw_anynet if space.kind == "anynet" else _draw_regnet
    rows, seen, draws, in_window = [], set(exclude), 0, 0
    flops_seen = []
    while len(rows) < n and draws < max_draws and (in_window or draws < GIVE_UP):
        ds, w, b, g, p = draw(space, rng, BATCH)
        block = _choose(space.blocks, rng, BATCH)
        act = _choose(space.activations, rng, BATCH)
        res = _resolutions(space, task, rng, BATCH)
        ws, bs, gs = regnet.make_compatible(w, *_neutral(block, b, g))
        draws += BATCH
        total, *_ = cost_arrays(ds, ws, bs, gs, task, space.se_ratio, space.stem_w,
                                block if len(space.blocks) > 1 else space.blocks[0],
                                space.first_stride, res)
        valid = (ds.sum(axis=1) > 0) & (regnet.buildable(ws, bs, gs) | (ds == 0)).all(axis=1)
        if space.kind == "anynet":  # constraints hold on the built widths, b and g
            valid &= obeys(space, dict(d=ds, w=ws, b=bs, g=gs))
        if len(flops_seen) < 8:
            flops_seen.append(total.flops[valid][:256])
        keep = valid & flops.contains(total.flops) & params.contains(total.params) \
            & acts.contains(total.acts)
        in_window += int(keep.sum())
        for i in np.flatnonzero(keep):
            spec = _spec(space, ds[i], ws[i], bs[i], gs[i], str(block[i]), str(act[i]))
            mid = model_id(spec, replace(task, resolution=int(res[i])))
            if mid in seen:
                continue
            seen.add(mid)
            row = dict(model_id=mid, ds=list(spec.ds), ws=list(spec.ws), bs=list(spec.bs),
                       gs=list(spec.gs), se_ratio=spec.se_ratio, stem_w=spec.stem_w,
                       flops=int(total.flops[i]), params=int(total.params[i]),
                       acts=int(total.acts[i]), block=spec.block, activation=spec.activation,
                       first_stride=spec.first_stride, resolution=int(res[i]),
                       data_resolution=task.resolution)
            if space.kind == "regnet":
                row.update(d=int(p["d"][i]), w0=int(p["w0"][i]), wa=float(p["wa"][i]),
                           wm=float(p["wm"][i]),
                           group_w=int(p["g"][i]) if "g" in p else None,
                           b=float(p["b"][i]) if "b" in p else 1.0)
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
