"""torchvision reference networks counted the pycls way (forward hooks on the meta device):
equal to pycls's published complexity, params equal to torchvision's, and the same counter
on a dse network equals dse.space.complexity."""

import pytest
import torch
import torchvision.models as tvm

from dse.compare import references
from dse.space import zoo
from dse.space.complexity import complexity
from dse.space.spec import Task, parse_spec
from dse.train.models import build

# pycls dev/model_complexity.json: flops, params, acts (EfficientNet at its native resolution)
PYCLS = {
    "resnet50": (4_089_185_256, 25_557_032, 11_315_688),
    "resnet101": (7_801_406_440, 44_549_160, 16_433_640),
    "resnet152": (11_513_627_624, 60_192_808, 22_755_816),
    "resnext50_32x4d": (4_230_480_872, 25_028_904, 14_602_216),
    "efficientnet_b0": (385_825_092, 5_288_548, 6_748_036),
    "efficientnet_b1": (686_817_992, 7_794_184, 10_884_328),
    "efficientnet_b2": (993_578_282, 9_109_994, 13_832_834),
    "efficientnet_b3": (1_827_162_472, 12_233_232, 23_831_296),
    "efficientnet_b4": (4_393_801_064, 19_341_616, 49_489_032),
    "efficientnet_b5": (10_266_426_072, 30_389_784, 98_857_400),
}


@pytest.mark.parametrize("name", list(PYCLS))
def test_counts_equal_pycls(name):
    cx = references.complexity(name)
    flops, params, acts = PYCLS[name]
    assert cx["params"] == params
    # the counter reproduces pycls exactly; the contract is 2 %
    assert cx["flops"] == pytest.approx(flops, rel=0.02) and cx["flops"] == flops
    assert cx["acts"] == pytest.approx(acts, rel=0.02) and cx["acts"] == acts


def _weights_num_params(name):
    enum = tvm.get_model_weights(name)
    return next(iter(enum)).meta["num_params"]


@pytest.mark.parametrize("name", list(zoo.REFERENCES))
def test_params_equal_torchvision(name):
    assert references.complexity(name)["params"] == _weights_num_params(name)


@pytest.mark.parametrize("name", ["RegNetX-400MF", "RegNetY-400MF", "RegNetX-8.0GF"])
def test_counter_on_a_dse_network_equals_the_closed_form(name):
    spec, _ = parse_spec(name)
    task = Task(resolution=96)
    with torch.device("meta"):
        model = build(spec, task)
    assert references.count(model, 96) == complexity(spec, task)


def test_counting_on_a_real_module_leaves_its_mode_alone():
    spec, _ = parse_spec('{"kind":"anynet","ds":[1,1],"ws":[16,32],"bs":[1,1],"gs":[8,8]}')
    task = Task(resolution=32, stem="cifar", in_channels=1, num_classes=10)
    model = build(spec, task).train()
    assert references.count(model, 32, in_channels=1) == complexity(spec, task)
    assert model.training


def test_efficientnet_acts_grow_faster_with_flops_than_a_regnets():
    from dse.compare import speedfit

    rows = [dict(family="EfficientNet", flops=f, acts=a)
            for n, (f, _, a) in PYCLS.items() if n.startswith("efficientnet")]
    ex = speedfit.family_exponents(rows)["EfficientNet"]
    assert ex["slope"] == pytest.approx(0.82, abs=0.005) and ex["r2"] > 0.99
