"""Analytic complexity: golden numbers, batch == single, hand-counted small cases."""

import numpy as np
import pytest

from dse.space import regnet
from dse.space.complexity import complexity, cost_arrays, stage_table
from dse.space.spec import AnyNetSpec, Task, parse_spec


def test_published_models_exact(zoo_model):
    _, spec, flops, params, acts = zoo_model
    got = complexity(parse_spec(spec)[0], Task())
    assert got == {"flops": flops, "params": params, "acts": acts}


def test_regnetx_400mf_widths_before_and_after_compatibility():
    ds, ws, gen = regnet.regnet_stages(22, 24, 24.48, 2.54)
    assert (ds, ws) == ([1, 2, 7, 12], [24, 64, 152, 392])
    spec, rp = parse_spec(dict(kind="regnet", depth=22, w0=24, wa=24.48, wm=2.54, group_w=16))
    assert spec.ws == (32, 64, 160, 384) and spec.ds == (1, 2, 7, 12)
    assert rp == {"d": 22, "w0": 24, "wa": 24.48, "wm": 2.54, "group_w": 16, "b": 1}


def _by_hand(spec: AnyNetSpec, task: Task):
    """Walk the network conv by conv with the pycls rules (a deliberately naive reference)."""
    f = p = a = 0
    h = task.resolution

    def conv(w_in, w_out, k, stride, groups=1, bias=False):
        nonlocal f, p, a, h
        h = (h - 1) // stride + 1
        f += k * k * w_in * w_out * h * h // groups + (w_out * h * h if bias else 0)
        p += k * k * w_in * w_out // groups + (w_out if bias else 0)
        a += w_out * h * h

    def bn(c):
        nonlocal p
        p += 2 * c

    conv(task.in_channels, spec.stem_w, 3, task.stem_stride)
    bn(spec.stem_w)
    w_in = spec.stem_w
    for d, w, b, g in zip(spec.ds, spec.ws, spec.bs, spec.gs):
        for j in range(d):
            s, wb, h0 = (2 if j == 0 else 1), w // b, h
            if w_in != w or s != 1:
                conv(w_in, w, 1, s)
                bn(w)
                h = h0
            conv(w_in, wb, 1, 1)
            bn(wb)
            conv(wb, wb, 3, s, groups=wb // g)
            bn(wb)
            if spec.se_ratio:
                h1, w_se = h, round(spec.se_ratio * w_in)
                h = 1
                conv(wb, w_se, 1, 1, bias=True)
                conv(w_se, wb, 1, 1, bias=True)
                h = h1
            conv(wb, w, 1, 1)
            bn(w)
            w_in = w
    f += w_in * task.num_classes + task.num_classes
    p += w_in * task.num_classes + task.num_classes
    a += task.num_classes
    return {"flops": f, "params": p, "acts": a}


SPECS = [
    AnyNetSpec((1, 2, 3, 1), (24, 48, 96, 200), (1, 2, 4, 1), (8, 8, 8, 4)),
    AnyNetSpec((2, 1), (16, 64), (2, 1), (4, 16), se_ratio=0.25, stem_w=16),
    AnyNetSpec((3,), (40,), (1,), (1,), stem_w=24),
]
TASKS = [Task(), Task(32, "cifar", 3, 10), Task(28, "cifar", 1, 10), Task(65, "imagenet", 1, 7)]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("task", TASKS)
def test_matches_conv_by_conv_walk(spec, task):
    assert complexity(spec.compatible(), task) == _by_hand(spec.compatible(), task)


def test_batch_equals_single_and_stage_table_sums():
    rng = np.random.default_rng(0)
    ds = rng.integers(1, 6, (50, 4))
    ws, bs, gs = regnet.make_compatible(rng.integers(1, 64, (50, 4)) * 8,
                                        rng.choice([1, 2, 4], (50, 4)),
                                        rng.choice([1, 2, 8, 32], (50, 4)))
    task = Task(28, "cifar", 1, 10)
    total, stages, stem, head = cost_arrays(ds, ws, bs, gs, task, 0.25)
    for i in range(50):
        spec = AnyNetSpec(*(tuple(x[i].tolist()) for x in (ds, ws, bs, gs)), se_ratio=0.25)
        one = complexity(spec, task)
        assert one == {k: int(getattr(total, k)[i]) for k in one}
        table = stage_table(spec, task)
        assert sum(r["flops"] for r in table) == one["flops"]
        assert sum(r["params"] for r in table) == one["params"]


def test_absent_stage_costs_nothing():
    task = Task(32, "cifar", 3, 10)
    a, *_ = cost_arrays([[2, 3, 0, 0]], [[32, 64, 8, 8]], [[1, 1, 1, 1]], [[8, 8, 8, 8]], task)
    b, *_ = cost_arrays([[2, 3]], [[32, 64]], [[1, 1]], [[8, 8]], task)
    assert (a.flops, a.params, a.acts) == (b.flops, b.params, b.acts)
