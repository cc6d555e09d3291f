"""pycls's training recipe in dse's trainer, each piece against a direct computation: label
smoothing and mixup against torch's cross-entropy and a hand-mixed batch, the weight EMA's
arithmetic over a few steps, the lr policies against pycls's formulas, BN's own weight decay
against torch's SGD with pycls's parameter groups; the fingerprints of every recipe written
before stay what they were; one short real training with all of it on records the EMA
series, which analyses read as pycls's own metric."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import one_error, sampled
from click.testing import CliRunner
from scipy import stats

from dse.cli import cli
from dse.errors import ArgumentError
from dse.runner.options import TrainOptions
from dse.runner.pending import jobs_of
from dse.space.spec import AnyNetSpec, Task
from dse.store.core import Store
from dse.store.recipes import Pick, choose, fingerprint, matches, parse_recipe
from dse.train import step
from dse.train.models import build
from dse.train.recipe import Recipe, ema_schedule, lr_schedule

TINY = AnyNetSpec((1, 1), (8, 16), (1, 1), (8, 8), stem_w=8)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ---- the loss --------------------------------------------------------------------------------

def _pycls_targets(y, n, eps):
    """pycls's smooth_one_hot_labels: ε / n everywhere, 1 − ε + ε / n at the label."""
    t = torch.full((len(y), n), eps / n)
    t[torch.arange(len(y)), y] = 1 - eps + eps / n
    return t


def _soft_ce(logits, targets):
    """pycls's SoftCrossEntropyLoss: −Σ t·log softmax / batch."""
    return -(targets * F.log_softmax(logits, -1)).sum() / len(logits)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_is_torchs_and_pycls_targets(eps):
    torch.manual_seed(0)
    x, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    model = torch.nn.Identity()
    got = step.loss_of(model, x, y, Recipe(label_smoothing=eps))
    torch.testing.assert_close(got, F.cross_entropy(x, y, label_smoothing=eps))
    torch.testing.assert_close(got, _soft_ce(x, _pycls_targets(y, 10, eps)))


def test_mixup_mixes_inputs_and_smoothed_targets_as_pycls():
    torch.manual_seed(1)
    x, y = torch.randn(12, 3, 4, 4), torch.randint(0, 5, (12,))
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5))
    lam, perm = torch.tensor(0.3), torch.randperm(12)
    got = step.loss_of(lin, x, y, Recipe(label_smoothing=0.1, mixup_alpha=0.5), (lam, perm))
    mixed = 0.3 * x + 0.7 * x[perm]
    t = _pycls_targets(y, 5, 0.1)
    want = _soft_ce(lin(mixed), 0.3 * t + 0.7 * t[perm])
    torch.testing.assert_close(got, want)


def test_mixup_lambdas_follow_beta_and_the_seed():
    r = Recipe(epochs=4, mixup_alpha=0.5, seed=3)
    lams = step.mixup_lams(r, 1000)
    assert len(lams) == 4000 and np.array_equal(lams, step.mixup_lams(r, 1000))
    assert stats.kstest(lams, stats.beta(0.5, 0.5).cdf).pvalue > 0.01
    assert not np.array_equal(lams, step.mixup_lams(Recipe(epochs=4, mixup_alpha=0.5), 1000))


# ---- the weight EMA ----------------------------------------------------------------------------

def test_ema_schedule_is_pycls_update_model_ema():
    # pycls: every EMA_UPDATE_PERIOD-th iteration of an epoch, alpha = min(1, EMA_ALPHA ·
    # BATCH_SIZE / MAX_EPOCH · period), a copy (alpha 1) while cur_epoch < WARMUP_EPOCHS
    r = Recipe(epochs=50, batch_size=1024, ema_alpha=0.00025, ema_period=32,
               warmup_epochs=5, lr=1.0)
    a = ema_schedule(r, 48)  # CIFAR-10: 48 steps of 1024
    assert len(a) == 50 * 48
    adj = 0.00025 * 1024 / 50 * 32
    for t in range(len(a)):
        epoch, it = divmod(t, 48)
        want = 0.0 if it % 32 else 1.0 if epoch < 5 else adj
        assert a[t] == pytest.approx(want), t
    assert adj == pytest.approx(0.16384)
    assert ema_schedule(Recipe(epochs=1, batch_size=4096, ema_alpha=0.1), 3)[0] == 1.0


