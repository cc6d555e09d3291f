"""Spaces of the new blocks: the built-ins (DDS App. D, NDS Table 1), `extends` dropping what
a block lacks, the resolution and the stage count as dimensions, the store reading old
populations as X/ReLU, suggest's block/activation/b ≥ 1 candidates, and one-line errors."""

import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import ROOT, ok, one_error, reanalyzed, run

from dse.data import datasets
from dse.method import suggest
from dse.space import definition as spaces
from dse.space.complexity import complexity
from dse.space.sampling import Window, sample
from dse.space.spec import Task, from_row, model_id
from dse.store.core import Store
from dse.store.schema import ADDED_MODEL_COLUMNS

CIFAR10 = Task(32, "cifar", 3, 10)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_new_builtins_keep_anynetx_a_ranges_without_what_the_block_lacks():
    xa, r, v, vr = (spaces.load(n) for n in ("xa", "ar", "av", "avr"))
    assert r.blocks == ("r",) and list(r.params) == ["d", "w", "b"] and r.dof == 12
    assert v.blocks == ("v",) and list(v.params) == ["d", "w"] and v.dof == 8
    assert vr.blocks == ("vr",) and list(vr.params) == ["d", "w"]
    for s in (r, v, vr):
        assert all(np.array_equal(s.params[k].values, xa.params[k].values) for k in s.params)
    assert 10 ** r.log10_size == pytest.approx((16 * 128 * 3) ** 4)


def test_nds_spaces_have_table_1_sizes():
    # NDS Table 1: Vanilla and ResNet (9·12)^3, ResNeXt-A (5·5·3·3)^3, ResNeXt-B (5·5·3·5)^3
    for name, size, block in [("nds-vanilla", (9 * 12) ** 3, "plain"),
                              ("nds-resnet", (9 * 12) ** 3, "basic"),
                              ("nds-resnext-a", (5 * 5 * 3 * 3) ** 3, "x"),
                              ("nds-resnext-b", (5 * 5 * 3 * 5) ** 3, "x")]:
        s = spaces.load(name)
        assert 10 ** s.log10_size == pytest.approx(size), name
        assert (s.stages, s.stem_w, s.first_stride, s.blocks) == (3, 16, 1, (block,))


