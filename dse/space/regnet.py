"""Quantized linear widths and group/bottleneck compatibility (DDS §3.3, pycls rounding).

Pure numpy. Every function works on a batch: arrays whose leading axis indexes models, so
the sampler and fit-linear run the very same arithmetic as a single `describe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Q = 8  # widths are rounded to multiples of 8 (pycls)


@dataclass(frozen=True)
class Widths:
    """Intermediates of RegNet width generation for a batch of B models, blocks padded to D.

    u: (B, D) continuous widths w_0 + w_a·j;  s: (B, D) the exponents log(u/w_0)/log(w_m);
    ks: (B, D) rounded exponents; w: (B, D) per-block quantized widths (multiples of q);
    mask: (B, D) True for real blocks (j < d); num_stages: (B,) distinct exponents;
    total_stages: (B,) max exponent + 1 (larger than num_stages when an exponent is skipped).
    """

    u: np.ndarray
    s: np.ndarray
    ks: np.ndarray
    w: np.ndarray
    mask: np.ndarray
    num_stages: np.ndarray
    total_stages: np.ndarray


def quantized_widths(d, w0, wa, wm, q: int = Q) -> Widths:
    """Per-block widths of the quantized linear rule for each (d, w_0, w_a, w_m)."""
    d, w0, wa, wm = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (d, w0, wa, wm))
    depth = int(d.max())
    j = np.arange(depth)[None, :]
    mask = j < d[:, None]
    u = w0[:, None] + wa[:, None] * j
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log(u / w0[:, None]) / np.log(wm[:, None])
    ks = np.where(mask, np.round(s), -1)
    w = quantize(w0[:, None], wm[:, None], ks, q)
    w = np.where(mask, w, 0)
    total = ks.max(axis=1).astype(np.int64) + 1
    # distinct quantized widths among real blocks (pycls counts np.unique of the widths)
    srt = np.sort(np.where(mask, w, -1), axis=1)
    distinct = (srt[:, 1:] != srt[:, :-1]) & (srt[:, 1:] >= 0)
    num = distinct.sum(axis=1) + (srt[:, 0] >= 0)
    return Widths(u, s, ks.astype(np.int64), w, mask, num.astype(np.int64), total)


def quantize(w0, wm, ks, q: int = Q) -> np.ndarray:
    """Width of exponent k: w_0 · w_m^k rounded to the nearest multiple of q (half to even).
    Broadcasts; negative exponents (padding) count as 0."""
    return np.round(w0 * np.power(wm, np.maximum(ks, 0)) / q).astype(np.int64) * q


def stages_from_widths(ks: np.ndarray, w: np.ndarray, num_stages: int):
    """Per-stage depths and widths (B, S) from per-block exponents; stage i holds ks == i."""
    i = np.arange(num_stages)[None, :, None]
    member = ks[:, None, :] == i
    ds = member.sum(axis=2)
    ws = np.where(member, w[:, None, :], 0).max(axis=2)
    return ds.astype(np.int64), ws.astype(np.int64)


def make_compatible(ws, bs, gs):
    """Make widths compatible with bottleneck ratio b and group width g (pycls's
    adjust_ws_gs_comp with bot_mul = 1/b; b may be fractional: b < 1 is an inverted
    bottleneck).

    v = max(1, ⌊w / b⌋) is the bottleneck width; g' = min(g, v); v is rounded to the nearest
    multiple of g' (half to even, at least g'); w = ⌊v · b⌋. A block then has w_b = round(w / b)
    channels in w_b // g' groups (`bottleneck`), so the returned gs are the group widths
    w_b / groups: g' itself whenever b is a whole number. Returns (ws, bs, gs) as arrays of
    any matching shape (ws, gs integer; bs float); `buildable` says which can be built.
    """
    ws, gs = np.asarray(ws), np.asarray(gs)
    bs = np.asarray(bs, dtype=float)
    v = np.maximum(1, np.floor(ws / bs)).astype(np.int64)
    g = np.maximum(1, np.minimum(gs, v)).astype(np.int64)
    v = np.maximum(g, np.round(v / g).astype(np.int64) * g)
    w = np.floor(v * bs + 1e-9).astype(np.int64)  # v · b exactly when b is a whole number
    wb = bottleneck(w, bs)
    groups = np.maximum(1, wb // g)
    return w, bs, np.maximum(1, wb // groups).astype(np.int64)


def bottleneck(ws, bs) -> np.ndarray:
    """The bottleneck width w_b = round(w / b) of each block (pycls: round(w · bot_mul))."""
    return np.round(np.asarray(ws) / np.asarray(bs, dtype=float)).astype(np.int64)


def buildable(ws, bs, gs) -> np.ndarray:
    """Which compatible (w, b, g) make a block: w ≥ 1 and w_b a whole number of groups of g
    (with b < 1 a width that is not a multiple of 1/b can leave w_b short of it)."""
    ws, gs = np.asarray(ws), np.asarray(gs)
    wb = bottleneck(ws, bs)
    return (ws >= 1) & (wb >= 1) & (gs >= 1) & (wb % np.maximum(gs, 1) == 0)


def regnet_stages(d, w0, wa, wm, q: int = Q):
    """Stage depths and widths of one RegNet (before compatibility): (ds, ws, Widths)."""
    gen = quantized_widths([d], [w0], [wa], [wm], q)
    n = int(gen.total_stages[0])
    ds, ws = stages_from_widths(gen.ks, gen.w, n)
    keep = ds[0] > 0
    return ds[0][keep].tolist(), ws[0][keep].tolist(), gen
