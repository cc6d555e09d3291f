"""Training the new blocks on the CPU: one step of every block type and of SiLU, data resized
on the device for a model drawn at a smaller resolution, and `dse sample` + `dse train` of
two models of every new built-in space on synthetic data."""

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import ok

from dse.data import datasets, readers
from dse.data import device as data
from dse.data.datasets import Arrays
from dse.space import blocks
from dse.space.spec import Task, parse_spec
from dse.store.core import Store
from dse.train import trainer as train
from dse.train.models import Block, build

SMALL = Task(16, "cifar", 3, 10)


@pytest.fixture(scope="module")
def syn():
    """64 training and 64 test images of the synthetic set, shrunk to 16×16 (fast steps)."""
    a = readers.synthetic()
    shrink = lambda x: x[:64, :, ::2, ::2].copy()  # noqa: E731
    return data.DeviceData(Arrays("synthetic", shrink(a.train_x), a.train_y[:64],
                                  shrink(a.test_x), a.test_y[:64], "synthetic, 16 px"), "cpu")


def _spec(block, activation):
    bt = blocks.get(block)
    obj = dict(kind="anynet", ds=[1, 2], ws=[16, 32], block=block, activation=activation,
               stem_w=8, first_stride=2)
    obj.update({"bs": [0.5, 2]} if bt.bottleneck else {})
    obj.update({"gs": [4, 8]} if bt.groups else {})
    return parse_spec(obj)[0]


@pytest.mark.parametrize("activation", blocks.ACTIVATIONS)
@pytest.mark.parametrize("block", list(blocks.BLOCKS))
def test_one_step_of_every_block_and_activation(syn, block, activation):
    spec = _spec(block, activation)
    out = train.train(spec, SMALL, syn, train.Recipe(epochs=1, batch_size=64, lr=0.1))
    assert out.status == "done" and out.steps == 1 and np.isfinite(out.train_loss)
    assert 0 <= out.error <= 100
    model = build(spec, SMALL, zero_init_final_gamma=True)
    residual = blocks.get(block).residual
    finals = [m.final_bn for m in model.modules() if isinstance(m, Block)]
    assert all((f is not None) == residual for f in finals)
    if residual:  # each residual block starts as the identity (γ = 0 on its final BN)
        assert all(not f.weight.detach().any() for f in finals)


def test_resized_copies_are_made_once_per_side_and_keep_the_images():
    rng = np.random.default_rng(0)
    x = np.repeat(rng.integers(0, 256, (40, 1, 1, 1), dtype=np.uint8), 28, 2).repeat(28, 3)
    arrays = Arrays("fashion-mnist", x, np.arange(40) % 10, x[:10], np.arange(10),
                    "constant images")
    d = data.DeviceData(arrays, "cpu")
    small = d.resized(20)
    assert small is d.resized(20) and d.resized(28) is d
    assert small.image_shape == (1, 20, 20) and small.train_y is d.train_y
    assert torch.equal(small.train_x[:, 0, 0, 0], d.train_x[:, 0, 0, 0])  # flat stays flat
    assert (small.train_x == small.train_x[:, :, :1, :1]).all()
    assert (small.pad, small.flip) == datasets.get("fashion-mnist").augmentation(20)
    assert data.at_resolution(d, 20) is small
    with pytest.raises(Exception, match="28×28; a space samples resolutions up to"):
        d.resized(32)


def test_a_smaller_model_trains_on_resized_data(syn):
    spec = _spec("basic", "relu")
    out = train.train(spec, Task(12, "cifar", 3, 10), syn, train.Recipe(epochs=1,
                                                                         batch_size=32))
    assert out.status == "done" and out.steps == 2
    assert syn.resized(12).image_shape == (3, 12, 12)


NEW = ["anynetr", "anynetv", "anynetvr", "nds-vanilla", "nds-resnet", "nds-resnext-a",
       "nds-resnext-b"]


@pytest.mark.slow  # 14 models, each evaluated on the 2,000 synthetic test images: ~1 min
def test_two_models_of_every_new_space_train_one_epoch(tmp_path):
    for name in NEW:
        ok("sample", "--space", name, "--n", "2", "--dataset", "synthetic", "--flops",
           "1M:8M", "--store", tmp_path)
    r = ok("train", "--store", tmp_path, "--epochs", "1", "--train-subset", "128",
           "--batch-size", "64")
    assert f"trained {2 * len(NEW)} of {2 * len(NEW)} pending models" in r.output
    df = Store(tmp_path).load()
    assert len(df) == 14 and (df["status"] == "done").all(), df[["space", "message"]]
    assert set(df["block"]) == {"r", "v", "vr", "plain", "basic", "x"}
    assert (df.groupby("space")["error"].count() == 2).all()
    assert pd.api.types.is_float_dtype(df["error"])