def test_nds_resnext_counts_groups():
    rows = sample(spaces.load("nds-resnext-b"), 60, CIFAR10, Window(None, 400e6), seed=0)
    for r in rows:
        groups = [round(w / b) // g for w, b, g in zip(r["ws"], r["bs"], r["gs"])]
        assert set(groups) <= {1, 2, 4, 8, 16} and set(r["ws"]) <= {64, 128, 256, 512, 1024}
        spec, task = from_row({**r, "stem": "cifar", "in_channels": 3, "num_classes": 10})
        assert complexity(spec, task)["flops"] == r["flops"] and spec.first_stride == 1


def test_regnet_forms_and_refinements_follow_by_extends(tmp_path):
    path = _write(tmp_path, "regnetr.yaml", "extends: anynetr\nname: regnetr\nkind: regnet\n"
                  "params: {d: {dist: uniform, low: 12, high: 28, q: 1}, w0: 24, "
                  "wa: {dist: log_uniform, low: 8, high: 256, q: 0.1}, "
                  "wm: {dist: log_uniform, low: 2, high: 3, q: 0.001}, b: [1, 2, 4]}\n")
    s = spaces.load(path)
    assert s.kind == "regnet" and s.blocks == ("r",) and "g" not in s.params
    rows = sample(s, 20, CIFAR10, Window(None, 200e6), seed=1)
    assert {r["block"] for r in rows} == {"r"} and all(r["group_w"] is None for r in rows)
    ve = _write(tmp_path, "ve.yaml", "extends: anynetv\nname: anynetve\n"
                "non_decreasing: [w, d]\n")
    assert spaces.load(ve).non_decreasing == ("w", "d")
    xc_v = _write(tmp_path, "xcv.yaml", "extends: anynetxc\nname: xcv\nblock: v\n")
    assert spaces.load(xc_v).shared == ()  # shared b and g went with the block


def test_resolution_is_a_dimension_counted_at_each_models_own_side(tmp_path):
    path = _write(tmp_path, "res.yaml", "extends: anynetxe\nname: xe-res\n"
                  "resolution: {dist: choice, values: [20, 24, 28]}\n")
    s = spaces.load(path)
    task = datasets.task("fashion-mnist")
    rows = sample(s, 60, task, Window(1e6, 5e6), seed=0)
    assert {r["resolution"] for r in rows} == {20, 24, 28}
    assert {r["data_resolution"] for r in rows} == {28}
    for r in rows:
        spec, t = from_row({**r, "stem": task.stem, "in_channels": 1, "num_classes": 10})
        assert t.resolution == r["resolution"]
        assert complexity(spec, t)["flops"] == r["flops"]
        assert r["model_id"] == model_id(spec, t)
    assert s.dof == spaces.load("xe").dof + 1
    assert s.log10_size == pytest.approx(spaces.load("xe").log10_size + math.log10(3))


def test_a_regnet_may_have_a_range_of_stage_counts(tmp_path):
    path = _write(tmp_path, "r35.yaml", "extends: regnetx\nname: rx35\nstages: [3, 5]\n")
    rows = sample(spaces.load(path), 200, Task(), Window(200e6, 800e6), seed=0)
    counts = {len(r["ds"]) for r in rows}
    assert counts == {3, 4, 5}
    assert all(len(r[k]) == len(r["ds"]) and min(r["ds"]) > 0 for r in rows
               for k in ("ws", "bs", "gs"))
    for r in rows[:40]:
        assert complexity(from_row({**r, **{"resolution": 224, "stem": "imagenet",
                                            "in_channels": 3, "num_classes": 1000}})[0],
                          Task())["params"] == r["params"]


def test_blocks_and_activations_drawn_equally_likely(tmp_path):
    path = _write(tmp_path, "mix.yaml", "extends: anynetxa\nname: mix\nblock: [x, r, v]\n"
                  "activation: [relu, silu]\n")
    s = spaces.load(path)
    assert list(s.params) == ["d", "w", "b", "g"] and s.dof == 16 + 2
    rows = pd.DataFrame(sample(s, 600, CIFAR10, seed=0))  # no window: the draw itself
    share = rows["block"].value_counts(normalize=True)
    assert set(share.index) == {"x", "r", "v"} and abs(share - 1 / 3).max() < 0.06
    assert set(rows["activation"]) == {"relu", "silu"}
    v = rows[rows["block"] == "v"]
    assert all(set(b) == {1} for b in v["bs"]) and all(list(g) == list(w) for g, w in
                                                       zip(v["gs"], v["ws"]))


@pytest.mark.parametrize("text,msg", [
    ("extends: anynetxa\nname: x\nparams: {b: 0}\n", "params.b must take positive values"),
    ("extends: anynetxa\nname: x\nblock: q\n", "unknown block 'q'; allowed: x, r, v, vr"),
    ("extends: anynetr\nname: x\nparams: {g: 4}\n", "params.g does not apply to r blocks"),
    ("extends: anynetv\nname: x\nparams: {b: 2}\n", "params.b does not apply to v blocks"),
    ("extends: regnetx\nname: x\nstages: [5, 3]\n", r"'stages' range \[5, 3\] is empty"),
    ("extends: regnetx\nname: x\nstages: []\n", "'stages' range must be"),
    ("extends: anynetxa\nname: x\nstages: [3, 4]\n", "regnet spaces only"),
    ("extends: anynetv\nname: x\nse_ratio: 0.25\n", "se_ratio does not apply to v"),
    ("extends: anynetxa\nname: x\nactivation: tanh\n", "unknown activation 'tanh'"),
    ("extends: anynetxa\nname: x\nfirst_stride: 3\n", "'first_stride' must be one of 1, 2"),
    ("extends: nds-resnext-a\nname: x\nparams: {g: 4}\n", "not both"),
])
def test_space_errors_are_one_line(tmp_path, text, msg):
    path = _write(tmp_path, "bad.yaml", text)
    err = one_error(run("sample", "--space", path, "--n", "2", "--store", tmp_path / "s"))
    assert re.search(msg, err), err


def test_a_resolution_above_the_datas_is_one_line(tmp_path):
    path = _write(tmp_path, "big.yaml", "extends: anynetxe\nname: big\n"
                  "resolution: [24, 32]\n")
    err = one_error(run("sample", "--space", path, "--n", "2", "--dataset", "fashion-mnist",
                        "--store", tmp_path / "s"))
    assert "resolutions up to 32 px, above the 28×28 images" in err


def test_old_stores_read_as_x_relu_stride_2_at_their_resolution(tmp_path):
    store = Store(tmp_path)
    ok("sample", "--space", "xa", "--n", "4", "--dataset", "synthetic", "--flops", "1M:50M",
       "--store", tmp_path)
    path = store.models_path("anynetxa")
    table = pq.read_table(path)
    old = table.drop_columns(list(ADDED_MODEL_COLUMNS))  # as written before block types
    old = old.set_column(old.schema.get_field_index("bs"), "bs",
                         old.column("bs").cast(pa.list_(pa.int64())))
    pq.write_table(old, path)
    df = store.read_models("anynetxa")
    assert (df["block"] == "x").all() and (df["activation"] == "relu").all()
    assert (df["first_stride"] == 2).all() and (df["data_resolution"] == 32).all()
    spec, task = from_row(df.iloc[0])
    assert spec.block == "x" and model_id(spec, task) == df["model_id"].iloc[0]
    ok("sample", "--space", "xa", "--n", "3", "--dataset", "synthetic", "--flops", "1M:50M",
       "--store", tmp_path)  # appending to the old table keeps it one population
    assert len(store.read_models("anynetxa")) == 7


def _pop(space, n, rule, seed=0):
    pop = pd.DataFrame(sample(space, n, CIFAR10, Window(1e6, 50e6), seed=seed))
    pop["space"], pop["kind"] = space.name, space.kind
    pop["error"] = 20 + rule(pop) + np.random.default_rng(seed + 7).normal(size=n)
    return pop


def test_suggest_fixes_a_planted_block_and_finds_nothing_in_noise(tmp_path):
    s = spaces.load(_write(tmp_path, "mix.yaml", "extends: anynetxb\nname: mix\n"
                           "block: [x, r]\nactivation: [relu, silu]\n"
                           "params: {b: [0.25, 0.5, 1, 2]}\n"))
    out = suggest.suggest(s, _pop(s, 200, lambda df: 3.0 * (df["block"] == "r")))
    first = out.candidates[0]
    assert first.constraint == {"block": "x"} and first.significant
    whats = [c.what for c in out.candidates]
    assert "fix activation = silu" in whats and "keep b ≥ 1 (no inverted bottleneck)" in whats
    noise = suggest.suggest(s, _pop(s, 200, lambda df: 0.0 * df["flops"], seed=1), seed=1)
    assert not any(c.significant for c in noise.candidates)
    inverted = suggest.suggest(s, _pop(s, 200, lambda df: 3.0 * df["bs"].map(
        lambda b: b[0] < 1), seed=2), seed=2).candidates[0]
    assert inverted.constraint == {"params": {"b": {"dist": "choice", "values": [1, 2]}}}
    assert spaces.derive(s, inverted.constraint).params["b"].values.tolist() == [1, 2]


def test_experiment_files_take_block_spaces_by_path(tmp_path):
    _write(tmp_path, "r_silu.yaml", "extends: anynetr\nname: r-silu\nactivation: silu\n"
           "params: {b: {dist: power2, low: 0.25, high: 4}}\n")
    _write(tmp_path, "v_res.yaml", "extends: anynetv\nname: v-res\nresolution: [16, 24]\n")
    exp = _write(tmp_path, "exp.yaml", "name: t\ndataset: synthetic\nn: 4\n"
                 "spaces: [r_silu.yaml, v_res.yaml, nds-resnet]\nflops: 1M:20M\n"
                 "train: {epochs: 1, train_subset: 256, device: cpu}\n"
                 "expect: [r-silu better than v-res, v-res good resolution contains 24]\n")
    store = Store(tmp_path / "s")
    ok("run", exp, "--store", store, "--only", "sample")
    df = store.load()
    assert sorted(store.spaces()) == ["nds-resnet", "r-silu", "v-res"] and len(df) == 12
    assert set(df.loc[df["space"] == "r-silu", "activation"]) == {"silu"}
    assert set(df.loc[df["space"] == "v-res", "resolution"]) <= {16, 24}
    assert set(df.loc[df["space"] == "nds-resnet", "first_stride"]) == {1}
    plan = ok("run", exp, "--store", store, "--dry-run").output
    assert "in all: 0 to sample, 12 to train" in plan


@pytest.mark.parametrize("shift, lo, hi", [(0.0, 0.0, 0.08), (1.0, 0.85, 1.0)])
def test_fixing_a_block_rejects_at_alpha_under_the_null_and_finds_1_sd(shift, lo, hi):
    # 100 models, half x and half r; r's errors shifted by `shift` SD. The exact test of
    # "fix block = x" (is x over-represented among the best 25%?) at α = 0.05 rejects about
    # 5% of null populations (4.5% in 400 simulated) and finds a 1 SD shift 95% of the time.
    rng = np.random.default_rng(1)
    rejected = []
    for _ in range(200):
        x = rng.integers(0, 2, 100).astype(float)
        e = rng.normal(size=100) + shift * (x == 0)
        rejected.append(suggest._evidence(x, e, 0.25, rng, {})["p"] < 0.05)
    assert lo <= np.mean(rejected) <= hi


def test_the_committed_blocks_run_gives_the_numbers_of_its_doc(tmp_path):
    """docs/reproduction.md's X-against-R section reads experiments/results/blocks-cpu."""
    out = reanalyzed(tmp_path, "blocks-cpu")
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    for c in out["claims"]:
        assert f"| {c['claim']} | **{c['verdict']}** |" in doc, c
    for s in out["spaces"]:
        row = f"| {s['space']} | 24 | {s['min']:.2f} | {s['median']:.2f} | {s['mean']:.2f} |"
        assert s["finished"] == 24 and row in doc, row
    df = Store(tmp_path / "blocks-cpu").load()
    assert set(df["block"]) == {"x", "r"} and (df["status"] == "done").all()