def test_ema_update_is_the_hand_computation_over_steps():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    weights = torch.tensor([1.0, 0.0, 0.25, 0.5])
    ema = step.WeightEMA(model, weights)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    want = {k: v.clone() for k, v in state.items()}
    torch.manual_seed(2)
    for t in range(4):
        with torch.no_grad():  # the model moves: parameters and BN statistics
            for v in model.state_dict().values():
                if v.is_floating_point():
                    v.add_(torch.randn_like(v))
        ema.update(torch.tensor([t]))
        a = float(weights[t])
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                want[k] = want[k] * (1 - a) + v * a
    got = ema.model.state_dict()
    for k, v in want.items():
        if v.is_floating_point():
            torch.testing.assert_close(got[k], v)
    assert got["1.running_mean"].abs().sum() > 0  # BN statistics are averaged too


# ---- the optimizer: BN weight decay, lr policies -------------------------------------------

def test_bn_parameters_get_their_own_weight_decay_as_pycls_groups():
    torch.manual_seed(0)
    m = build(TINY, Task(resolution=32, stem="cifar", num_classes=10))
    r = Recipe(wd=5e-4, bn_wd=0.0)
    (rest, wd), (bn, bn_wd) = step.decay_groups(m, r)
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(".bn." in names[id(p)] or names[id(p)].endswith("bn.weight")
               or names[id(p)].endswith("bn.bias") for p in bn)
    assert not any("bn" in names[id(p)] for p in rest)  # pycls's split: "bn" in the name
    assert len(bn) + len(rest) == len(list(m.parameters())) and (wd, bn_wd) == (5e-4, 0.0)
    ref = [p.detach().clone().requires_grad_() for p in m.parameters()]
    ids = [id(p) for p in m.parameters()]
    bn_ids = {id(p) for p in bn}
    opt = torch.optim.SGD([{"params": [q for q, i in zip(ref, ids) if i in bn_ids],
                            "weight_decay": 0.0},
                           {"params": [q for q, i in zip(ref, ids) if i not in bn_ids],
                            "weight_decay": 5e-4}], lr=0.1, momentum=0.9, nesterov=True)
    bufs = {id(p): torch.zeros_like(p) for p in m.parameters()}
    for _ in range(3):
        grads = [torch.randn_like(p) for p in m.parameters()]
        for q, g in zip(ref, grads):
            q.grad = g.clone()
        opt.step()
        by_id = dict(zip(ids, grads))
        for ps, w in ((rest, wd), (bn, bn_wd)):
            step.sgd_step_(ps, [by_id[id(p)].clone() for p in ps], [bufs[id(p)] for p in ps],
                           torch.tensor(0.1), 0.9, w, True)
    for p, q in zip(m.parameters(), ref):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
    assert len(step.decay_groups(m, Recipe())) == 1  # bn_wd unset: one group, wd for all


def _pycls_lr(r: Recipe, e: float) -> float:
    """pycls's get_epoch_lr at (fractional) epoch e: the policy × BASE_LR, then the warm-up
    factor WARMUP_FACTOR·(1 − e / W) + e / W below W."""
    if r.lr_policy == "cos":
        f = (1 - r.min_lr) * 0.5 * (1 + math.cos(math.pi * e / r.epochs)) + r.min_lr
    elif r.lr_policy == "lin":
        f = (1 - r.min_lr) * (1 - e / r.epochs) + r.min_lr
    else:
        f = r.lr_mult ** [i for i, s in enumerate(r.lr_steps) if e >= s][-1]
    return f * r.lr


@pytest.mark.parametrize("recipe", [
    Recipe(epochs=50, lr=1.0),
    Recipe(epochs=50, lr=1.0, min_lr=0.01),
    Recipe(epochs=20, lr=0.4, lr_policy="lin", min_lr=0.05),
    Recipe(epochs=90, lr=0.1, lr_policy="steps", lr_steps=(0, 30, 60, 80), lr_mult=0.1),
])
def test_lr_policies_are_pycls_formulas_at_each_epoch(recipe):
    s = 7
    lr = lr_schedule(recipe, s)
    for e in sorted({e for e in (0, 1, 13, 29, 30, 45) if e < recipe.epochs} | {recipe.epochs - 1}):
        assert lr[e * s] == pytest.approx(_pycls_lr(recipe, e), rel=1e-12), e
        # between epoch starts: the same formula at the fractional epoch
        assert lr[e * s + 3] == pytest.approx(_pycls_lr(recipe, e + 3 / s), rel=1e-12)


