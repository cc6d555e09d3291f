"""Training health: which finished models did not learn (final training loss or error near
chance), the untestable verdict of claims about populations that did not train, and where
dse says so (status, summary, train)."""

import numpy as np
import pandas as pd
import pytest
from cli_helpers import ROOT, ok

from dse.analysis import health
from dse.method import claims
from dse.store.core import Store

LN10 = float(np.log(10))


def rows(losses, errors, classes=10, status="done"):
    return pd.DataFrame(dict(status=status, error=errors, train_loss=losses,
                             num_classes=classes))


def test_a_model_did_not_learn_when_its_loss_or_error_stays_near_chance():
    df = rows([0.9, 0.8 * LN10, 0.79 * LN10, 0.5, np.nan, np.nan],
              [30.0, 40.0, 40.0, 67.5, 67.4, 80.0])
    assert list(health.learned(df)) == [True, False, True, False, True, False]
    assert health.chance_error(10) == pytest.approx(90) and health.chance_loss(2) == \
        pytest.approx(np.log(2))
    h = health.health(df)
    assert (h.finished, h.untrained, h.sick) == (6, 3, True)
    assert h.text().startswith("3 of 6 models (50%) did not learn (median final training "
                               "loss 1.36, chance ln C = 2.30)")
    failed = rows([2.3], [np.nan], status="failed")  # not finished: counted elsewhere
    assert health.health(failed).finished == 0 and bool(health.learned(failed).iloc[0])


def test_the_committed_silu_half_did_not_train_and_its_claims_are_untestable():
    """findings-cpu's xc-choices: 21 of its 28 SiLU models did not learn under 2 epochs of
    6,000 images (median final loss 2.06 against ln 10 = 2.30), none of its 20 ReLU ones;
    the comparison of the activations is untestable, with the numbers."""
    df = Store(ROOT / "experiments" / "results" / "findings-cpu").load(["xc-choices"])
    silu, relu = (df[df["activation"] == a] for a in ("silu", "relu"))
    hs, hr = health.health(silu), health.health(relu)
    assert (hs.finished, hs.untrained, round(hs.median_loss, 2)) == (28, 21, 2.06)
    assert (hr.finished, hr.untrained, hr.sick) == (20, 0, False)
    c = claims.parse_claim("s better than r")
    v = claims.judge(c, {"s": (silu["error"].to_numpy(), None),
                         "r": (relu["error"].to_numpy(), None)}, {"s": silu, "r": relu})
    assert v.verdict == claims.UNTESTABLE
    assert "s: 21 of 28 models (75%) did not learn" in v.detail
    v = claims.judge(claims.parse_claim("r worse than r2"),
                     {"r": (relu["error"].to_numpy(), None),
                      "r2": (relu["error"].to_numpy(), None)}, {"r": relu, "r2": relu})
    assert v.verdict != claims.UNTESTABLE


def test_a_population_under_the_share_is_judged():
    """A quarter is the line: 7 of 28 untrained is untestable, 6 of 28 is judged."""
    rng = np.random.default_rng(0)
    for bad, verdict in ((7, claims.UNTESTABLE), (6, claims.HOLDS)):
        a = rows(np.r_[np.full(bad, 2.2), np.full(28 - bad, 0.9)], rng.normal(30, 1, 28))
        b = rows(np.full(28, 0.9), rng.normal(40, 1, 28))
        v = claims.judge(claims.parse_claim("a better than b"),
                         {"a": (a["error"].to_numpy(), None), "b": (b["error"].to_numpy(), None)},
                         {"a": a, "b": b})
        assert v.verdict == verdict, v.detail


def test_status_counts_the_models_that_did_not_learn(tmp_path):
    import shutil

    store = tmp_path / "s"
    shutil.copytree(ROOT / "experiments" / "results" / "findings-cpu", store)
    r = ok("status", "--store", store)
    table = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("xc")}
    assert table["xc-choices"][-1] == "21" and table["xc-b1"][-1] == "0"
    assert "xc-choices: 21 of 48 models (44%) did not learn" in r.stdout


@pytest.mark.slow
def test_train_warns_when_models_did_not_learn(tmp_path):
    """Two synthetic models trained with lr 1e-6 for one epoch on 200 images stay at chance:
    `dse train` ends with one warning naming the recipe's levers."""
    ok("sample", "--space", "rx", "--n", 2, "--dataset", "synthetic", "--flops", "1M:3M",
       "--store", tmp_path)
    r = ok("train", "--store", tmp_path, "--epochs", 1, "--train-subset", 200, "--lr", 1e-6)
    (line,) = [ln for ln in r.stderr.splitlines() if "did not learn" in ln]
    assert line.startswith("Warning: 2 of 2 models trained did not learn") and "--lr" in line
    assert "--warmup" in line and "--epochs" in line
