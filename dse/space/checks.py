"""Checks of a space file's values (pure): the stage count or range, the block types and
activations, the parameters a kind and its blocks have, the resolution to draw. Each raises
DseError starting with `where` (the file) and saying what is allowed."""

from __future__ import annotations

from dse.errors import DseError
from dse.space import dists as rand

PARAMS = {"anynet": ("d", "w", "b", "g"), "regnet": ("d", "w0", "wa", "wm", "g", "b")}
GROUPS = "groups"  # AnyNet: the number of groups per stage (NDS), instead of the group width g


def stage_range(v, kind: str, where: str) -> tuple[int, int]:
    """(fewest, most) stages: an integer, or [lo, hi] for a RegNet space."""
    if isinstance(v, list):
        if kind != "regnet":
            raise DseError(f"{where}: 'stages' as a range [lo, hi] applies to regnet spaces "
                           f"only; an {kind} space has a fixed number of stages")
        if len(v) != 2 or not all(_is_int(x) and 1 <= x <= 8 for x in v):
            raise DseError(f"{where}: 'stages' range must be [lo, hi] with integers from 1 to "
                           f"8 (got {v!r})")
        if v[0] > v[1]:
            raise DseError(f"{where}: 'stages' range {v!r} is empty; write [lo, hi] with "
                           "lo ≤ hi")
        return int(v[0]), int(v[1])
    if not _is_int(v) or not 1 <= v <= 8:
        raise DseError(f"{where}: 'stages' must be an integer from 1 to 8, or [lo, hi] for a "
                       f"regnet space (got {v!r})")
    return int(v), int(v)


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def one_of(where: str, key: str, v, allowed: tuple):
    if isinstance(v, bool) or v not in allowed:
        raise DseError(f"{where}: '{key}' must be one of {', '.join(map(str, allowed))} "
                       f"(got {v!r})")
    return v


def positive_int(where: str, key: str, v) -> int:
    if not _is_int(v) or v < 1:
        raise DseError(f"{where}: '{key}' must be a positive integer (got {v!r})")
    return v


def choices(v, check) -> tuple:
    """A name or a non-empty list of names, each checked; duplicates dropped."""
    names = v if isinstance(v, list) and v else [v]
    return tuple(dict.fromkeys(check(x) for x in names))


def params_of(raw, kind: str, types: list, where: str) -> dict:
    """The distributions of a space's parameters: those its kind and block types have."""
    need = ["d", "w"] if kind == "anynet" else ["d", "w0", "wa", "wm"]
    if not isinstance(raw, dict):
        raise DseError(f"{where}: 'params' must be a mapping of {', '.join(PARAMS[kind])}")
    names = ", ".join(b.name for b in types)
    if any(b.bottleneck for b in types):
        need.append("b")
    elif "b" in raw:
        raise DseError(f"{where}: params.b does not apply to {names} blocks (no bottleneck); "
                       "b applies to x and r blocks")
    if any(b.groups for b in types):
        need.append(GROUPS if kind == "anynet" and GROUPS in raw and "g" not in raw else "g")
    elif "g" in raw or GROUPS in raw:
        raise DseError(f"{where}: params.{'g' if 'g' in raw else GROUPS} does not apply to "
                       f"{names} blocks (no group conv); g applies to x blocks")
    if "g" in raw and GROUPS in raw:
        raise DseError(f"{where}: give params.g (the group width) or params.groups (the "
                       "number of groups), not both")
    missing = [k for k in need if k not in raw]
    extra = [k for k in raw if k not in need]
    if missing or extra:
        raise DseError(f"{where}: a {kind} space of {names} blocks needs params "
                       f"{', '.join(need)}" + (f"; missing {', '.join(missing)}" if missing else "")
                       + (f"; unknown {', '.join(map(str, extra))}" if extra else ""))
    params = {k: rand.from_config(f"{where}: params.{k}", raw[k]) for k in need}
    for k, d in params.items():
        if d.values.min() <= 0:
            raise DseError(f"{where}: params.{k} must take positive values (got "
                           f"{d.values.min():g})")
        if k in ("d", "w", "g", GROUPS, "w0") and not d.is_int:
            raise DseError(f"{where}: params.{k} must take integer values")
    if "w0" in params and any(v % 8 for v in params["w0"].values):
        raise DseError(f"{where}: params.w0 must take multiples of 8")
    if "wm" in params and params["wm"].values.min() <= 1:
        raise DseError(f"{where}: params.wm must be greater than 1")
    return params


def resolution_of(v, where: str) -> rand.Dist | None:
    """The input sides a space draws (a number, a list or a dist), or None."""
    if v is None:
        return None
    dist = rand.from_config(f"{where}: resolution", v)
    if not dist.is_int or dist.values.min() < 1:
        raise DseError(f"{where}: 'resolution' must take positive integer values (pixels)")
    return dist


# ---- after sampling ----------------------------------------------------------------------------

RARE = 0.25       # a value drawn this many times less often than its prior says is rare
RARE_MIN_N = 16   # fewer models than this say nothing about rarity


def rare_choices(space, models) -> list[str]:
    """The choice values (a `choice` parameter, or a list of blocks or activations) that the
    sampled models hold far less often than drawn: under RARE × their prior probability
    among at least RARE_MIN_N models. Such a value's draws mostly fell outside the flops
    window (or could not be built), so a split of the population by it is unbalanced; a
    sentence per value (pure: a frame of models in, words out)."""
    n = len(models)
    if n < RARE_MIN_N:
        return []
    cols = {"b": ("bs", "b"), "g": ("gs", "group_w")}
    held: dict = {}
    for key, dist in space.params.items():
        if key not in cols or dist.kind != "choice" or dist.size < 2:
            continue
        per_stage, regnet = cols[key]
        if space.kind == "regnet":
            vals = models[regnet].astype(float).to_numpy()
        else:
            vals = models[per_stage].map(lambda v: max(v) if v is not None and len(v) else
                                         float("nan")).astype(float).to_numpy()
        held[key] = (vals, dict(zip(dist.values.tolist(), dist.probs.tolist())))
    for key in ("block", "activation"):
        listed = space.config.get(key)
        if isinstance(listed, list) and len(listed) > 1 and key in models:
            held[key] = (models[key].to_numpy(dtype=object),
                         {v: 1 / len(listed) for v in listed})
    out = []
    for key, (vals, prior) in held.items():
        for v, p in prior.items():
            k = int((vals == v).sum())
            if k < RARE * p * n:
                shown = f"{v:g}" if isinstance(v, float) else v
                out.append(f"{key} = {shown} is {k} of the {n} sampled models although drawn "
                           f"with probability {p:.0%}: most of its draws fell outside the "
                           "window or could not be built, so splitting by it is unbalanced; "
                           "compare it as a space of its own")
    return out