def test_warmup_factor_ramps_from_lr_times_factor():
    r = Recipe(epochs=50, lr=1.0, warmup_epochs=5, warmup_factor=0.1)
    s = 4
    lr = lr_schedule(r, s)
    for t in (0, 5, 19):  # pycls's factor f·(1 − α) + α with α the steps done / warm-up steps
        alpha = (t + 1) / (5 * s)
        assert lr[t] == pytest.approx(_pycls_lr(r, t / s) * (0.1 * (1 - alpha) + alpha))
    assert lr[20] == pytest.approx(_pycls_lr(r, 5))
    assert lr[0] == pytest.approx(1.0 * (0.1 * (1 - 1 / 20) + 1 / 20))  # lr · 0.145


def test_recipe_checks_the_new_settings():
    for kw, says in [(dict(label_smoothing=1.0), "label_smoothing"),
                     (dict(lr_policy="exp"), "'exp' is unknown; allowed: cos, lin, steps"),
                     (dict(lr_policy="steps", lr_steps=(10, 20)), "increasing epochs from 0"),
                     (dict(lr_steps=(0, 10)), "apply to lr_policy steps only"),
                     (dict(ema_period=0), "ema_period"), (dict(bn_wd=-1.0), "bn_wd"),
                     (dict(warmup_factor=2.0), "warmup_factor")]:
        with pytest.raises(ArgumentError) as e:
            Recipe(**kw)
        assert says in str(e.value), kw


# ---- fingerprints ----------------------------------------------------------------------------

def test_fingerprints_of_every_earlier_recipe_are_unchanged():
    # computed by dse before pycls's recipe existed (main at fc25cbe)
    assert fingerprint(Recipe().asdict()) == "af68dabe76"
    assert fingerprint(Recipe(epochs=2, lr=0.1, warmup_epochs=1.0, train_subset=600,
                              zero_init_final_gamma=False).asdict()) == "27dc38b68f"
    assert fingerprint({"epochs": 10, "batch_size": 128, "lr": 0.05, "wd": 5e-5}) == \
        "af68dabe76"  # an old result row: the new columns absent
    row = {**Recipe().asdict(), "label_smoothing": None, "lr_steps": None, "series": None,
           "ema_period": float("nan"), "bn_wd": None, "lr_policy": None}
    assert fingerprint(row) == "af68dabe76"  # ... or null, as an old file reads back
    assert fingerprint({**Recipe().asdict(), "lr": {"dist": "log_uniform", "low": 0.01,
                                                    "high": 1.0}}) == "3b1bdc7b3f"
    # each setting at its default keeps it; any other value makes a new recipe
    for kw in (dict(label_smoothing=0.1), dict(mixup_alpha=0.5), dict(ema_alpha=1e-5),
               dict(bn_wd=0.0), dict(warmup_factor=0.1), dict(lr_policy="lin"),
               dict(min_lr=0.01), dict(lr_policy="steps", lr_steps=(0, 3))):
        assert fingerprint(Recipe(**kw).asdict()) != "af68dabe76", kw
    assert fingerprint({**Recipe().asdict(), "series": "ema"}) != "af68dabe76"
    assert fingerprint({**Recipe().asdict(), "series": "test", "bn_wd": None}) == "af68dabe76"


def test_recipe_text_names_the_new_settings():
    got = parse_recipe("label_smoothing=0.1,lr_policy=steps,lr_steps=0:30:60,bn_wd=0,"
                       "series=ema,ema_period=16")
    assert got == dict(label_smoothing=0.1, lr_policy="steps", lr_steps=(0.0, 30.0, 60.0),
                       bn_wd=0.0, series="ema", ema_period=16)
    assert matches({"series": "ema", "lr_steps": np.array([0.0, 30.0])},
                   {"series": "ema", "lr_steps": (0, 30)})
    assert matches({"series": None}, {"series": "test"})


# ---- a real training with all of it ------------------------------------------------------------

PYCLS = ("label_smoothing=0.1,mixup_alpha=0.5,ema_alpha=0.01,ema_period=4,bn_wd=0,"
         "warmup_factor=0.1,lr_policy=lin,min_lr=0.01")


