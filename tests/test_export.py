"""dse networks exported to pycls, timm, torchvision and torch: the configs hold pycls's
published values, the built networks have dse's parameter count, and with dse's weights
copied they compute the same logits."""

import pytest
import torch
import yaml

from dse.compare import export
from dse.errors import DseError
from dse.space.spec import Task, parse_spec
from dse.train.models import build

SMALL = Task(resolution=64)


def _randomized(spec, task):
    """A dse network in eval mode with random BN statistics and affine parameters."""
    torch.manual_seed(0)
    model = build(spec, task)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                t.data.uniform_(-0.5, 0.5)
            m.running_var.data.uniform_(0.5, 1.5)
    return model.eval()


def _same_logits(ours, theirs, fmt, task):
    theirs.load_state_dict(export.rename(ours.state_dict(), fmt))
    theirs.eval()
    x = torch.randn(2, task.in_channels, task.resolution, task.resolution,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pycls_config_of_a_zoo_model_is_pyclss_own():
    spec, rp = parse_spec("RegNetY-16GF")
    cfg = yaml.safe_load(export.config_text("pycls", spec, Task(), rp))
    assert cfg["MODEL"] == {"TYPE": "regnet", "NUM_CLASSES": 1000}
    r = cfg["REGNET"]  # pycls configs/dds_baselines/regnet/RegNetY-16GF_dds_1gpu.yaml
    assert (r["DEPTH"], r["W0"], r["WA"], r["WM"], r["GROUP_W"], r["BOT_MUL"], r["SE_ON"]) == \
        (18, 200, 106.23, 2.48, 112, 1.0, True)
    assert r["SE_R"] == 0.25 and r["STEM_W"] == 32 and cfg["TRAIN"]["IM_SIZE"] == 224


def test_pycls_anynet_config_per_stage():
    spec, rp = parse_spec('{"kind":"anynet","ds":[1,2],"ws":[32,96],"bs":[1,2],"gs":[8,16]}')
    task = Task(resolution=32, stem="cifar", num_classes=10)
    a = yaml.safe_load(export.config_text("pycls", spec, task, rp))["ANYNET"]
    assert (a["DEPTHS"], a["WIDTHS"], a["BOT_MULS"], a["GROUP_WS"]) == \
        ([1, 2], [32, 96], [1.0, 0.5], [8, 16])
    assert a["STEM_TYPE"] == "res_stem_cifar" and a["SE_ON"] is False


@pytest.mark.parametrize("name", ["RegNetX-200MF", "RegNetY-400MF", "RegNetX-8.0GF"])
def test_torchvision_same_params_and_logits(name):
    spec, rp = parse_spec(name)
    ours = _randomized(spec, SMALL)
    theirs = export.build_torchvision(export.torchvision_config(spec, SMALL, rp))
    assert sum(p.numel() for p in theirs.parameters()) == \
        sum(p.numel() for p in ours.parameters())
    _same_logits(ours, theirs, "torchvision", SMALL)


def test_torchvision_anynet_with_bottleneck():
    spec, _ = parse_spec('{"kind":"anynet","ds":[1,2,1],"ws":[48,96,192],"bs":[2,4,1],'
                         '"gs":[8,8,16],"se_ratio":0.25}')
    theirs = export.build_torchvision(export.torchvision_config(spec, SMALL))
    _same_logits(_randomized(spec, SMALL), theirs, "torchvision", SMALL)


@pytest.mark.parametrize("name", ["RegNetX-200MF", "RegNetY-400MF", "RegNetX-8.0GF"])
def test_timm_same_params_and_logits(name):
    pytest.importorskip("timm", reason="timm is optional: pip install 'dse[export]'")
    spec, rp = parse_spec(name)
    ours = _randomized(spec, SMALL)
    theirs = export.build_timm(export.timm_config(spec, SMALL, rp))
    assert sum(p.numel() for p in theirs.parameters()) == \
        sum(p.numel() for p in ours.parameters())
    _same_logits(ours, theirs, "timm", SMALL)


def test_torch_round_trip(tmp_path):
    spec, _ = parse_spec("RegNetY-200MF")
    task = Task(resolution=32, num_classes=10)
    ours = _randomized(spec, task)
    path = tmp_path / "m.pt"
    export.save_torch(path, spec, task, ours.state_dict())
    back, spec2, task2 = export.load_torch(path)
    assert (spec2, task2) == (spec, task)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), back.eval()(x))


def test_what_a_format_cannot_hold(tmp_path):
    anynet, _ = parse_spec('{"kind":"anynet","ds":[1],"ws":[32],"bs":[1],"gs":[8]}')
    with pytest.raises(DseError, match="timm needs a RegNet"):
        export.timm_config(anynet, Task())
    spec, rp = parse_spec("RegNetX-200MF")
    with pytest.raises(DseError, match="only the ImageNet stem"):
        export.torchvision_config(spec, Task(resolution=32, stem="cifar"), rp)
    with pytest.raises(DseError, match="3-channel"):
        export.torchvision_config(spec, Task(in_channels=1), rp)
    (tmp_path / "x.pt").write_bytes(b"not a torch file")
    with pytest.raises(DseError, match="not a model saved"):
        export.load_torch(tmp_path / "x.pt")
