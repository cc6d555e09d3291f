"""Analytic flops / params / activations with pycls conventions (REFERENCE §5), pure numpy.

flops are multiply-adds. A conv with stride s maps h to (h − 1) // s + 1 and counts
k·k·w_in·w_out·h'·w'/groups flops, k·k·w_in·w_out/groups params and w_out·h'·w' acts (bias:
+w_out·h'·w' flops, +w_out params); BN adds 2·C params; ReLU, pooling, sigmoid, the SE
multiply and the residual add are free; the SE convs run at 1×1 with bias.

One vectorized implementation serves a single `describe` and a batch of a million sampler
candidates: a stage's first block (stride 2, projection shortcut) and its d − 1 repeated
blocks each have a closed form, so the cost is a few array ops per stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _block(w_in, w, b, g, hw_in, hw, se_ratio, stride2):
    """(flops, params, acts) of one X/Y block (arrays broadcast)."""
    wb = w // b
    parts = [_conv(w_in, wb, hw_in), _conv(wb, wb, hw, k=3, groups_w=g), _conv(wb, w, hw)]
    bn = 2 * (wb + wb + w)
    if se_ratio:
        w_se = np.round(se_ratio * w_in).astype(np.int64)
        parts += [_conv(wb, w_se, 1, bias=True), _conv(w_se, wb, 1, bias=True)]
    if stride2:  # the first block of a stage always changes resolution: projection + BN
        parts.append(_conv(w_in, w, hw))
        bn = bn + 2 * w
    f, p, a = (sum(x[i] for x in parts) for i in range(3))
    return f, p + bn, a


def cost_arrays(ds, ws, bs, gs, task: Task, se_ratio: float = 0.0, stem_w: int = 32):
    """Complexity of B models with S stages each; ds/ws/bs/gs are (B, S) integer arrays with
    compatible widths (see regnet.make_compatible). A stage with d = 0 is absent.

    Returns (total: Cost with (B,) arrays, stages: Cost with (B, S) arrays, stem: Cost,
    head: Cost); stem and head have (B,) arrays.
    """
    ds, ws, bs, gs = (np.atleast_2d(np.asarray(x, dtype=np.int64)) for x in (ds, ws, bs, gs))
    n = ds.shape[0]
    ones = np.ones(n, dtype=np.int64)
    h = (task.resolution - 1) // task.stem_stride + 1
    stem = _conv(task.in_channels, stem_w, h * h, k=3)
    stem = Cost(stem[0] * ones, (stem[1] + 2 * stem_w) * ones, stem[2] * ones)
    h = h * ones
    w_in = stem_w * ones
    sf, sp, sa = (np.zeros(ds.shape, dtype=np.int64) for _ in range(3))
    for i in range(ds.shape[1]):
        d, w, b, g = ds[:, i], ws[:, i], bs[:, i], gs[:, i]
        present = d > 0
        h_out = np.where(present, (h - 1) // 2 + 1, h)
        first = _block(w_in, w, b, g, h * h, h_out * h_out, se_ratio, True)
        rest = _block(w, w, b, g, h_out * h_out, h_out * h_out, se_ratio, False)
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


def complexity(spec: AnyNetSpec, task: Task) -> dict:
    """{"flops", "params", "acts"} of one compatible spec, as Python ints."""
    total, *_ = cost_arrays([spec.ds], [spec.ws], [spec.bs], [spec.gs], task, spec.se_ratio,
                            spec.stem_w)
    return {k: int(getattr(total, k)[0]) for k in ("flops", "params", "acts")}


def stage_table(spec: AnyNetSpec, task: Task) -> list[dict]:
    """One row per part (stem, stage 1..S, head): shape and flops/params/acts."""
    total, stages, stem, head = cost_arrays([spec.ds], [spec.ws], [spec.bs], [spec.gs], task,
                                            spec.se_ratio, spec.stem_w)
    h = (task.resolution - 1) // task.stem_stride + 1
    rows = [dict(part="stem", d=1, w=spec.stem_w, b=None, g=None, groups=None, out=h,
                 flops=int(stem.flops[0]), params=int(stem.params[0]), acts=int(stem.acts[0]))]
    for i, (d, w, b, g) in enumerate(zip(spec.ds, spec.ws, spec.bs, spec.gs)):
        h = (h - 1) // 2 + 1
        rows.append(dict(part=f"stage{i + 1}", d=d, w=w, b=b, g=g, groups=(w // b) // g, out=h,
                         flops=int(stages.flops[0, i]), params=int(stages.params[0, i]),
                         acts=int(stages.acts[0, i])))
    rows.append(dict(part="head", d=1, w=task.num_classes, b=None, g=None, groups=None, out=1,
                     flops=int(head.flops[0]), params=int(head.params[0]),
                     acts=int(head.acts[0])))
    return rows
