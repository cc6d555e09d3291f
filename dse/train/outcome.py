"""The outcome of training one model (torch-free): what dse.train.trainer.train and
dse.train.multistream.train_together return, the executors pass on and the run loop stores."""

from __future__ import annotations

from dataclasses import dataclass

from dse.store.status import Status


@dataclass(frozen=True)
class Outcome:
    """How a model's training ended. status: done | diverged | failed; error: test top-1
    error in % (done only); fatal: a CUDA error left this process unable to train again."""

    status: str
    error: float | None = None
    message: str = ""
    train_loss: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    epochs_run: int | None = None
    steps: int | None = None
    precision: str | None = None
    cuda_graph: bool | None = None
    channels_last: bool | None = None
    fatal: bool = False
    history_error: tuple[float, ...] | None = None  # test error after each epoch (curves)
    history_loss: tuple[float, ...] | None = None   # mean training loss of each epoch
    # the weight-EMA model's test error after each epoch (a recipe with ema_alpha > 0)
    history_ema_error: tuple[float, ...] | None = None
    fused: int | None = None  # copies of the fused network it trained in (dse.train.fused)

    @classmethod
    def failed(cls, message: str, seconds: float | None = None, fatal: bool = False) -> Outcome:
        return cls(Status.FAILED, message=message, train_seconds=seconds, fatal=fatal)
