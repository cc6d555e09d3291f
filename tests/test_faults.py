"""CUDA faults without a GPU: simulated sticky CUDA errors, out-of-memory and workers that
cannot start, at the boundary where dse.runner.executors calls dse.train.trainer.train and takes a
device."""

import gc
import multiprocessing as mp
import time
import weakref

import pytest
import torch

from dse.data.datasets import DataRef
from dse.errors import DseError
from dse.runner import executors as workers
from dse.runner import jobs, processes, worker
from dse.runner.jobs import Finished, Returned
from dse.runner.options import TrainOptions
from dse.space.spec import AnyNetSpec, Task
from dse.train import trainer as train
from dse.train.outcome import Outcome

TASK = Task(32, "cifar", 3, 10)
ILLEGAL = "CUDA error: an illegal memory access was encountered"


def job(i, width=8):
    spec = AnyNetSpec((1,), (width,), (1,), (8,))
    return jobs.Job("s", f"m{i}", DataRef("synthetic", None, 32), spec, TASK, 1)


def done(*a, **k):
    return Outcome(status="done", error=10.0, message="", train_seconds=0.1)


@pytest.mark.parametrize("error, sticky", [
    (RuntimeError(ILLEGAL), True),
    (RuntimeError("CUDA error: device-side assert triggered"), True),
    (RuntimeError("CUDA error: unspecified launch failure"), True),
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),
    (RuntimeError("CUDA error: out of memory"), False),
    (ValueError("mat1 and mat2 shapes cannot be multiplied"), False),
])
def test_sticky_cuda_errors_are_told_from_the_others(error, sticky):
    assert worker.cuda_fault(error) is sticky


def test_a_sticky_error_fails_the_model_and_marks_the_outcome_fatal(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError(ILLEGAL)

    monkeypatch.setattr(train, "train", broken)
    cache = worker.DataCache(torch.device("cpu"), TrainOptions())
    out = worker.train_one(job(0), cache, TrainOptions(), None)
    assert out.status == "failed" and out.fatal and "illegal memory access" in out.message


def test_out_of_memory_frees_the_failed_model_before_emptying_the_cache(monkeypatch):
    alive = []

    class Model:  # what the exception's frames hold while it is being handled
        pass

    def oom(*a, **k):
        model = Model()
        alive.append(weakref.ref(model))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    seen = []
    monkeypatch.setattr(train, "train", oom)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append(alive[0]() is None))
    cache = worker.DataCache(torch.device("cpu"), TrainOptions())
    out = worker.train_one(job(0), cache, TrainOptions(), None)
    assert out.status == "failed" and not out.fatal
    assert seen == [True]  # the model was gone when the cache was emptied


def test_in_process_a_sticky_error_stops_the_run_and_leaves_the_rest_pending(tmp_path,
                                                                           monkeypatch):
    from click.testing import CliRunner

    from dse.cli import cli
    from dse.store.core import Store

    r = CliRunner().invoke(cli, ["sample", "--space", "rx", "--n", "3", "--dataset",
                                 "synthetic", "--flops", "0.5M:2M", "--store", str(tmp_path)])
    assert r.exit_code == 0, r.output

    def broken(*a, **k):
        raise RuntimeError(ILLEGAL)

    monkeypatch.setattr(train, "train", broken)
    r = CliRunner().invoke(cli, ["train", "--store", str(tmp_path), "--epochs", "1"])
    assert r.exit_code == 2 and r.stderr.startswith("Error: stopped: no usable device left")
    assert "2 models left pending" in r.stderr
    res = Store(tmp_path).read_results("regnetx")
    assert list(res["status"]) == ["failed"]  # only the model that hit the error
    assert not list(Store(tmp_path).claims_dir("regnetx").glob("*.json"))


def _events(ex, want, seconds=60):
    out, deadline = [], time.time() + seconds
    while not want(out) and time.time() < deadline:
        out += ex.events(timeout=0.5)
    return out


def test_a_worker_exits_after_a_sticky_error_and_a_fresh_one_takes_over(monkeypatch):
    def flaky(spec, *a, **k):  # the 16-wide model breaks its process's CUDA
        if spec.ws == (16,):
            raise RuntimeError(ILLEGAL)
        return done()

    monkeypatch.setattr(train, "train", flaky)
    monkeypatch.setattr(processes, "BACKOFF_S", (0.0, 0.0, 0.0))
    ex = processes.Processes(["cpu"], TrainOptions())
    ex.ctx = mp.get_context("fork")  # the workers inherit the patched trainer
    with ex:
        first = ex.slots[0].process
        ex.submit(job(0, width=16))
        out = _events(ex, lambda o: any(isinstance(e, Finished) for e in o))
        (bad,) = [e for e in out if isinstance(e, Finished)]
        assert bad.outcome.status == "failed" and bad.outcome.fatal
        _events(ex, lambda o: ex.free(), 30)
        assert ex.slots[0].process is not first and ex.unusable is None
        ex.submit(job(1))
        out = _events(ex, lambda o: any(isinstance(e, Finished) for e in o))
        assert [e.outcome.status for e in out if isinstance(e, Finished)] == ["done"]
        assert ex.slots[0].failures == 0


def test_workers_that_cannot_start_give_their_jobs_back_and_are_given_up(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("needs a machine where CUDA cannot start")
    monkeypatch.setattr(processes, "BACKOFF_S", (0.0, 0.0, 0.0))
    ex = processes.Processes(["cuda:0", "cuda:0"], TrainOptions())
    ex.ctx = mp.get_context("fork")
    with ex:
        ex.submit(job(0))
        out = _events(ex, lambda o: ex.unusable is not None, 120)
    assert [e for e in out if isinstance(e, Finished)] == []  # no model charged
    assert [e.key for e in out if isinstance(e, Returned)] == [job(0).key]  # s/<trial of m0>
    assert all(s.given_up and s.failures == processes.MAX_FAILURES for s in ex.slots)
    assert "cuda:0: cannot start" in ex.unusable and "3 failures in a row" in ex.unusable
    gc.collect()


def test_a_captured_graph_is_recorded_only_when_replayed():
    from dse.data import device as data
    from dse.data import readers

    d = data.DeviceData(readers.synthetic(256, 64), torch.device("cpu"))
    out = train.train(AnyNetSpec((1,), (8,), (1,), (8,)), TASK, d,
                      train.Recipe(epochs=1, batch_size=64))
    assert out.cuda_graph is False  # on the CPU nothing is captured


def test_a_device_that_cannot_start_in_process_is_one_line_before_any_claim(monkeypatch):
    def busy(device, n):
        raise RuntimeError("CUDA error: all CUDA-capable devices are busy or unavailable")

    monkeypatch.setattr(workers, "use_device", busy)
    with pytest.raises(DseError, match="cuda:0 cannot be used: RuntimeError: CUDA "
                                               "error: all CUDA-capable devices are busy"):
        workers.InProcess("cuda:0", TrainOptions(), {})
