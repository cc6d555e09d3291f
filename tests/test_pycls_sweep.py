"""pycls sweep configs drawn by dse: pycls's samplers and their quantization arithmetic,
its constraints, and `dse sample --pycls-sweep` on the keys of its cifar_regnet sweep."""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_helpers import ok, one_error, run
from scipy import stats

from dse.space import pyclssweep as ps
from dse.store.core import Store

CIFAR_REGNET = Path(__file__).parent / "fixtures" / "pycls" / "cifar_regnet.yaml"
N = 20_000


def _draws(kind, lo, hi, q, n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [ps.rand(rng, kind, lo, hi, q) for _ in range(n)]


def _fits(values, probs: dict):
    """Chi-square of the draws' counts against exact probabilities (support included)."""
    c = Counter(values)
    assert set(c) <= set(probs), set(c) - set(probs)
    keys = sorted(probs)
    obs = np.array([c.get(k, 0) for k in keys], float)
    exp = np.array([probs[k] for k in keys]) * len(values)
    assert sum(probs.values()) == pytest.approx(1.0)
    return stats.chisquare(obs, exp).pvalue


def test_uniform_is_flat_on_the_closed_range_and_keeps_qs_type():
    v = _draws("uniform", 6, 16, 1)
    assert all(type(x) is int for x in v)
    assert _fits(v, {k: 1 / 11 for k in range(6, 17)}) > 1e-3
    f = _draws("uniform", 0.1, 0.5, 0.1, n=2000)
    assert all(type(x) is float for x in f) and set(f) == {0.1, 0.2, 0.3, 0.4, 0.5}


def test_log_uniform_ceils_a_draw_on_lo_minus_q_star_to_hi():
    # f log-uniform on (lo − min(q, lo/2), hi] = (4, 256], ceiled to multiples of 8
    lo, hi, q, a = 8, 256, 8, 4
    probs = {k: (math.log(k) - math.log(max(k - q, a))) / math.log(hi / a)
             for k in range(lo, hi + 1, q)}
    assert _fits(_draws("log_uniform", lo, hi, q), probs) > 1e-3


def test_power2_or_log_uniform_is_a_power_of_two_below_q_and_log_uniform_above():
    # power2_uniform(1, 32, 1): 1, 2, 4, 8, 16, 32 each 1/6; ≥ 8 (half the time) is redrawn
    # log-uniformly on (4, 32] and ceiled to 8
    third = math.log(2) / math.log(8)
    probs = {1: 1 / 6, 2: 1 / 6, 4: 1 / 6, 8: third / 2, 16: third / 2,
             24: math.log(24 / 16) / math.log(8) / 2, 32: math.log(32 / 24) / math.log(8) / 2}
    assert _fits(_draws("power2_or_log_uniform", 1, 32, 8), probs) > 1e-3


def test_power2_uniform_and_the_clipped_normals():
    assert _fits(_draws("power2_uniform", 2, 512, 1), {2 ** k: 1 / 9 for k in range(1, 10)}) \
        > 1e-3
    v = np.array(_draws("normal", 0.0, 6.0, 0.5))
    assert v.min() >= 0 and v.max() <= 6 and np.all(v * 2 == np.round(v * 2))
    assert v.mean() == pytest.approx(3.0, abs=0.03) and v.std() == pytest.approx(1.0, abs=0.03)
    w = np.array(_draws("log_normal", 1.0, 64.0, 0.25))
    assert w.min() >= 1 and w.max() <= 64
    assert np.median(w) == pytest.approx(8.0, rel=0.05)  # exp(μ) = √(lo · hi)


def test_quantize_is_decimal_exact():
    assert ps.quantize(0.30000000000000004, 0.1) == 0.3
    assert ps.quantize(2.71, 0.001, round) == 2.71
    assert type(ps.quantize(17.9, 8, math.ceil)) is int and ps.quantize(17.9, 8, math.ceil) == 24


@pytest.mark.parametrize("args, says", [
    (("log_uniform", 0, 8, 1), "low must be > 0"),
    (("uniform", 1, 10, 0.5), "one type"),
    (("uniform", 1.0, 10.25, 0.5), "multiples of q"),
    (("power2_uniform", 3, 16, 1), "powers of two"),
    (("gamma", 1, 2, 1), "unknown RAND_TYPE"),
])
def test_pycls_range_checks(args, says):
    with pytest.raises(Exception, match=says):
        ps.check_rand("X", *args)


def test_cifar_regnet_draws_meet_its_setup(tmp_path):
    s = tmp_path / "s"
    out = ok("sample", "--pycls-sweep", CIFAR_REGNET, "--store", s).output
    assert "does not apply" not in out  # dse train applies all of its recipe
    m = Store(s).read_models("pycls-cifar-regnet")
    assert len(m) == 32  # NUM_CONFIGS
    assert m["flops"].between(120_000_000, 130_000_000).all()
    assert (m["params"] <= 2_000_000).all() and (m["acts"] <= 1_000_000).all()
    assert m["ds"].map(len).eq(2).all() and m["se_ratio"].eq(0.25).all()
    assert m["stem"].eq("cifar").all() and m["stem_w"].eq(16).all()
    assert m["block"].eq("x").all() and m["first_stride"].eq(2).all()
    assert m["d"].between(6, 16).all() and (m["w0"] % 8 == 0).all()
    assert m["wa"].between(8, 256).all() and m["wm"].between(2, 3).all()
    g = set(m["group_w"])
    assert g <= {1, 2, 4, 8, 16, 24, 32} and len(g) >= 3
    again = ok("sample", "--pycls-sweep", CIFAR_REGNET, "--n", 4, "--store", s).output
    assert "sampled 0 models" in again and "(4 already held)" in again


def test_dry_run_writes_nothing(tmp_path):
    out = ok("sample", "--pycls-sweep", CIFAR_REGNET, "--n", 4, "--dry-run", "--store",
             tmp_path / "s").output
    assert "4 models drawn" in out and not (tmp_path / "s").exists()


def _variant(tmp_path, edit):
    cfg = yaml.safe_load(CIFAR_REGNET.read_text())
    edit(cfg)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("edit, says", [
    (lambda c: c["SETUP"]["SAMPLERS"].update({"OPTIM.BASE_LR": {"TYPE": "beta_sampler"}}),
     "unknown sampler TYPE 'beta_sampler'"),
    (lambda c: (c.update(FOO=1), c["SETUP"].update(BAR=2)),
     "keys dse does not support: FOO, SETUP.BAR"),
    (lambda c: c["SETUP"]["SAMPLERS"]["REGNET"].update(WA=[8, 256]), "REGNET.WA"),
    (lambda c: c["SETUP"]["BASE_CFG"]["REGNET"].update(STEM_TYPE="res_stem_in"),
     "res_stem_in has no dse equivalent"),
    (lambda c: c["SETUP"]["SAMPLERS"].update(
        {"OPTIM.WEIGHT_DECAY": {"TYPE": "float_sampler", "RAND_TYPE": "log_uniform",
                                "RANGE": [0.0, 0.001]}}), "low must be > 0"),
])
def test_bad_sweeps_are_one_line_and_write_nothing(tmp_path, edit, says):
    r = run("sample", "--pycls-sweep", _variant(tmp_path, edit), "--n", 2, "--store",
            tmp_path / "s")
    assert says in one_error(r)
    assert not (tmp_path / "s").exists()


TINY = dict(NAME="sweeps/tiny_anynet", SETUP=dict(
    NUM_CONFIGS=2,
    SAMPLERS={"ANYNET.DEPTHS": dict(TYPE="list_sampler", LENGTH=2, ITEM_SAMPLER=dict(
        TYPE="int_sampler", RAND_TYPE="uniform", RANGE=[1, 1], QUANTIZE=1)),
        "ANYNET.WIDTHS": dict(TYPE="list_sampler", LENGTH=2,
                              ITEM_SAMPLER=dict(TYPE="value_sampler", VALUES=[8, 16]))},
    BASE_CFG=dict(MODEL=dict(TYPE="anynet", NUM_CLASSES=10),
                  ANYNET=dict(STEM_TYPE="res_stem_cifar", STEM_W=8,
                              BLOCK_TYPE="res_basic_block", STRIDES=[1, 2]),
                  OPTIM=dict(BASE_LR=0.05, MAX_EPOCH=1, WEIGHT_DECAY=0.0005),
                  TRAIN=dict(DATASET="synthetic", IM_SIZE=32, BATCH_SIZE=256))))


def test_dse_run_refuses_a_recipe_it_cannot_apply_naming_every_key(tmp_path):
    def edit(c):
        base = c["SETUP"]["BASE_CFG"]
        base["OPTIM"].update(LR_POLICY="exp", DAMPENING=0.5)
        base["TRAIN"].update(CUTMIX_ALPHA=1.0)
        base["BN"].update(USE_PRECISE_STATS=True)
    r = run("run", _variant(tmp_path, edit), "--store", tmp_path / "s")
    msg = one_error(r)
    for key in ("OPTIM.LR_POLICY=exp", "OPTIM.DAMPENING=0.5", "TRAIN.CUTMIX_ALPHA=1.0",
                "BN.USE_PRECISE_STATS=True"):
        assert key in msg
    assert "EMA" not in msg and "LABEL_SMOOTHING" not in msg and "MIXUP" not in msg
    assert not (tmp_path / "s").exists()


def test_dse_run_applies_pyclss_cifar_recipe(tmp_path):
    out = ok("run", CIFAR_REGNET, "--store", tmp_path / "s", "--dry-run").output
    assert ("would train them with epochs=50 lr=1.0 batch_size=1024 momentum=0.9 "
            "nesterov=True wd=0.0005 warmup_epochs=5 warmup_factor=0.1 ema_alpha=0.00025 "
            "zero_init_final_gamma=False bn_wd=0.0 label_smoothing=0.1 mixup_alpha=0.5") in out
    assert "fp32" not in out  # MIXED_PRECISION: dse's bf16 autocast on CUDA
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_dse_run_draws_and_trains_a_sweep_whose_recipe_it_applies(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    s = tmp_path / "s"
    out = ok("run", p, "--store", s, "--dry-run").output
    assert "2 models drawn" in out and "would train them with epochs=1 lr=0.05" in out
    assert not s.exists()
    ok("run", p, "--store", s)
    store = Store(s)
    m = store.read_models("pycls-tiny-anynet")
    assert len(m) == 2 and m["block"].eq("basic").all() and m["stem_w"].eq(8).all()
    assert all(set(ws) <= {8, 16} and list(ds) == [1, 1] for ws, ds in zip(m["ws"], m["ds"]))
    res = store.read_results("pycls-tiny-anynet")
    assert len(res) == 4 and res["status"].eq("done").all()  # pycls's default EMA: 2 series
    assert sorted(res["series"]) == ["ema", "ema", "test", "test"]
    assert res["ema_alpha"].eq(1e-5).all() and res["ema_period"].eq(32).all()
    assert res["epochs"].eq(1).all() and res["lr"].eq(0.05).all()
    assert res["batch_size"].eq(256).all()
