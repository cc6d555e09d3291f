"""fit-linear (DDS §3.3): block widths, the quantized linear fit on widths it generated and on
RegNetX-400MF, and the joint linear fit."""

import numpy as np
import pytest

from dse.analysis import fitlinear as F
from dse.space import regnet
from dse.store.fitcache import FitCache


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
        assert one.tolist() == batch.iloc[i].tolist()  # e_fit too: summed in block order


def _noisy(n, seed, rng):
    """Quantized-linear widths with every block nudged by up to ± 3·8 (the fit is inexact)."""
    W, d = _regnet_widths(n, seed)
    W = np.where(W > 0, np.maximum(W + 8 * rng.integers(-3, 4, W.shape), 8), 0)
    return W, d


def test_fit_linear_is_the_same_whichever_models_are_fitted_together(rng):
    # the vectorized fit against one model at a time (chunk=1), with the same search: every
    # column equal, wa included (a model's padding splits no interval of a)
    W, d = _noisy(40, 3, rng)
    batch = F.fit_linear(W, d)
    for chunk in (1, 200_000):
        other = F.fit_linear(W, d, chunk=chunk)
        for c in batch.columns:
            np.testing.assert_array_equal(other[c].to_numpy(), batch[c].to_numpy(), c)


def _best_a_by_enumeration(obs, w0, wm, a_range, K):
    """The least e_fit over a in a_range (capped where the last block passes K), evaluated
    on every interval between consecutive breakpoints (w_m^(k−1/2) − 1)/j directly from the
    RegNet rule: the straightforward way."""
    d = len(obs)
    a_cap = (wm ** (K + 0.5) - 1) / max(d - 1, 1)
    lo, hi = a_range[0], min(a_range[1], a_cap)
    k, j = np.meshgrid(np.arange(1, K + 1), np.arange(1, d))
    cuts = np.unique(np.r_[lo, hi, ((wm ** (k - 0.5) - 1) / j).ravel()])
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    best = np.inf
    for a in np.sqrt(cuts[:-1] * cuts[1:]):
        ks = np.round(np.log(1 + a * np.arange(d)) / np.log(wm))
        pred = regnet.quantize(w0, wm, ks)
        best = min(best, np.abs(np.log(pred) - np.log(obs)).mean())
    return best


def test_best_a_is_the_least_e_fit_over_a(rng):
    W, d = _noisy(12, 11, rng)
    K = 14
    w0 = rng.choice([8, 16, 24, 48], (12, 5)).astype(float)
    wm = rng.uniform(*F.FIT_WM, (12, 5))
    mask = np.arange(W.shape[1])[None, :] < d[:, None]
    logobs = np.where(mask, np.log(np.maximum(W, 1)), 0.0)
    for shared in (False, True):  # one w_m per model and candidate, or one row for all
        m = wm[:1] if shared else wm
        e, a = F._best_a(logobs, mask, d, w0, m, F.FIT_A, K, regnet.Q)
        for i in range(12):
            for c in range(5):
                want = _best_a_by_enumeration(W[i, :d[i]], w0[i, c], m[0 if shared else i, c],
                                              F.FIT_A, K)
                assert e[i, c] == pytest.approx(want, rel=1e-12, abs=1e-15)
                # the a returned lies inside an interval with that e_fit
                ks = np.round(np.log(1 + a[i, c] * np.arange(d[i]))
                              / np.log(m[0 if shared else i, c]))
                pred = regnet.quantize(w0[i, c], m[0 if shared else i, c], ks)
                got = np.abs(np.log(pred) - np.log(W[i, :d[i]])).mean()
                assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


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


def test_fits_from_the_cache_equal_fits_computed_afresh(tmp_path, rng, monkeypatch):
    W, d = _noisy(30, 5, rng)
    W[29], d[29] = W[3], d[3]  # one architecture twice
    fresh = F.fit_linear(W, d)
    cache = FitCache(tmp_path / "analysis" / "fits.parquet")
    part = F.fit_linear_cached(W[:12, :d[:12].max()], d[:12], cache)
    assert part.equals(fresh.iloc[:12].reset_index(drop=True))
    assert len(cache.read(F.VERSION)) == 12
    both = F.fit_linear_cached(W, d, cache)  # 12 from the cache, 17 fitted, 1 repeated
    assert both.equals(fresh)
    assert len(cache.read(F.VERSION)) == 29
    monkeypatch.setattr(F, "fit_linear", lambda *a, **k: pytest.fail("fitted again"))
    assert F.fit_linear_cached(W[::-1], d[::-1], cache).equals(
        fresh.iloc[::-1].reset_index(drop=True))


def test_a_cache_of_another_version_damaged_or_unwritable_is_ignored(tmp_path, rng):
    W, d = _noisy(6, 8, rng)
    fresh = F.fit_linear(W, d)
    path = tmp_path / "fits.parquet"
    F.fit_linear_cached(W, d, FitCache(path))
    assert FitCache(path).read("fit_linear r0").empty  # another search's fits are not used
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert FitCache(path).read(F.VERSION).empty
    assert F.fit_linear_cached(W, d, FitCache(path)).equals(fresh)  # fitted and rewritten
    assert len(FitCache(path).read(F.VERSION)) == 6
    (tmp_path / "file").write_text("not a directory")
    blocked = FitCache(tmp_path / "file" / "fits.parquet")
    assert F.fit_linear_cached(W, d, blocked).equals(fresh)
    assert FitCache(blocked.path).read(F.VERSION).empty
    assert (tmp_path / "file").read_text() == "not a directory"


def test_a_cache_in_a_with_block_is_saved_only_when_the_block_succeeds(tmp_path, rng):
    W, d = _noisy(4, 9, rng)
    path = tmp_path / "fits.parquet"
    with pytest.raises(RuntimeError), FitCache(path) as fits:
        F.fit_linear_cached(W, d, fits)
        assert len(fits.read(F.VERSION)) == 4 and not path.exists()  # held, not yet saved
        raise RuntimeError("the command failed")
    assert not path.exists()
    with FitCache(path) as fits:
        F.fit_linear_cached(W, d, fits)
    assert len(FitCache(path).read(F.VERSION)) == 4