@pytest.mark.slow
def test_training_with_pyclss_recipe_records_the_ema_series(tmp_path):
    models = sampled(tmp_path, 2, "rx", "synthetic", "0.5M:2M", 0)
    args = ("--epochs", 2, "--warmup", 1, "--train-subset", 300, "--batch-size", 100,
            "--recipe", PYCLS)
    r = invoke("train", "--store", tmp_path, "--max-models", 1, *args)
    assert r.exit_code == 0, r.output
    res = pd.read_parquet(tmp_path / "regnetx" / "results")
    assert len(res) == 2 and res["model_id"].nunique() == 1
    assert set(res["model_id"]) < set(models["model_id"])
    own, ema = res[res["series"] == "test"].iloc[0], res[res["series"] == "ema"].iloc[0]
    assert own.recipe != ema.recipe and (res["status"] == "done").all()
    assert len(ema.history_error) == 2 and ema.error == ema.history_error[-1]
    assert ema.error != own.error or list(ema.history_error) != [own.error] * 2
    assert (own.label_smoothing, own.mixup_alpha, own.ema_alpha, own.ema_period, own.bn_wd,
            own.warmup_factor, own.lr_policy, own.min_lr) == \
        (0.1, 0.5, 0.01, 4, 0.0, 0.1, "lin", 0.01)
    # the trial is done: only the other model is pending under this recipe
    recipe = Recipe(epochs=2, warmup_epochs=1.0, train_subset=300, batch_size=100,
                    **parse_recipe(PYCLS))
    left = jobs_of(Store(tmp_path), "regnetx", options=TrainOptions(recipe=recipe))
    assert [j.model_id for j in left] == sorted(set(models["model_id"]) - {own.model_id})
    assert left[0].fingerprint == own.recipe
    # analyses: the model's own series by default, the EMA's with --recipe series=ema, and
    # its best epoch as pycls's own metric (min over epochs of the EMA error)
    s = Store(tmp_path)
    mine = s.load(["regnetx"]).dropna(subset=["error"])
    assert list(mine["error"]) == [own.error]
    best = s.load(["regnetx"], pick=Pick(recipe={"series": "ema"}, epoch="best"))
    assert best.dropna(subset=["error"])["error"].tolist() == [min(ema.history_error)]
    named = s.load(["regnetx"], pick=Pick(recipe={"epochs": 2, "label_smoothing": 0.1}))
    assert named.dropna(subset=["error"])["error"].tolist() == [own.error]  # not the EMA's
    out = invoke("edf", "compare", "regnetx", "--store", tmp_path, "--recipe", "series=ema",
                 "--epoch", "best", "--json")
    assert out.exit_code == 0, out.output


def test_train_recipe_errors_are_one_line(tmp_path):
    sampled(tmp_path, 1, "rx", "synthetic", "0.5M:2M", 0)
    assert "--recipe 'foo=1'" in one_error(invoke("train", "--store", tmp_path, "--recipe",
                                                  "foo=1"))
    assert "--recipe series" in one_error(invoke("train", "--store", tmp_path, "--recipe",
                                                 "series=ema"))
    assert "--recipe lr_steps must be increasing epochs from 0" in one_error(invoke(
        "train", "--store", tmp_path, "--recipe", "lr_policy=steps,lr_steps=5:10"))
    assert not list(tmp_path.glob("*/results/*"))


def test_a_recipe_named_by_shared_settings_is_the_models_own_series():
    rows = pd.DataFrame([dict(model_id="m", seed=0, recipe="aaa", epochs=2, series="test",
                              status="done", error=10.0),
                         dict(model_id="m", seed=0, recipe="bbb", epochs=2, series="ema",
                              status="done", error=9.0)])
    assert choose(rows, Pick(recipe={"epochs": 2})) == "aaa"
    assert choose(rows, Pick(recipe={"epochs": 2, "series": "ema"})) == "bbb"
    assert choose(rows, Pick()) == "aaa"  # as many results: the model's own first


def test_the_stores_defaults_of_the_optional_settings_are_the_recipes():
    """dse.store.recipes keeps the optional settings' defaults (it may not import dse.train):
    they must be Recipe's, or a recipe at its defaults would get a new fingerprint."""
    from dataclasses import fields

    from dse.store.recipes import OPTIONAL_DEFAULTS, RECIPE_DEFAULTS
    from dse.train.recipe import Recipe

    defaults = {f.name: f.default for f in fields(Recipe)}
    for key, value in {**RECIPE_DEFAULTS, **OPTIONAL_DEFAULTS}.items():
        if key != "series":  # which model's error a result holds: not a training setting
            assert defaults[key] == value, key
