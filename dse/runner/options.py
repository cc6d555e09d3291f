"""The options of a run over a store, torch-free: `TrainOptions` (recipe, device, workers, leases)
and `ClusterOptions` (where the tasks of a `dse train --cluster` submission run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dse.errors import ArgumentError, out_of_bounds
from dse.train.fusion import FUSE
from dse.train.recipe import Recipe

CONCURRENCY = ("processes", "streams")  # --jobs models on one GPU: worker processes, or
# CUDA streams in one process (dse.train.multistream)
CLAIM_TIMEOUT = 300.0  # seconds without a heartbeat after which a claim is stale
HEARTBEAT = 15.0       # seconds between heartbeats
MAX_SEEDS = 100        # --seeds above this is a typo, not a study
WARN_AFTER_S = 3600.0  # a plan whose ETA is longer warns, with the levers that shorten it


@dataclass(frozen=True)
class TrainOptions:
    """How a run over a store trains: the recipe, where (device, workers per device), which
    models (at most max_models; failed ones again with retry_failed), where the data is, and
    the claim lease. amp, cuda_graph and channels_last None = the device's default."""


    recipe: Recipe = field(default_factory=Recipe)
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    jobs: int = 1                     # models trained at once per device
    concurrency: str = "processes"    # how they share a GPU: processes | streams (multistream)
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
    step_report_s: float | None = None  # s between a trainer's step reports (None: the
    # trainer's STEP_REPORT_S); host counters only, the device is never waited for
    # trials (docs/trials.md): which models, seeds and per-model recipe draws
    draws: dict = field(default_factory=dict)  # recipe key → distribution, drawn per model
    seeds: int | None = None          # train seeds 0..seeds−1 (None: the recipe's seed)
    top: int | None = None            # only the `top` lowest-error models of each space
    sample: int | None = None         # only `sample` random models of each space
    sample_seed: int = 0              # seed of the --sample draw
    curves: bool = False              # test error after every epoch (history_error)
    fuse: str = "auto"                # trials of one architecture as one fused network:
    # auto | on | off (dse.train.fusion: auto fuses on the devices where it measured a gain)

    def __post_init__(self):
        for name in ("jobs", "max_models", "seeds", "top", "sample"):
            v = getattr(self, name)
            hi = MAX_SEEDS if name == "seeds" else None
            if (v is not None or name == "jobs") and (
                    why := out_of_bounds(v, 1, hi, integer=True)):
                raise ArgumentError(name, why)
        if self.fuse not in FUSE:
            raise ArgumentError("fuse", f"must be {', '.join(FUSE)} (got {self.fuse!r})")
        if self.concurrency not in CONCURRENCY:
            raise ArgumentError("concurrency", f"must be {' or '.join(CONCURRENCY)} (got "
                                f"{self.concurrency!r})")
        for name in ("claim_timeout", "heartbeat_s", "step_report_s"):
            v = getattr(self, name)
            if (v is not None or name != "step_report_s") and (
                    why := out_of_bounds(v, 0, lo_open=True, unit="seconds")):
                raise ArgumentError(name, why)

    def load_options(self):
        """How datasets are read for this run (dse.data.datasets.LoadOptions)."""
        from dse.data.datasets import LoadOptions

        return LoadOptions(self.skip_bad_images, self.cache_dir, self.download)


# ---- where a run's trainers run (dse train --cluster, dse.runner.cluster) ------------------------

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
            if v is not None and (why := out_of_bounds(v, least, integer=True)):
                raise ArgumentError(name, why)
        if self.mem_gb is not None and (why := out_of_bounds(self.mem_gb, 0, lo_open=True)):
            raise ArgumentError("mem_gb", why)

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
