"""Several models on one GPU in one process, one CUDA stream and graph each (dse.train.multistream):
the switch and its refusals run everywhere; the training itself needs a GPU."""

import pytest
import torch
from click.testing import CliRunner

from dse.cli import cli
from dse.data import device as data
from dse.data import readers
from dse.errors import ArgumentError, DseError
from dse.runner.options import TrainOptions
from dse.space.spec import AnyNetSpec, Task
from dse.store.core import Store
from dse.train import multistream
from dse.train import trainer as train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TASK = Task(32, "cifar", 3, 10)
SPECS = [AnyNetSpec((1, 1, 2, 1), (8, 16, 32, 64), (1,) * 4, (8,) * 4, stem_w=16),
         AnyNetSpec((1, 2, 2, 1), (16, 32, 48, 96), (1,) * 4, (16,) * 4, stem_w=16)]


def test_the_switch_is_checked():
    assert TrainOptions(concurrency="streams").concurrency == "streams"
    with pytest.raises(ArgumentError, match="concurrency must be processes or streams"):
        TrainOptions(concurrency="threads")


def test_streams_need_one_cuda_device(tmp_path):
    r = CliRunner().invoke(cli, ["sample", "--space", "rx", "--n", "2", "--dataset",
                                 "synthetic", "--flops", "0.5M:2M", "--store", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train", "--store", str(tmp_path), "--device", "cpu",
                                 "--jobs", "2", "--concurrency", "streams"])
    assert r.exit_code == 2 and "models on CUDA streams need one CUDA device (got cpu)" in \
        r.stderr and r.stderr.count("\n") == 1
    assert not list(Store(tmp_path).results_dir("regnetx").glob("*"))
    d = data.DeviceData(readers.synthetic(256, 64), "cpu")
    with pytest.raises(DseError, match="needs a CUDA device"):
        multistream.train_together([(SPECS[0], TASK)], d, train.Recipe(epochs=1, batch_size=64))


@pytest.mark.gpu
@cuda
def test_models_trained_together_match_each_trained_alone():
    d = data.DeviceData(readers.synthetic(), "cuda", train_subset=4096)
    r = train.Recipe(epochs=3)
    seen = []
    together = multistream.train_together([(s, TASK) for s in SPECS], d, r,
                                         on_epoch=lambda k, e, loss: seen.append((k, e)))
    alone = [train.train(s, TASK, d, r) for s in SPECS]
    assert sorted(seen) == [(k, e) for k in (0, 1) for e in (1, 2, 3)]
    for t, a in zip(together, alone):
        assert t.status == a.status == "done" and t.cuda_graph
        assert abs(t.error - a.error) < 5  # the same recipe, init and batches
        assert abs(t.train_loss - a.train_loss) < 0.3  # bf16: see test_train


@pytest.mark.gpu
@cuda
def test_a_group_diverges_cleanly():
    d = data.DeviceData(readers.synthetic(), "cuda", train_subset=2048)
    out = multistream.train_together([(s, TASK) for s in SPECS], d,
                                    train.Recipe(epochs=2, lr=1e6))
    assert [o.status for o in out] == ["diverged", "diverged"]


@pytest.mark.gpu
@cuda
def test_dse_train_with_streams(tmp_path):
    r = CliRunner().invoke(cli, ["sample", "--space", "rx", "--n", "3", "--dataset",
                                 "synthetic", "--flops", "0.5M:2M", "--store", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train", "--store", str(tmp_path), "--device", "cuda:0",
                                 "--jobs", "2", "--concurrency", "streams", "--epochs", "1",
                                 "--train-subset", "2048"])
    assert r.exit_code == 0, r.output
    res = Store(tmp_path).read_results("regnetx")
    assert len(res) == 3 and (res["status"] == "done").all() and res["cuda_graph"].all()
