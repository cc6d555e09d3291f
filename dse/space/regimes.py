"""Flop regimes (pure): the windows a space is sampled in, each population kept apart.

DDS §4 studies one design space at several flop regimes (200MF … 12GF) and asks how the best
models change with flops. A regime is a name and the flops window its models were drawn in.
Every sampled model records its regime (dse.store.schema: `regime`, `regime_lo`,
`regime_hi`); sampling a space again in another window adds a regime beside the first, never
into it. Windows of one space must not overlap, so a model's flops say which regime could
have drawn it.

Models sampled before dse recorded regimes carry no label and read as one regime named
`base` (UNLABELLED). Sampling into such a space in a window that holds all of them continues
that regime; another window must not overlap the flops they span.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from dse.errors import DseError
from dse.space.sampling import Window, parse_amount, parse_window
from dse.units import si

UNLABELLED = "base"  # the regime of models sampled before regimes were recorded
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")
LADDER_KEYS = ("from", "to", "count", "width")


@dataclass(frozen=True)
class Regime:
    """A flop regime: its name (None: named after the window, or the stored regime that has
    this window) and the flops window its models are drawn in."""

    name: str | None
    flops: Window

    @property
    def label(self) -> str:
        return self.name or str(self.flops)

    @property
    def centre(self) -> float | None:
        """The geometric centre of the window; None when a side is open."""
        lo, hi = self.flops.lo, self.flops.hi
        return math.sqrt(lo * hi) if lo and hi is not None else None


@dataclass(frozen=True)
class Stored:
    """A regime as a space's stored models show it: its label, the window recorded with it
    (None for unlabelled models), and the flops its models span."""

    name: str
    window: Window | None
    lo: float
    hi: float


def check_name(name: str, what: str = "regime name") -> str:
    """A regime name: a word of letters, digits and . _ : + - (e.g. 2M, 400MF, small)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DseError(f"{what} {name!r} is not a word of letters, digits, '.', '_', ':', '+' "
                       "or '-' (e.g. 2M, 400MF, small)")
    return name


def check_window(w: Window, what: str = "regime") -> Window:
    """A window that can hold models: not empty (LO < HI) and not above nothing (HI > 0)."""
    if w.lo is not None and w.hi is not None and w.lo >= w.hi:
        raise DseError(f"{what} window {w} is empty; write LO:HI with LO < HI")
    if w.hi is not None and w.hi <= 0:
        raise DseError(f"{what} window {w} is empty: no model has flops ≤ 0")
    return w


def overlap(a: Window, b: Window) -> bool:
    """Whether two inclusive windows share a flops value (touching ends count)."""
    lo = max(-math.inf if a.lo is None else a.lo, -math.inf if b.lo is None else b.lo)
    hi = min(math.inf if a.hi is None else a.hi, math.inf if b.hi is None else b.hi)
    return lo <= hi


def check_disjoint(regimes: list[Regime]) -> list[Regime]:
    """Regimes with distinct names and windows that neither overlap nor are empty."""
    for i, r in enumerate(regimes):
        check_window(r.flops, f"regime {r.label}")
        for s in regimes[:i]:
            if r.label == s.label:
                raise DseError(f"regime {r.label} is listed twice")
            if overlap(r.flops, s.flops):
                raise DseError(f"regime windows {s.flops} ({s.label}) and {r.flops} "
                               f"({r.label}) overlap; a model's flops must say its regime")
    return regimes


def ladder(lo: float, hi: float, count: int, width: float) -> list[Regime]:
    """`count` regimes at geometrically spaced flops c from lo to hi, named after c (2M, 4M),
    each the window [c·(1 − width), c] (the paper's 360–400MF for 400MF is width 0.1)."""
    if not (0 < width < 1):
        raise DseError(f"ladder width must be in (0, 1) (got {width!r}): each window is "
                       "[c·(1 − width), c]")
    if count < 1 or (count > 1 and not 0 < lo < hi):
        raise DseError(f"a ladder needs 0 < from < to and count ≥ 1 (got from {si(lo)}, to "
                       f"{si(hi)}, count {count})")
    cs = [float(f"{c:.4g}") for c in (np.geomspace(lo, hi, count) if count > 1 else [hi])]
    out = [Regime(si(c), Window(float(f"{c * (1 - width):.6g}"), c)) for c in cs]
    if len({r.name for r in out}) < len(out):
        raise DseError(f"ladder rungs {', '.join(r.name for r in out)} are too close to "
                       "name apart; use fewer rungs")
    return check_disjoint(out)


