"""Fits of runtime against complexity (pure): known power laws are recovered exactly."""

import numpy as np
import pytest

from dse.compare import speedfit


def test_loglog_fit_recovers_a_power_law():
    x = np.array([1e8, 4e8, 1.6e9, 6.4e9])
    f = speedfit.loglog_fit(x, 3e-12 * x ** 0.75)
    assert f["slope"] == pytest.approx(0.75) and f["r2"] == pytest.approx(1.0)
    assert np.exp(f["intercept"]) == pytest.approx(3e-12)


def test_noisy_fit_has_lower_r2_and_undefined_fits_are_none():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    f = speedfit.loglog_fit(x, x * np.array([1.0, 2.0, 0.5, 1.0]))
    assert 0 < f["r2"] < 0.9
    assert speedfit.loglog_fit([5, 5], [1, 2])["slope"] is None
    assert speedfit.loglog_fit([5], [1])["n"] == 1


def test_speed_fits_and_family_exponents():
    # acts ∝ flops^0.5 for one family, ∝ flops for the other; time ∝ acts exactly
    flops = [1e8, 4e8, 1.6e9, 1e8, 4e8, 1.6e9]
    acts = [1e6, 2e6, 4e6, 1e6, 4e6, 16e6]
    fam = ["RegNetY"] * 3 + ["EfficientNet"] * 3
    models = [dict(family=f, flops=a, acts=b, images_per_second=1 / (b * 1e-9))
              for f, a, b in zip(fam, flops, acts)]
    fits = speedfit.speed_fits(models)
    assert fits["acts"]["slope"] == pytest.approx(1.0) and fits["acts"]["r2"] == pytest.approx(1)
    assert fits["flops"]["r2"] < fits["acts"]["r2"]
    ex = speedfit.family_exponents(models)
    assert ex["RegNetY"]["slope"] == pytest.approx(0.5)
    assert ex["EfficientNet"]["slope"] == pytest.approx(1.0)
