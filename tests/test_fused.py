"""Fused trials (dse.train.fused): K trainings of one architecture as one grouped network are
K independent trainings. Each copy starts bit for bit as its unfused model, draws its own
batches, follows its unfused run's losses step by step (float tolerance), keeps its gradients
to itself (another copy's data perturbed changes nothing), and diverges alone; the run loop
groups a run's trials and stores K ordinary results."""

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cli_helpers import killed_midway, ok

from dse.data import datasets, readers
from dse.data import device as data
from dse.errors import ArgumentError
from dse.runner.jobs import Job, fusion_groups
from dse.space.spec import AnyNetSpec
from dse.store import recipes as trials
from dse.store.core import Store
from dse.train import fused, fusion, trainer
from dse.train.models import build
from dse.train.recipe import Recipe

TINY = AnyNetSpec((1, 1, 2, 1), (8, 16, 32, 64), (1, 1, 1, 1), (8, 8, 8, 8), stem_w=16)
TINY_Y = replace(TINY, se_ratio=0.25)  # SE per copy too
SYN = datasets.task("synthetic")
R = Recipe(epochs=1, batch_size=50, train_subset=300)
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def syn():
    a = readers.synthetic()  # 300 training images, 300 test images: quick to train
    return data.DeviceData(replace(a, test_x=a.test_x[:300], test_y=a.test_y[:300]), "cpu",
                           train_subset=300)


@pytest.mark.parametrize("spec", [TINY, TINY_Y], ids=["x", "y"])
def test_each_copy_starts_bit_for_bit_as_its_unfused_model(spec):
    recipes = [replace(R, seed=s) for s in (3, 0, 7)]
    net = fused.build_fused(spec, SYN, recipes)
    for r, state in zip(recipes, fused.split(net)):
        torch.manual_seed(r.seed)
        alone = build(spec, SYN, r.zero_init_final_gamma).state_dict()
        assert state.keys() == alone.keys()
        for name, t in alone.items():
            assert torch.equal(state[name], t), name
    assert sum(p.numel() for p in net.parameters()) == 3 * sum(
        p.numel() for p in build(spec, SYN).parameters())


def test_each_copy_draws_its_own_batches(syn):
    recipes = [replace(R, seed=s) for s in (5, 1, 5)]
    got = list(fused.batches(syn, recipes, torch.float32, False)())
    for k, r in enumerate(recipes):
        gen = torch.Generator().manual_seed(r.seed)
        alone = list(syn.batches(r.batch_size, gen, r.augment))
        assert len(alone) == len(got)
        for (x, y), (xa, ya) in zip(got, alone):
            assert torch.equal(x[:, 3 * k: 3 * k + 3], xa) and torch.equal(y[:, k], ya)
    assert not torch.equal(got[0][0][:, :3], got[0][0][:, 3:6])  # seeds 5 and 1 differ


def _losses_per_step(stepper, batches, n):
    out, last = [], stepper.loss_sum.clone()
    for x, y in batches[:n]:
        stepper.advance(x, y)
        out.append(stepper.loss_sum - last)
        last = stepper.loss_sum.clone()
    return torch.stack(out)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(("per_copy", "channels_last"), [
    ("lr and wd", True),  # the CPU default layout, and the per-copy SGD step
    pytest.param("seeds", True, marks=SLOW), pytest.param("seeds", False, marks=SLOW),
    pytest.param("lr and wd", False, marks=SLOW)])
def test_fused_losses_follow_the_separate_runs_step_by_step(syn, per_copy, channels_last):
    recipes = [replace(R, seed=s) for s in (0, 1, 2)]
    if per_copy == "lr and wd":
        recipes = [replace(r, lr=lr, wd=wd) for r, lr, wd in
                   zip(recipes, (0.02, 0.2, 0.05), (1e-3, 0.0, 5e-5))]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    steps, n = syn.steps(R.batch_size), 6
    m = fused.FusedStepper(TINY_Y, SYN, recipes, syn.device, steps, False, False, fmt)
    got = _losses_per_step(m, list(fused.batches(syn, recipes, torch.float32,
                                                 channels_last)()), n)
    for k, r in enumerate(recipes):
        lrs = torch.tensor(trainer.lr_schedule(r, steps), dtype=torch.float32)
        alone = trainer.Stepper(TINY_Y, SYN, r, syn.device, lrs, False, False, fmt)
        gen = torch.Generator().manual_seed(r.seed)
        want = _losses_per_step(alone, list(syn.batches(r.batch_size, gen, r.augment,
                                                        torch.float32, channels_last)), n)
        torch.testing.assert_close(got[:, k], want, rtol=2e-4, atol=2e-5)
        assert len(set(got[:, k].tolist())) == n  # the loss moves: training happens
        for name, t in fused.split(m.model)[k].items():  # and the weights agree after it
            torch.testing.assert_close(t, alone.model.state_dict()[name], rtol=1e-3,
                                       atol=1e-4, msg=name)


