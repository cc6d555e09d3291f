"""The torch builder agrees with the analytic complexity and initializes as pycls does."""

import math
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dse.data import datasets
from dse.space import definition as spaces
from dse.space.complexity import complexity
from dse.space.sampling import Window, sample
from dse.space.spec import AnyNetSpec, Task, parse_spec
from dse.train.models import Block, build, num_params


def _spec(r):
    return AnyNetSpec(tuple(r["ds"]), tuple(r["ws"]), tuple(r["bs"]), tuple(r["gs"]),
                      r["se_ratio"], r["stem_w"])


@pytest.mark.parametrize("space", ["xa", "xb", "xc", "xd", "xe", "rx", "ry"])
@pytest.mark.parametrize("dataset", ["imagenet", "fashion-mnist"])
def test_module_params_equal_analytic(space, dataset):
    task = datasets.task(dataset)
    window = Window(*datasets.default_flops_window(dataset))
    rows = sample(spaces.load(space), 4, task, window, seed=1)
    for r in rows:
        assert num_params(build(_spec(r), task)) == r["params"]


def test_published_models_params(zoo_model):
    name, spec, _, params, _ = zoo_model
    assert num_params(build(parse_spec(spec)[0], Task())) == params


def _counted_flops(model, task):
    x = torch.zeros(1, task.in_channels, task.resolution, task.resolution)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2  # FlopCounterMode counts 2 per multiply-add


@pytest.mark.parametrize("spec,task", [
    (dict(kind="regnet", depth=13, w0=24, wa=36.44, wm=2.49, group_w=8), Task()),
    (dict(kind="regnet", depth=16, w0=48, wa=27.89, wm=2.09, group_w=8, se_ratio=0.25), Task()),
    (dict(kind="anynet", ds=[2, 3, 4, 2], ws=[24, 56, 152, 368], bs=[1, 2, 4, 1],
          gs=[8, 4, 2, 16]), Task(32, "cifar", 3, 10)),
    (dict(kind="anynet", ds=[1, 2, 5, 1], ws=[32, 64, 96, 320], bs=[1, 1, 1, 1],
          gs=[16, 16, 16, 16], se_ratio=0.25), Task(28, "cifar", 1, 10)),
])
def test_flops_cross_checked_with_flop_counter(spec, task):
    # pycls also counts the biases of SE convs and the classifier, which the counter ignores;
    # both are far below 0.5% of the total.
    s = parse_spec(spec)[0]
    analytic = complexity(s, task)["flops"]
    assert _counted_flops(build(s, task), task) == pytest.approx(analytic, rel=5e-3)


def test_forward_shape_and_pycls_init():
    spec = parse_spec(dict(kind="anynet", ds=[1, 2], ws=[16, 32], bs=[1, 2], gs=[4, 8],
                           se_ratio=0.25))[0]
    task = Task(28, "cifar", 1, 10)
    torch.manual_seed(0)
    model = build(spec, task)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    conv = model.s2.b1.f.a.conv  # first 1×1 conv of stage 2 (w_b = 32 / 2 = 16 outputs)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / conv.out_channels), rel=0.3)
    assert model.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.3)
    assert model.head.fc.bias.abs().max().item() == 0
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    assert all(b.final_bn is b.f.c.bn for b in blocks)
    assert all(b.final_bn.weight.min().item() == 1 for b in blocks)
    zero = build(spec, task, zero_init_final_gamma=True)
    assert all(b.final_bn.weight.abs().max().item() == 0 for b in zero.modules()
               if isinstance(b, Block))
    assert zero.stem.bn.weight.min().item() == 1  # only each block's final BN starts at 0


_SMALL = [
    (dict(kind="anynet", ds=[1, 2], ws=[16, 32], bs=[1, 2], gs=[4, 8], se_ratio=0.25),
     Task(28, "cifar", 1, 10)),
    (dict(kind="anynet", ds=[2, 3], ws=[24, 56], bs=[1, 2], gs=[8, 4]), Task(32, "cifar", 3, 10)),
    (dict(kind="regnet", depth=13, w0=24, wa=36.44, wm=2.49, group_w=8), Task()),
]


@pytest.mark.parametrize("spec,task", _SMALL)
def test_state_dict_holds_each_tensor_once(spec, task):
    model = build(parse_spec(spec)[0], task)
    sd = model.state_dict(keep_vars=True)
    ptrs = [t.untyped_storage().data_ptr() for t in sd.values()]
    assert len(set(ptrs)) == len(ptrs)  # no two keys share storage (no final_bn alias)
    params = [k for k, t in sd.items() if isinstance(t, torch.nn.Parameter)]
    assert len(list(model.parameters())) == len(params)
    assert len(list(model.buffers())) == len(sd) - len(params)
    assert not any("final_bn" in k for k in sd)


def test_state_dict_key_names():
    spec = parse_spec(dict(kind="regnet", depth=13, w0=24, wa=36.44, wm=2.49,
                           group_w=8))[0]  # RegNetX-200MF
    keys = list(build(spec, Task()).state_dict())
    assert keys[0].startswith("stem.") and keys[-2:] == ["head.fc.weight", "head.fc.bias"]
    unit = re.compile(r"(stem|s(\d+)\.b(\d+)|head)\.")
    blocks = {}  # (stage, block) → the block's keys after "sK.bJ.", in key order
    for k in keys:
        m = unit.match(k)
        assert m, k
        if m[2]:
            blocks.setdefault((int(m[2]), int(m[3])), []).append(k[m.end():])
    assert list(blocks) == [(i + 1, j + 1) for i, d in enumerate(spec.ds) for j in range(d)]
    for (_, j), rest in blocks.items():
        assert {"f.a.conv.weight", "f.a.bn.weight", "f.b.conv.weight", "f.b.bn.weight",
                "f.c.conv.weight", "f.c.bn.weight"} <= set(rest)
        assert not any(r.startswith("f.se.") for r in rest)  # an X model has no SE
        assert any(r.startswith("proj.") for r in rest) == (j == 1)  # stride 2 at each b1


@pytest.mark.parametrize("spec,task", _SMALL)
def test_zero_init_final_gamma_only_on_f_c_bn(spec, task):
    s = parse_spec(spec)[0]
    for zero in (False, True):
        sd = build(s, task, zero_init_final_gamma=zero).state_dict()
        gammas = {k: v for k, v in sd.items() if k.endswith("bn.weight")}
        final = [k for k in gammas if k.endswith(".f.c.bn.weight")]
        assert len(final) == sum(s.ds)
        assert len(gammas) == sum(isinstance(m, torch.nn.BatchNorm2d)
                                  for m in build(s, task).modules())
        for k, v in gammas.items():
            assert (v == (0.0 if zero and k in final else 1.0)).all(), k
        assert all((v == 0).all() for k, v in sd.items() if k.endswith("bn.bias"))
