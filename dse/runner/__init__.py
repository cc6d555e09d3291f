"""Train a whole store (torch only inside the functions that train): the run's options
(`options`), leases that keep two trainers off one model (`leases`), the jobs, events and
`Executor` contract (`jobs`) with its two executors, in-process (`executors`) and worker
processes (`processes`), the run loop (`loop`), its progress (`progress`) and the same loop in
the tasks of a cluster job array (`cluster`)."""

from dse.runner.options import ClusterOptions, TrainOptions

__all__ = ["ClusterOptions", "TrainOptions"]