def test_one_copys_gradients_ignore_another_copys_data(syn):
    recipes = [replace(R, seed=s) for s in (0, 1, 2)]
    x, y = next(iter(fused.batches(syn, recipes, torch.float32, True)()))

    def grads(x, y):
        net = fused.build_fused(TINY_Y, SYN, recipes).to(memory_format=torch.channels_last)
        logits = net(x).reshape(len(x), 3, -1)
        torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none") \
            .mean(0).sum().backward()
        return [p.grad for p in net.parameters()]

    before = grads(x, y)
    x2, y2 = x.clone(), y.clone()
    x2[:, 3:6] = torch.randn_like(x2[:, 3:6]) * 5  # copy 1 sees other images and labels
    y2[:, 1] = (y2[:, 1] + 3) % 10
    after = grads(x2, y2)
    for g0, g1 in zip(before, after):
        for k in (0, 2):
            assert torch.equal(fused.copy_of(g0, k, 3), fused.copy_of(g1, k, 3))
    assert not all(torch.equal(fused.copy_of(a, 1, 3), fused.copy_of(b, 1, 3))
                   for a, b in zip(before, after))


def test_a_diverging_copy_ends_alone_and_the_others_train_as_unfused(syn):
    recipes = [replace(R, epochs=2, seed=0), replace(R, epochs=2, seed=1, lr=1e6),
               replace(R, epochs=2, seed=2)]
    out = fused.train_fused(TINY, SYN, syn, recipes)
    assert [o.status for o in out] == ["done", "diverged", "done"]
    assert out[1].epochs_run == 1 and "train loss became" in out[1].message
    assert {o.fused for o in out} == {3}
    for k in (0, 2):
        alone = trainer.train(TINY, SYN, syn, recipes[k])
        assert out[k].history_loss == pytest.approx(alone.history_loss, rel=1e-3)
        assert abs(out[k].error - alone.error) <= 1.0  # a few near-ties may flip
        assert math.isfinite(out[k].train_loss)


def test_which_recipes_fuse():
    fusion.check([R, replace(R, seed=4, lr=0.3, wd=0.0)])
    with pytest.raises(ArgumentError, match="differ in more than seed, lr and wd"):
        fusion.check([R, replace(R, epochs=2)])
    assert fusion.width("off", "cpu") == 1 and fusion.width("on", "cuda") == fusion.FUSE_MAX
    assert fusion.width("auto", "cpu") == (fusion.FUSE_MAX if "cpu" in fusion.AUTO_ON else 1)
    with pytest.raises(ArgumentError, match="fuse"):
        fusion.width("sometimes", "cpu")


def test_the_run_groups_trials_of_one_architecture():
    other = replace(TINY, ws=(8, 16, 32, 72))
    ref = datasets.DataRef("synthetic", None, 32)

    def job(m, spec, seed, **kw):
        return Job("x", m, ref, spec, SYN, 1, replace(R, seed=seed, **kw), "fp")

    jobs = [job("a", TINY, s) for s in range(5)] + [job("b", other, 0), job("c", TINY, 9,
                                                                             lr=0.2)]
    groups = [[(j.model_id, j.recipe.seed) for j in g] for g in fusion_groups(jobs, 4)]
    # a's five seeds in fours; c, another id of a's architecture, joins a's second group
    assert groups == [[("a", 0), ("a", 1), ("a", 2), ("a", 3)], [("a", 4), ("c", 9)],
                      [("b", 0)]]
    assert [len(g) for g in fusion_groups(jobs, 1)] == [1] * 7
    epochs = [job("a", TINY, 0), job("a", TINY, 1, epochs=2)]  # shared settings differ
    assert [len(g) for g in fusion_groups(epochs, 8)] == [1, 1]


# fusion is off by default (--fuse auto fuses nowhere yet); the default tier checks fused
# steps against separate ones, the slow tier whole dse train runs
@pytest.mark.slow
def test_dse_train_seeds_fused_stores_ordinary_trials_like_unfused(tmp_path):
    runs = {}
    for fuse in ("on", "off"):
        root = tmp_path / fuse
        ok("sample", "--space", "rx", "--n", 1, "--dataset", "synthetic", "--flops",
           "0.5M:2M", "--store", root)
        ok("train", "--store", root, "--epochs", 1, "--train-subset", 100, "--batch-size",
           50, "--seeds", 3, "--fuse", fuse, "--jobs", 2 if fuse == "on" else 1)
        df = Store(root).read_results("regnetx").sort_values(["model_id", "seed"])
        runs[fuse] = df.reset_index(drop=True)
    on, off = runs["on"], runs["off"]
    assert len(on) == 3 and list(on["status"]) == ["done"] * 3
    assert list(on["fused"]) == [3] * 3 and off["fused"].isna().all()
    for col in ("model_id", "seed", "recipe", "epochs", "lr", "wd"):
        assert list(on[col]) == list(off[col])
    for a, b in zip(on["history_loss"], off["history_loss"]):
        assert a == pytest.approx(b, rel=1e-3)
    assert (on["error"] - off["error"]).abs().max() <= 1.0
    assert ok("train", "--store", tmp_path / "on", "--epochs", 1, "--train-subset", 100,
              "--batch-size", 50, "--seeds", 3, "--fuse", "on").output.count("done error") == 0


