"""Analytic flops / params / activations with pycls conventions (REFERENCE §5), pure numpy.

flops are multiply-adds. A conv with stride s maps h to (h − 1) // s + 1 and counts
k·k·w_in·w_out·h'·w'/groups flops, k·k·w_in·w_out/groups params and w_out·h'·w' acts (bias:
+w_out·h'·w' flops, +w_out params); BN adds 2·C params; ReLU, pooling, sigmoid, the SE
multiply and the residual add are free; the SE convs run at 1×1 with bias. A residual block
projects its input (1×1 conv with the stride + BN) only when its shape changes, as pycls.

One vectorized implementation serves a single `describe` and a batch of a million sampler
candidates: a stage's first block (stride 2, projection shortcut) and its d − 1 repeated
blocks each have a closed form, so the cost is a few array ops per stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dse.space import blocks, regnet
from dse.space.spec import AnyNetSpec, Task


@dataclass(frozen=True)
class Cost:
    """flops / params / acts as int64 arrays; totals are (B,), per-stage ones (B, S)."""

    flops: np.ndarray
    params: np.ndarray
    acts: np.ndarray


def _conv(w_in, w_out, hw, k=1, groups_w=None, bias=False):
    """(flops, params, acts) of a k×k conv producing hw output pixels. With `groups_w` the
    conv is grouped with that many channels per group (so w_in·w_out/groups = w_out·g)."""
    macs = k * k * (w_out * groups_w if groups_w is not None else w_in * w_out)
    b = w_out if bias else 0
    return macs * hw + b * hw, macs + b, w_out * hw


def _sum(parts, bn):
    """Totals of a list of (flops, params, acts) plus `bn` BN parameters."""
    f, p, a = (sum(x[i] for x in parts) for i in range(3))
    return f, p + bn, a


def _block(block: str, w_in, w, b, g, hw_in, hw, se_ratio, proj):
    """(flops, params, acts) of one block (arrays broadcast); `proj`: the shape changes, so
    a residual block adds its 1×1 projection (with the stride) + BN."""
    bt = blocks.get(block)
    if bt.bottleneck:  # x, r: 1×1 (w_in → w_b), 3×3 group conv, [SE], 1×1 (w_b → w)
        wb = regnet.bottleneck(w, b)
        parts = [_conv(w_in, wb, hw_in), _conv(wb, wb, hw, k=3, groups_w=g), _conv(wb, w, hw)]
        bn = 2 * (wb + wb + w)
        if se_ratio:
            w_se = np.round(se_ratio * w_in).astype(np.int64)
            parts += [_conv(wb, w_se, 1, bias=True), _conv(w_se, wb, 1, bias=True)]
    else:  # v, vr: one 3×3 conv; basic, plain: two (the first with the stride)
        parts = [_conv(w_in, w, hw, k=3)] + [_conv(w, w, hw, k=3)] * (bt.convs - 1)
        bn = 2 * w * bt.convs
    f, p, a = _sum(parts, bn)
    if not bt.residual:
        return f, p, a
    pf, pp, pa = _conv(w_in, w, hw)
    return (f + np.where(proj, pf, 0), p + np.where(proj, pp + 2 * w, 0),
            a + np.where(proj, pa, 0))


def _blocks_cost(block, w_in, w, b, g, hw_in, hw, se_ratio, proj):
    """_block for a block type per model: a name, or an array of names (one per row)."""
    if isinstance(block, str):
        return _block(block, w_in, w, b, g, hw_in, hw, se_ratio, proj)
    out = [np.zeros(len(block), dtype=np.int64) for _ in range(3)]
    for name in np.unique(block):
        got = _block(str(name), w_in, w, b, g, hw_in, hw, se_ratio, proj)
        for o, x in zip(out, got):
            np.copyto(o, np.broadcast_to(x, o.shape), where=block == name)
    return tuple(out)


def cost_arrays(ds, ws, bs, gs, task: Task, se_ratio: float = 0.0, stem_w: int = 32,
                block="x", first_stride: int = 2, resolution=None):
    """Complexity of B models with S stages each; ds/ws/gs are (B, S) integer arrays and bs
    (B, S) bottleneck ratios, with compatible widths (see regnet.make_compatible). A stage
    with d = 0 is absent. `block` is a block type (dse.space.blocks) or one per model;
    the first stage has stride `first_stride`, the others 2; `resolution` (B,) overrides the
    task's input side per model.

    Returns (total: Cost with (B,) arrays, stages: Cost with (B, S) arrays, stem: Cost,
    head: Cost); stem and head have (B,) arrays.
    """
    ds, ws, gs = (np.atleast_2d(np.asarray(x, dtype=np.int64)) for x in (ds, ws, gs))
    bs = np.atleast_2d(np.asarray(bs, dtype=float))
    n = ds.shape[0]
    ones = np.ones(n, dtype=np.int64)
    if not isinstance(block, str):
        block = np.asarray(block).astype(str)
    res = (task.resolution if resolution is None else np.asarray(resolution, np.int64)) * ones
    h = (res - 1) // task.stem_stride + 1
    stem = _conv(task.in_channels, stem_w, h * h, k=3)
    stem = Cost(stem[0] * ones, (stem[1] + 2 * stem_w) * ones, stem[2] * ones)
    w_in = stem_w * ones
    sf, sp, sa = (np.zeros(ds.shape, dtype=np.int64) for _ in range(3))
    for i in range(ds.shape[1]):
        d, w, b, g = ds[:, i], ws[:, i], bs[:, i], gs[:, i]
        s = first_stride if i == 0 else 2
        present = d > 0
        h_out = np.where(present, (h - 1) // s + 1, h)
        first = _blocks_cost(block, w_in, w, b, g, h * h, h_out * h_out, se_ratio,
                             (w_in != w) | (s != 1))
        rest = _blocks_cost(block, w, w, b, g, h_out * h_out, h_out * h_out, se_ratio, False)
        for arr, f0, f1 in zip((sf, sp, sa), first, rest):
            arr[:, i] = np.where(present, f0 + np.maximum(d - 1, 0) * f1, 0)
        h = h_out
        w_in = np.where(present, w, w_in)
    k = task.num_classes
    head = Cost(w_in * k + k, w_in * k + k, k * ones)
    total = Cost(*(stem_x + s.sum(axis=1) + head_x for stem_x, s, head_x in
                   zip((stem.flops, stem.params, stem.acts), (sf, sp, sa),
                       (head.flops, head.params, head.acts))))
    return total, Cost(sf, sp, sa), stem, head


def batch(specs, tasks) -> np.ndarray:
    """(n, 3) flops, params, acts of n specs with their tasks, computed in batches of one
    shape (stage count, block, stem width, first stride, SE ratio, task)."""
    out = np.zeros((len(specs), 3), dtype=np.int64)
    groups: dict = {}
    for i, (s, t) in enumerate(zip(specs, tasks)):
        groups.setdefault((len(s.ds), s.block, s.stem_w, s.first_stride, s.se_ratio, t),
                          []).append(i)
    for (_, block, stem_w, stride, se, task), idx in groups.items():
        cols = [np.array([getattr(specs[i], k) for i in idx]) for k in ("ds", "ws", "bs", "gs")]
        total, *_ = cost_arrays(*cols, task, se, stem_w, block, stride)
        out[idx] = np.stack([total.flops, total.params, total.acts], axis=1)
    return out


def _spec_costs(spec: AnyNetSpec, task: Task):
    return cost_arrays([spec.ds], [spec.ws], [spec.bs], [spec.gs], task, spec.se_ratio,
                       spec.stem_w, spec.block, spec.first_stride)


def complexity(spec: AnyNetSpec, task: Task) -> dict:
    """{"flops", "params", "acts"} of one compatible spec, as Python ints."""
    total, *_ = _spec_costs(spec, task)
    return {k: int(getattr(total, k)[0]) for k in ("flops", "params", "acts")}


def stage_table(spec: AnyNetSpec, task: Task) -> list[dict]:
    """One row per part (stem, stage 1..S, head): shape and flops/params/acts; b and g are
    empty for blocks that have none."""
    total, stages, stem, head = _spec_costs(spec, task)
    bt = blocks.get(spec.block)
    h = (task.resolution - 1) // task.stem_stride + 1
    rows = [dict(part="stem", d=1, w=spec.stem_w, b=None, g=None, groups=None, out=h,
                 flops=int(stem.flops[0]), params=int(stem.params[0]), acts=int(stem.acts[0]))]
    for i, (d, w, b, g, s) in enumerate(zip(spec.ds, spec.ws, spec.bs, spec.gs, spec.strides)):
        h = (h - 1) // s + 1
        wb = int(regnet.bottleneck([w], [b])[0])
        rows.append(dict(part=f"stage{i + 1}", d=d, w=w, b=b if bt.bottleneck else None,
                         g=g if bt.groups else None,
                         groups=wb // g if bt.bottleneck else None, out=h,
                         flops=int(stages.flops[0, i]), params=int(stages.params[0, i]),
                         acts=int(stages.acts[0, i])))
    rows.append(dict(part="head", d=1, w=task.num_classes, b=None, g=None, groups=None, out=1,
                     flops=int(head.flops[0]), params=int(head.params[0]),
                     acts=int(head.acts[0])))
    return rows
