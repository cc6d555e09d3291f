"""fit-linear (DDS §3.3): block widths, the quantized linear fit on widths it generated and on
RegNetX-400MF, and the joint linear fit."""

import numpy as np
import pytest

from dse.analysis import fitlinear as F
from dse.space import regnet


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_block_widths_repeat_stage_widths():
    W, d = F.block_widths([[1, 2], [2, 1, 1]], [[8, 16], [24, 48, 96]])
    assert d.tolist() == [3, 4]
    assert W.tolist() == [[8, 16, 16, 0], [24, 24, 48, 96]]


def _regnet_widths(n, seed):
    """Per-block widths from the RegNet generator (before compatibility rounding), with the
    sampler's parameter grids (pycls defaults)."""
    r = np.random.default_rng(seed)
    lu = lambda lo, hi: np.exp(r.uniform(np.log(lo), np.log(hi), n))  # noqa: E731
    d = r.integers(12, 29, n)
    w0, wa, wm = np.round(lu(8, 256) / 8) * 8, np.round(lu(8, 256), 1), np.round(lu(2, 3), 3)
    gen = regnet.quantized_widths(d, w0, wa, wm)
    return gen.w, d


def test_fit_linear_recovers_regnet_generated_widths():
    W, d = _regnet_widths(150, seed=5)
    fit = F.fit_linear(W, d)
    assert (fit["e_fit"] <= 0.01).all()
    assert fit["d"].tolist() == d.tolist()
    again = regnet.quantized_widths(d, fit["w0"], fit["wa"], fit["wm"])
    np.testing.assert_array_equal(again.w, W)  # the fitted parameters reproduce every width
    assert (fit["wm"].between(*F.FIT_WM)).all()


def test_fit_linear_on_regnetx_400mf():
    ds, ws, gen = regnet.regnet_stages(22, 24, 24.48, 2.54)
    assert (ds, ws) == ([1, 2, 7, 12], [24, 64, 152, 392])
    W, d = F.block_widths([ds], [ws])
    fit = F.fit_linear(W, d).iloc[0]
    assert fit["e_fit"] == 0
    assert fit["w0"] == 24
    assert regnet.regnet_stages(22, fit["w0"], fit["wa"], fit["wm"])[:2] == (ds, ws)


def test_fit_linear_is_large_for_non_monotone_widths():
    W, d = F.block_widths([[2, 2, 2, 2], [3, 3, 3, 3]],
                          [[256, 32, 512, 64], [512, 64, 512, 64]])
    fit = F.fit_linear(W, d)
    assert (fit["e_fit"] > 0.3).all()


def test_fit_linear_is_the_same_one_model_at_a_time(rng):
    W, d = _regnet_widths(6, seed=7)
    W[:3] = np.where(W[:3] > 0, W[:3] + 8 * rng.integers(-3, 4, W[:3].shape), 0)  # noisy
    W = np.maximum(W, np.where(W != 0, 8, 0))
    batch = F.fit_linear(W, d)
    for i in range(len(d)):
        one = F.fit_linear(W[i:i + 1, :d[i]], d[i:i + 1]).iloc[0]
        assert one["e_fit"] == pytest.approx(batch["e_fit"].iloc[i])


def test_fit_linear_e_fit_is_the_mean_log_ratio_of_its_own_prediction(rng):
    W, d = F.block_widths([[1, 3, 4, 2]], [[32, 96, 200, 400]])
    fit = F.fit_linear(W, d).iloc[0]
    pred = regnet.quantized_widths(d, [fit["w0"]], [fit["wa"]], [fit["wm"]]).w[0]
    assert fit["e_fit"] == pytest.approx(np.mean(np.abs(np.log(pred / W[0]))))
    assert 0 < fit["e_fit"] < 0.2


def test_joint_linear_fit_finds_48_j_plus_1():
    W = np.array([[48 * (j + 1) for j in range(20)], [48 * (j + 1) for j in range(20)]])
    W[1, 15:] = 0
    j = F.joint_linear_fit(W, np.array([20, 15]))
    assert j["w0"] == pytest.approx(48) and j["wa"] == pytest.approx(48)
