"""What a training run does, in one torch-free place: the proxy-training `Recipe` (the paper's
schedule, with units) and the `TrainOptions` of a run over a store (device, workers, claims).

The CLI takes its defaults from here, so `dse --help` shows the recipe without importing torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dse.errors import ArgumentError


@dataclass(frozen=True)
class Recipe:
    """The proxy-training recipe. Defaults: the paper's (REFERENCE §6) plus zero-init of each
    block's final BN γ, which keeps deep narrow networks from stalling (docs/training.md)."""

    epochs: int = 10                  # passes over the training images
    batch_size: int = 128             # images per step; the last partial batch is dropped
    lr: float = 0.05                  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    wd: float = 5e-5                  # L2 weight decay on every parameter
    warmup_epochs: float = 0.0        # linear warm-up from 0 to lr, then half-period cosine
    zero_init_final_gamma: bool = True  # each block's final BN γ starts at 0 (paper: 1)
    augment: bool = True              # pad + random crop (+ flip), see dse.datasets
    seed: int = 0                     # model init, shuffling and augmentation
    train_subset: int | None = None   # train on N images of a fixed permutation; None = all

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ArgumentError(name, f"must be an integer ≥ 1 (got {v!r})")
        if self.train_subset is not None and (isinstance(self.train_subset, bool)
                                              or not isinstance(self.train_subset, int)
                                              or self.train_subset < 1):
            raise ArgumentError("train_subset",
                                f"must be a positive integer (got {self.train_subset!r})")
        for name in ("lr", "momentum", "wd", "warmup_epochs"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ArgumentError(name, f"must be a finite number ≥ 0 (got {v!r})")
        if self.lr == 0:
            raise ArgumentError("lr", "must be > 0")
        if self.momentum >= 1:
            raise ArgumentError("momentum", f"must be < 1 (got {self.momentum})")
        if self.warmup_epochs > self.epochs:
            raise ArgumentError("warmup_epochs", f"({self.warmup_epochs:g}) exceeds epochs "
                                f"({self.epochs})")

    def paper(self) -> Recipe:
        """The same recipe with the paper's exact settings: every BN γ = 1, no warm-up."""
        return replace(self, zero_init_final_gamma=False, warmup_epochs=0.0)

    def asdict(self) -> dict:
        return asdict(self)


def lr_schedule(recipe: Recipe, steps_per_epoch: int) -> np.ndarray:
    """Learning rate of every step: lr · ½(1 + cos(π t / T)), t = 0..T−1 (half-period
    cosine per step), times a linear ramp (t + 1) / W over the first W warm-up steps."""
    total = recipe.epochs * steps_per_epoch
    t = np.arange(total, dtype=np.float64)
    lr = recipe.lr * 0.5 * (1 + np.cos(np.pi * t / total))
    warm = round(recipe.warmup_epochs * steps_per_epoch)
    if warm:
        lr *= np.minimum(1.0, (t + 1) / warm)
    return lr


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)


CONCURRENCY = ("processes", "streams")  # --jobs models on one GPU: worker processes, or
# CUDA streams in one process (dse.concurrent)
CLAIM_TIMEOUT = 300.0  # seconds without a heartbeat after which a claim is stale
HEARTBEAT = 15.0       # seconds between heartbeats


