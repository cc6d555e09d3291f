"""Numbers as people read them (pure): sizes with SI suffixes, multiply-adds, durations and
fixed-point values. One formatter per kind of number, used by the library and the CLI alike."""

from __future__ import annotations

import math

SI = {"K": 1e3, "M": 1e6, "G": 1e9}  # the suffixes every count of flops, params, acts may take


def from_si(text: str) -> float:
    """'360M' -> 3.6e8, '0.4g' -> 4e8, '5e6' -> 5e6: the one reader of K/M/G numbers (a
    ValueError when `text` is not one)."""
    s = str(text).strip()
    scale = SI.get(s[-1:].upper(), 1)
    return float(s[:-1] if scale != 1 else s) * scale


def si(x: float) -> str:
    """360000000 -> '360M'; 1.25e9 -> '1.25G' (flops, params and acts windows)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{unit}"
    return f"{x:g}"


def nbytes(n: float) -> str:
    """Bytes as people read them: 0 -> '0 B', 40960 -> '41 kB', 1.5e9 -> '1.5 GB' (SI)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def mult_adds(x: float | None) -> str:
    """Multiply-adds in P/T/G units; '?' when unknown."""
    if x is None:
        return "?"
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def eta(s: float | None) -> str:
    """An estimated duration: '42 s', '7 min', '1.5 h'; '?' when unknown."""
    if s is None or not math.isfinite(s):
        return "?"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def clock(s: float) -> str:
    """A measured duration: '42s', '3m07s', '1h05m'."""
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def fixed(x, digits: int = 2) -> str:
    """A number with `digits` decimals; '' for None, NaN or inf (a table's empty cell)."""
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else f"{x:.{digits}f}"