def parse(value, what: str = "regimes") -> list[Regime]:
    """Regimes from an experiment's `regimes:`: a list of windows ('1.5M:2M') or
    {name, flops} mappings, or a ladder {from, to, count, width}."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in LADDER_KEYS]
        missing = [k for k in LADDER_KEYS if k not in value]
        if unknown or missing:
            raise DseError(f"a ladder is {{from: LO, to: HI, count: K, width: W}} "
                           f"({'unknown' if unknown else 'missing'} "
                           f"{', '.join(unknown or missing)})")
        count, width = value["count"], value["width"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise DseError(f"ladder count must be an integer (got {count!r})")
        if isinstance(width, bool) or not isinstance(width, (int, float)):
            raise DseError(f"ladder width must be a number in (0, 1) (got {width!r})")
        return ladder(parse_amount(str(value["from"]), "ladder from"),
                      parse_amount(str(value["to"]), "ladder to"), count, float(width))
    if not isinstance(value, list) or not value:
        raise DseError(f"{what} must be a list of windows (1.5M:2M or {{name, flops}}) or a "
                       "ladder {from, to, count, width}")
    out = []
    for v in value:
        if isinstance(v, dict):
            if set(v) - {"name", "flops"} or "flops" not in v:
                raise DseError(f"{v!r} is not {{name: NAME, flops: LO:HI}}")
            name = check_name(str(v["name"])) if v.get("name") is not None else None
            out.append(Regime(name, parse_window(str(v["flops"]), "flops")))
        elif isinstance(v, str):
            out.append(Regime(None, parse_window(v, "flops")))
        else:
            raise DseError(f"{v!r} is not a window LO:HI or {{name, flops}}")
    return check_disjoint(out)


def span(regimes: list[Regime]) -> Window:
    """The window that holds every regime's window."""
    los, his = [r.flops.lo for r in regimes], [r.flops.hi for r in regimes]
    return Window(None if None in los else min(los), None if None in his else max(his))


# ---- the regimes of a stored space -----------------------------------------------------------

def stored(models) -> list[Stored]:
    """The regimes of a space's models (a frame with flops, regime, regime_lo, regime_hi),
    in the order first sampled; unlabelled models form the regime UNLABELLED."""
    out = []
    label = labels(models)
    for name in dict.fromkeys(label):
        rows = models[label == name]
        lo, hi = _recorded(rows)
        window = Window(lo, hi) if lo is not None or hi is not None else None
        f = rows["flops"].to_numpy(dtype=float)
        out.append(Stored(name, window, float(f.min()), float(f.max())))
    return out


def labels(models) -> np.ndarray:
    """Each model's regime label; UNLABELLED where none was recorded."""
    if "regime" not in models or len(models) == 0:
        return np.full(len(models), UNLABELLED, dtype=object)
    r = models["regime"].to_numpy(dtype=object)
    return np.where([isinstance(x, str) and x != "" for x in r], r, UNLABELLED)


def _recorded(rows) -> tuple[float | None, float | None]:
    """The window recorded with a regime's labelled rows (None, None if none is)."""
    if "regime" not in rows or rows["regime"].isna().all():
        return None, None
    lab = rows[rows["regime"].notna()]
    lo, hi = lab["regime_lo"].iloc[0], lab["regime_hi"].iloc[0]
    return (None if lo is None or np.isnan(lo) else float(lo),
            None if hi is None or np.isnan(hi) else float(hi))


def resolve(want: Regime, have: list[Stored], space: str = "the space") -> Regime:
    """The regime new models drawn in `want.flops` join: the stored regime of that name, or
    of that window, or the unlabelled one whose models all lie in it; else a new regime.
    Either way the window must not overlap any other stored regime; a DseError says which
    it collides with."""
    check_window(want.flops, "--flops")
    if want.name is not None:
        check_name(want.name)
    match = next((s for s in have if (want.name is None or s.name == want.name)
                  and _same(s, want.flops)), None)
    named = next((s for s in have if s.name == want.name), None)
    if named is not None and match is None:
        was = f"in {named.window}" if named.window is not None else \
            f"with flops {si(named.lo)}–{si(named.hi)}"
        raise DseError(f"regime {named.name} of {space} was sampled {was}, not in "
                       f"{want.flops}; name another regime or use its window")
    for s in (s for s in have if s is not match):
        if s.window == want.flops:
            raise DseError(f"{want.flops} is the window of regime {s.name} of {space}; add to "
                           f"it with --regime {s.name} (or without --regime)")
        span = s.window if s.window is not None else Window(s.lo, s.hi)
        if overlap(span, want.flops):
            raise DseError(f"flops window {want.flops} overlaps regime {s.name} of {space} "
                           f"({span}); sample in its window to add to it, or in a disjoint "
                           "one for a new regime")
    if match is not None:
        return Regime(match.name, want.flops)
    new = Regime(want.name or str(want.flops), want.flops)
    if any(s.name == new.name for s in have):
        raise DseError(f"{space} already has a regime named {new.name}; name this one with "
                       "--regime")
    return new


def _same(s: Stored, w: Window) -> bool:
    """Whether models drawn in w continue stored regime s: its window, or for unlabelled
    models a window that holds them all."""
    if s.window is not None:
        return s.window == w
    return bool(w.contains(np.array([s.lo, s.hi])).all())