# ---- slow: a kill -9 inside a fused group; a population fused and unfused ------------------

@pytest.mark.slow
def test_kill_9_mid_fused_group_loses_only_its_trials(tmp_path):
    ok("sample", "--space", "rx", "--n", 2, "--dataset", "synthetic", "--flops", "0.5M:2M",
       "--store", tmp_path)
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "train", "--store",
           str(tmp_path), "--epochs", "2", "--train-subset", "1000", "--seeds", "3",
           "--fuse", "on"]
    results = Store(tmp_path).results_dir("regnetx")
    first = killed_midway(  # once the first group is stored, inside the second
        cmd, ENV, lambda: results.is_dir() and len(list(results.glob("*.parquet"))) >= 3,
        timeout=600, pause=1.0)
    before = {f.stem: f.read_bytes() for f in results.glob("*.parquet")}
    assert len(before) == 3, first  # the first model's three seeds; the second's in flight
    assert len({trials.parse_trial(t)[0] for t in before}) == 1
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    res = Store(tmp_path).read_results("regnetx")
    assert len(res) == 6 and sorted(res["seed"]) == [0, 0, 1, 1, 2, 2]
    assert list(res["fused"]) == [3] * 6
    assert r.stdout.count(" done error ") == 3  # only the killed group trained again
    for trial, raw in before.items():  # finished before the kill: kept as written
        old = pq.read_table(pa.BufferReader(raw)).to_pandas().iloc[0]
        m, _, seed = trials.parse_trial(trial)
        (new,) = res[(res["model_id"] == m) & (res["seed"] == seed)].itertuples()
        assert new.finished_at == old["finished_at"] and new.error == old["error"]
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))


@pytest.mark.slow
def test_a_population_fused_has_the_error_distribution_of_unfused(tmp_path):
    """6 models × 2 seeds, fused and unfused: the same errors trial by trial up to float
    noise, so the same distribution (two-sample KS far from rejecting)."""
    from scipy import stats as st

    errors = {}
    for fuse in ("on", "off"):
        root = tmp_path / fuse
        ok("sample", "--space", "rx", "--n", 6, "--dataset", "synthetic", "--flops",
           "0.5M:2M", "--store", root)
        ok("train", "--store", root, "--epochs", 1, "--train-subset", 1000, "--seeds", 2,
           "--fuse", fuse)
        df = Store(root).read_results("regnetx").sort_values(["model_id", "seed"])
        assert (df["status"] == "done").all() and len(df) == 12
        errors[fuse] = df["error"].to_numpy()
    diff = errors["on"] - errors["off"]
    assert np.abs(diff).max() <= 1.0 and abs(diff.mean()) <= 0.25
    assert st.ks_2samp(errors["on"], errors["off"]).pvalue > 0.5
    assert errors["on"].std() > 1.0  # the models differ: the comparison has something to see


# ---- CUDA: graph + bf16 (bench/device_check.sh runs these; unverified without a GPU) --------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
def test_fused_cuda_graph_bf16_matches_each_unfused_copy():
    d = data.DeviceData(readers.synthetic(), "cuda", train_subset=4096)
    recipes = [Recipe(epochs=3, seed=s) for s in range(4)]
    out = fused.train_fused(TINY_Y, SYN, d, recipes)
    assert all(o.cuda_graph and o.precision == "bf16-autocast" and o.fused == 4 for o in out)
    for o, r in zip(out, recipes):
        alone = trainer.train(TINY_Y, SYN, d, r)  # graph + bf16 too
        assert o.status == alone.status == "done"
        assert abs(o.error - alone.error) < 5          # as test_train's graph vs eager bounds
        assert abs(o.train_loss - alone.train_loss) < 0.3


@pytest.mark.gpu
@cuda
def test_fused_cuda_graph_copy_diverges_alone():
    d = data.DeviceData(readers.synthetic(), "cuda", train_subset=2048)
    recipes = [Recipe(epochs=2, seed=0), Recipe(epochs=2, seed=1, lr=1e6)]
    out = fused.train_fused(TINY, SYN, d, recipes)
    assert [o.status for o in out] == ["done", "diverged"] and out[0].cuda_graph
