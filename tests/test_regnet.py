"""Quantized linear widths and compatibility rounding (pycls conventions)."""

import numpy as np

from dse.space import regnet


def test_quantized_widths_intermediates():
    gen = regnet.quantized_widths([22], [24], [24.48], [2.54])
    u = gen.u[0]
    assert np.allclose(u, 24 + 24.48 * np.arange(22))
    assert np.allclose(gen.s[0], np.log(u / 24) / np.log(2.54))
    assert gen.ks[0].tolist() == [0] + [1] * 2 + [2] * 7 + [3] * 12
    assert gen.num_stages[0] == gen.total_stages[0] == 4
    assert set(gen.w[0].tolist()) == {24, 64, 152, 392}


def test_batch_with_different_depths_is_padded():
    gen = regnet.quantized_widths([3, 13], [24, 24], [36.44, 36.44], [2.49, 2.49])
    assert gen.mask.sum(axis=1).tolist() == [3, 13]
    assert (gen.w[0, 3:] == 0).all()
    ds, ws = regnet.stages_from_widths(gen.ks, gen.w, 4)
    assert ds[1].tolist() == [1, 1, 4, 7] and ws[1].tolist() == [24, 56, 152, 368]
    assert ds[0].tolist() == [1, 1, 1, 0] and gen.total_stages[0] == 3


def test_skipped_exponent_detected():
    # w_m = 1.5 with w_0 = 8: stage widths 8, 12→16, 18→16 collide after rounding to 8
    gen = regnet.quantized_widths([20], [8], [3.0], [1.5])
    assert gen.num_stages[0] < gen.total_stages[0]


def test_make_compatible_examples():
    ws, bs, gs = regnet.make_compatible([24, 152, 392, 8, 40], [1, 1, 1, 4, 2], [16, 16, 16, 8, 32])
    # 24/16 = 1.5 rounds to 2 (half to even) → 32; 152/16 = 9.5 → 10 → 160; 392/16 = 24.5 → 24
    # w_b = 8/4 = 2 < g: g' = 2; w_b = 20 < 32: g' = 20
    assert ws.tolist() == [32, 160, 384, 8, 40]
    assert gs.tolist() == [16, 16, 16, 2, 20]
    assert bs.tolist() == [1, 1, 1, 4, 2]
    assert ((ws // bs) % gs == 0).all()


def test_make_compatible_is_idempotent():
    rng = np.random.default_rng(1)
    ws, bs, gs = regnet.make_compatible(rng.integers(1, 128, 1000) * 8,
                                        rng.choice([1, 2, 4], 1000), rng.choice([1, 4, 32], 1000))
    again = regnet.make_compatible(ws, bs, gs)
    assert all((a == b).all() for a, b in zip(again, (ws, bs, gs)))
