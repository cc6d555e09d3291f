"""Block types, fractional b, SiLU, the first stage's stride: pycls's complexity exactly,
the torch module's parameter count equal to the analytic one, spec JSON round trips, and
every user error in one line."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.compare import export
from dse.errors import DseError
from dse.space import blocks, regnet
from dse.space.complexity import complexity, stage_table
from dse.space.spec import Task, model_id, parse_spec
from dse.train.models import AnyNet, build, num_params

CIFAR10, IMAGENET = Task(32, "cifar", 3, 10), Task()

# Computed with pycls 0.1.1's own functions (pycls/models/anynet.py: the stems, AnyStage,
# AnyHead, ResBottleneckBlock, ResBasicBlock, VanillaBlock, with core/net.py's conv and BN
# rules; V and VR composed from those rules: a 3×3 conv + BN, and for VR the projection that
# pycls's residual blocks add when the shape changes). x and r widths first went through
# pycls's adjust_ws_gs_comp with bot_mul = 1/b; `pycls_ws` / `pycls_gs` are its outputs.
# (block, ds, ws, bs, gs, se, task, stem_w, first stride, pycls_ws, pycls_gs, flops, params, acts)
GOLDEN = [
    ("basic", [9, 9, 9], [16, 32, 64], None, None, 0, CIFAR10, 16, 1,  # ResNet-56
     [16, 32, 64], None, 125_747_850, 855_770, 544_778),
    ("basic", [2, 2, 2, 2], [64, 128, 256, 512], None, None, 0, IMAGENET, 32, 2,
     [64, 128, 256, 512], None, 1_655_518_184, 11_664_648, 2_284_008),
    ("plain", [3, 4, 2], [16, 48, 128], None, None, 0, CIFAR10, 16, 1,
     [16, 48, 128], None, 85_378_314, 667_290, 245_770),
    ("plain", [1, 2, 3, 1], [24, 64, 160, 384], None, None, 0, IMAGENET, 32, 2,
     [24, 64, 160, 384], None, 482_676_712, 3_650_728, 979_432),
    ("v", [4, 6, 3], [24, 56, 120], None, None, 0, CIFAR10, 16, 1,
     [24, 56, 120], None, 79_590_586, 495_162, 223_754),
    ("v", [2, 3, 5, 2], [32, 64, 128, 256], None, None, 0, IMAGENET, 32, 2,
     [32, 64, 128, 256], None, 314_559_464, 1_919_624, 904_168),
    ("vr", [4, 6, 3], [16, 56, 120], None, None, 0, CIFAR10, 16, 1,
     [16, 56, 120], None, 69_190_842, 489_242, 213_002),
    ("vr", [2, 3, 5, 2], [32, 64, 128, 256], None, None, 0, IMAGENET, 32, 2,
     [32, 64, 128, 256], None, 322_587_624, 1_964_616, 1_092_328),
    ("x", [1, 2, 4, 2], [24, 56, 152, 368], [0.25, 0.5, 0.25, 0.5], [8, 4, 16, 8], 0,
     IMAGENET, 32, 2, [24, 56, 152, 368], [8, 4, 16, 8], 405_082_344, 2_560_968, 4_570_936),
    ("x", [2, 3, 2], [16, 40, 96], [0.25, 0.5, 1], [2, 4, 8], 0.25, CIFAR10, 16, 1,
     [16, 40, 96], [2, 4, 8], 18_674_364, 98_764, 598_652),
    ("x", [1, 3, 5, 2], [40, 80, 200, 440], [0.5] * 4, [16] * 4, 0.25, IMAGENET, 32, 2,
     [40, 80, 200, 440], [16] * 4, 554_929_534, 3_841_006, 4_913_206),
    ("x", [2, 2, 3, 1], [48, 96, 192, 400], [4, 2, 0.25, 1], [1, 8, 32, 3], 0,
     Task(28, "cifar", 3, 10), 24, 2, [48, 96, 192, 399], [1, 8, 32, 3],
     31_571_032, 1_867_198, 216_622),
    ("r", [2, 3, 5, 2], [32, 64, 128, 256], [2, 0.25, 0.5, 4], None, 0, IMAGENET, 32, 2,
     [32, 64, 128, 256], [16, 256, 256, 64], 2_178_296_808, 5_572_296, 3_924_136),
    ("r", [3, 3, 3], [16, 40, 88], [0.5, 1, 2], None, 0.25, CIFAR10, 16, 1,
     [16, 40, 88], [32, 40, 44], 51_095_104, 171_856, 443_584),
]


def _json(block, ds, ws, bs, gs, se, stem_w, stride, activation="relu"):
    obj = dict(kind="anynet", ds=ds, ws=ws, block=block, se_ratio=se, stem_w=stem_w,
               first_stride=stride, activation=activation)
    obj.update({"bs": bs} if bs else {})
    obj.update({"gs": gs} if gs else {})
    return obj


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{c[0]}-{c[6].stem}-{i}"
                                              for i, c in enumerate(GOLDEN)])
def test_complexity_equals_pycls(case):
    block, ds, ws, bs, gs, se, task, stem_w, stride, p_ws, p_gs, flops, params, acts = case
    spec, _ = parse_spec(_json(block, ds, ws, bs, gs, se, stem_w, stride))
    assert list(spec.ws) == p_ws  # pycls's compatibility rounding, fractional b included
    if p_gs is not None:
        assert list(spec.gs) == p_gs
    assert complexity(spec, task) == {"flops": flops, "params": params, "acts": acts}
    with torch.device("meta"):
        assert num_params(AnyNet(spec, task)) == params


def test_activation_changes_no_count():
    a = parse_spec(_json("basic", [2, 2], [16, 32], None, None, 0, 16, 1))[0]
    b = parse_spec(_json("basic", [2, 2], [16, 32], None, None, 0, 16, 1, "silu"))[0]
    assert complexity(a, CIFAR10) == complexity(b, CIFAR10)
    assert model_id(a, CIFAR10) != model_id(b, CIFAR10)
    assert any(isinstance(m, torch.nn.SiLU) for m in build(b, CIFAR10).modules())
    assert not any(isinstance(m, torch.nn.SiLU) for m in build(a, CIFAR10).modules())


def _random_spec(rng, block):
    n = int(rng.integers(1, 5))
    bt = blocks.get(block)
    obj = dict(kind="anynet", block=block, ds=rng.integers(1, 4, n).tolist(),
               ws=(8 * rng.integers(1, 24, n)).tolist(), stem_w=int(rng.choice([8, 16, 32])),
               first_stride=int(rng.choice([1, 2])),
               activation=str(rng.choice(blocks.ACTIVATIONS)))
    if bt.bottleneck:
        obj["bs"] = rng.choice([0.25, 0.5, 1, 2, 4], n).tolist()
        obj["se_ratio"] = float(rng.choice([0, 0.25]))
    if bt.groups:
        obj["gs"] = rng.choice([1, 2, 4, 8, 16, 3, 24], n).tolist()
    return obj


@pytest.mark.parametrize("block", list(blocks.BLOCKS))
def test_module_params_equal_analytic_for_random_specs(block):
    rng = np.random.default_rng(list(blocks.BLOCKS).index(block))
    built = 0
    for _ in range(40):
        task = Task(int(rng.choice([16, 28, 32, 64])), str(rng.choice(["cifar", "imagenet"])),
                    int(rng.choice([1, 3])), int(rng.integers(2, 100)))
        try:
            spec, _ = parse_spec(_random_spec(rng, block))
        except DseError as e:  # b < 1 with a group width that does not divide 1/b · w
            assert "cannot be built" in str(e)
            continue
        with torch.device("meta"):
            assert num_params(AnyNet(spec, task)) == complexity(spec, task)["params"], spec
        built += 1
    assert built >= 30


def test_compatibility_of_fractional_b_matches_pycls_rule():
    # pycls: w_bot = int(w·bm); g = min(g, w_bot); w_bot = round(w_bot / g)·g; w = int(w_bot / bm)
    rng = np.random.default_rng(0)
    ws, bs, gs = rng.integers(8, 600, 500), rng.choice([0.25, 0.5, 1, 2, 4], 500), \
        rng.choice([1, 2, 4, 8, 16, 32], 500)
    got_w, _, got_g = regnet.make_compatible(ws, bs, gs)
    for w, b, g, gw, gg in zip(ws, bs, gs, got_w, got_g):
        bm = 1 / b
        w_bot = int(w * bm)
        g2 = min(g, w_bot)
        w_bot = int(round(w_bot / g2) * g2)
        assert gw == int(w_bot / bm)
        assert gg == g2  # powers of two: the bottleneck stays a multiple of g
    assert regnet.buildable(got_w, bs, got_g).all()


def test_whole_b_ids_and_json_unchanged():
    # ids computed before block types existed (X/Y networks keep theirs)
    assert model_id(parse_spec("RegNetX-400MF")[0], IMAGENET) == "ea7d2bf38d911117"
    spec = parse_spec({"kind": "anynet", "ds": [1, 2], "ws": [16, 32], "bs": [2, 1],
                       "gs": [4, 8], "se_ratio": 0.25})[0]
    assert model_id(spec, CIFAR10) == "e1b6a4390bb4446e"
    assert spec.bs == (2, 1) and all(isinstance(b, int) for b in spec.bs)
    assert export.spec_json(spec) == {"kind": "anynet", "ds": [1, 2], "ws": [16, 32],
                                      "bs": [2, 1], "gs": [4, 8], "se_ratio": 0.25,
                                      "stem_w": 32}


@pytest.mark.parametrize("block", list(blocks.BLOCKS))
def test_spec_json_round_trip(block):
    spec = parse_spec(_random_spec(np.random.default_rng(7), block))[0]
    again = parse_spec(json.dumps(export.spec_json(spec)))[0]
    assert again == spec and model_id(again, CIFAR10) == model_id(spec, CIFAR10)


def test_describe_json_reports_block_b_and_activation():
    obj = dict(kind="anynet", ds=[1, 2], ws=[16, 40], bs=[0.25, 0.5], gs=[4, 8], block="x",
               activation="silu", first_stride=1, stem_w=16)
    r = CliRunner().invoke(cli, ["describe", "--spec", json.dumps(obj), "--json", "--stem",
                                 "cifar", "--resolution", "32", "--num-classes", "10"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["block"], out["activation"], out["first_stride"]) == ("x", "silu", 1)
    assert out["bs"] == [0.25, 0.5] and out["module_params"] == out["params"]
    rows = stage_table(parse_spec(obj)[0], CIFAR10)
    assert [r["out"] for r in rows] == [32, 32, 16, 1]  # stride 1, then 2
    assert rows[1]["groups"] == 64 // 4  # w_b = 16 / 0.25 = 64 in groups of 4


@pytest.mark.parametrize("obj,msg", [
    (dict(kind="anynet", ds=[1], ws=[16], bs=[0], gs=[1]), r"bs\[0\] must be > 0"),
    (dict(kind="anynet", ds=[1], ws=[16], block="q"), "unknown block 'q'; allowed: x, r, v"),
    (dict(kind="anynet", ds=[1], ws=[16], bs=[2], gs=[4], block="r"),
     "g does not apply to r blocks"),
    (dict(kind="anynet", ds=[1], ws=[16], bs=[1], block="v"), "b does not apply to v blocks"),
    (dict(kind="anynet", ds=[1], ws=[16], block="basic", se_ratio=0.25),
     "se_ratio does not apply to basic"),
    (dict(kind="anynet", ds=[1], ws=[16], block="v", activation="gelu"),
     "unknown activation 'gelu'; allowed: relu, silu"),
    (dict(kind="anynet", ds=[1], ws=[16], block="v", first_stride=3), "first_stride must be"),
    (dict(kind="anynet", ds=[1], ws=[10], bs=[0.25], gs=[6]), "cannot be built"),
    (dict(kind="regnet", depth=12, w0=24, wa=20, wm=2.5, group_w=8, block="r"),
     "g does not apply to r"),
])
def test_spec_errors_say_what_is_allowed(obj, msg):
    with pytest.raises(DseError, match=msg):
        parse_spec(obj)


def test_regnet_spec_of_r_blocks_has_one_group_per_stage():
    spec, rp = parse_spec(dict(kind="regnet", depth=13, w0=24, wa=36.44, wm=2.49, b=0.5,
                               block="r"))
    assert rp["group_w"] is None and rp["b"] == 0.5
    assert [w * 2 for w in spec.ws] == list(spec.gs)  # g = w_b = w / b: one group


@pytest.mark.parametrize("fmt,block,msg", [
    ("pycls", "v", "--format pycls has no V"), ("pycls", "vr", "--format pycls has no VR"),
    ("torchvision", "basic", "--format torchvision has no ResNet basic"),
])
def test_export_refuses_blocks_a_library_lacks(fmt, block, msg):
    spec = parse_spec(_json(block, [1, 1], [16, 32], None, None, 0, 32, 2))[0]
    with pytest.raises(DseError, match=msg):
        export.config_text(fmt, spec, IMAGENET)


def test_pycls_config_of_the_new_blocks():
    spec = parse_spec(_json("basic", [9, 9, 9], [16, 32, 64], None, None, 0, 16, 1))[0]
    cfg = export.pycls_config(spec, CIFAR10)
    assert cfg["ANYNET"]["BLOCK_TYPE"] == "res_basic_block"
    assert cfg["ANYNET"]["STRIDES"] == [1, 2, 2] and "BOT_MULS" not in cfg["ANYNET"]
    spec = parse_spec(_json("x", [1, 2], [16, 40], [0.25, 2], [4, 8], 0, 32, 2, "silu"))[0]
    cfg = export.pycls_config(spec, IMAGENET)
    assert cfg["ANYNET"]["BOT_MULS"] == [4.0, 0.5] and cfg["MODEL"]["ACTIVATION_FUN"] == "silu"


def test_torchvision_builds_inverted_and_ungrouped_bottlenecks_with_our_counts():
    pytest.importorskip("torchvision")
    for obj in (_json("x", [1, 2, 2, 1], [24, 48, 96, 192], [0.5, 0.25, 1, 2], [8, 4, 16, 8], 0.25,
                      32, 2, "silu"),
                _json("r", [1, 2, 2, 1], [24, 48, 96, 192], [0.5, 2, 1, 4], None, 0, 32, 1)):
        spec = parse_spec(obj)[0]
        cfg = export.torchvision_config(spec, IMAGENET)
        model = export.build_torchvision(cfg)
        assert num_params(model) == complexity(spec, IMAGENET)["params"]
        model.load_state_dict(export.rename(build(spec, IMAGENET).state_dict(), "torchvision"))
        assert any(isinstance(m, torch.nn.SiLU) for m in model.modules()) == \
            (spec.activation == "silu")