@dataclass(frozen=True)
class TrainOptions:
    """How a run over a store trains: the recipe, where (device, workers per device), which
    models (at most max_models; failed ones again with retry_failed), where the data is, and
    the claim lease. amp, cuda_graph and channels_last None = the device's default."""


    recipe: Recipe = field(default_factory=Recipe)
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    jobs: int = 1                     # models trained at once per device
    concurrency: str = "processes"    # how they share a GPU: processes | streams (dse.concurrent)
    max_models: int | None = None     # stop after starting this many
    retry_failed: bool = False        # train models whose stored result is `failed` again
    data_dir: str | None = None       # default $DSE_DATA or ./data (folder: the recorded dir)
    download: bool = False
    skip_bad_images: bool = False     # folder: skip images that cannot be decoded
    cache_dir: str | None = None      # folder: decoded-image cache (default $DSE_CACHE)
    amp: bool | None = None           # bf16 autocast (default on for CUDA)
    cuda_graph: bool | None = None    # replay the step from a CUDA graph (default on for CUDA)
    channels_last: bool | None = None  # NHWC (default on for CPU)
    claim_timeout: float = CLAIM_TIMEOUT  # s without a heartbeat before a claim is stale
    heartbeat_s: float = HEARTBEAT    # s between heartbeats

    def __post_init__(self):
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ArgumentError("jobs", f"must be ≥ 1 (got {self.jobs!r})")
        if self.max_models is not None and (not isinstance(self.max_models, int)
                                            or self.max_models < 1):
            raise ArgumentError("max_models", f"must be ≥ 1 (got {self.max_models!r})")
        if self.concurrency not in CONCURRENCY:
            raise ArgumentError("concurrency", f"must be {' or '.join(CONCURRENCY)} (got "
                                f"{self.concurrency!r})")
        for name in ("claim_timeout", "heartbeat_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise ArgumentError(name, f"must be a number of seconds > 0 (got {v!r})")

    def load_options(self):
        """How datasets are read for this run (dse.datasets.LoadOptions)."""
        from dse.datasets import LoadOptions

        return LoadOptions(self.skip_bad_images, self.cache_dir, self.download)


# ---- where a run's trainers run (dse train --cluster, dse.cluster) ----------------------------

CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the tasks of a submission run. Resources are per task; None leaves the
    cluster's default. slurm_args are extra sbatch options (account, qos, constraint...)."""

    cluster: str = "slurm"            # slurm | local | debug
    tasks: int = 1                    # array tasks, each a trainer loop on the shared store
    gpus_per_task: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    partition: str | None = None
    time_min: int = 240               # time limit of a task; it requeues itself near the end
    array_parallelism: int | None = None  # tasks running at once (default: all)
    slurm_args: tuple = ()            # ((key, value), ...), sbatch --key=value
    max_requeues: int = 3             # per task, for preemptions and time limits together

    def __post_init__(self):
        if self.cluster not in CLUSTERS:
            raise ArgumentError("cluster", f"must be one of {', '.join(CLUSTERS)} (got "
                                f"{self.cluster!r})")
        for name in ("tasks", "time_min", "gpus_per_task", "cpus_per_task",
                     "array_parallelism", "max_requeues"):
            v, least = getattr(self, name), 0 if name in ("gpus_per_task", "max_requeues") else 1
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least):
                raise ArgumentError(name, f"must be an integer ≥ {least} (got {v!r})")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ArgumentError("mem_gb", f"must be > 0 (got {self.mem_gb!r})")

    def parameters(self) -> dict:
        """submitit's AutoExecutor parameters."""
        p = dict(name="dse-train", timeout_min=self.time_min, gpus_per_node=self.gpus_per_task,
                 cpus_per_task=self.cpus_per_task, mem_gb=self.mem_gb, nodes=1, tasks_per_node=1)
        if self.cluster == "slurm":
            p.update(slurm_partition=self.partition,
                     slurm_array_parallelism=self.array_parallelism,
                     slurm_additional_parameters=dict(self.slurm_args) or None)
        return {k: v for k, v in p.items() if v is not None}


def parse_slurm_args(items) -> tuple:
    """KEY=VALUE strings as ((key, value), ...); sbatch's dashes may be written as _."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or key.startswith("-"):
            raise ArgumentError("slurm_args", f"{item!r} is not KEY=VALUE (an sbatch option "
                                "without its dashes, e.g. account=proj or qos=high)")
        out.append((key.strip().replace("-", "_"), value))
    return tuple(out)
