"""Where a model's wall time goes beside its training steps, as `dse train` runs it on the CPU:
the worker's start (a fresh Python importing torch and the trainer), reading the dataset,
building the model, the timed training (`train_seconds`), one test pass, and the plan's
calibration (dse.train.trainer.calibrate) beside the speed training reached. The plan
(dse.runner.plan) counts each of these; this measures them.

    .venv/bin/python bench/plan_parts.py [--models 3] [--epochs 2] [--subset 6000]

RegNetX models of the dds-cpu window (1.5–2 MF, Fashion-MNIST, batch 128), one thread, as
each of `jobs: 2`'s trainers runs. Prints one JSON line per model and a summary: a test pass
in seconds and as a multiple of what its forward multiply-adds (flops × test images) take at
the model's training speed (3 × flops × images × epochs / train_seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=6000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, dse.train.trainer"], check=True,
                   cwd=ROOT)
    start_s = time.perf_counter() - t0

    import torch

    torch.set_num_threads(1)
    from dse.data import datasets
    from dse.data.device import DeviceData
    from dse.space import definition as spaces
    from dse.space import sampling
    from dse.space.spec import from_row
    from dse.train import trainer
    from dse.train.recipe import Recipe

    t0 = time.perf_counter()
    arrays = datasets.load("fashion-mnist")
    load_s = time.perf_counter() - t0
    task = datasets.task("fashion-mnist")
    t0 = time.perf_counter()
    data = DeviceData(arrays, "cpu", args.subset)
    device_s = time.perf_counter() - t0
    print(json.dumps(dict(worker_start_s=round(start_s, 2), data_load_s=round(load_s, 2),
                          data_to_device_s=round(device_s, 2))))
    rows = sampling.sample(spaces.load("regnetx"), args.models, task,
                           sampling.Window(1.5e6, 2e6), seed=5)
    recipe = Recipe(epochs=args.epochs, train_subset=args.subset, lr=0.1)
    ratios = []
    for row in rows:
        spec, _ = from_row({**row, "resolution": task.resolution, "stem": task.stem,
                            "in_channels": task.in_channels, "num_classes": task.num_classes})
        flops = int(row["flops"])
        t0 = time.perf_counter()
        ips_cal, steps = trainer.calibrate(spec, task, data, recipe)
        cal_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = trainer.train(spec, task, data, recipe)
        wall = time.perf_counter() - t0
        rate = 3 * flops * args.subset * args.epochs / out.train_seconds
        m = trainer.Stepper(spec, task, recipe, torch.device("cpu"),
                            torch.zeros(10), False, False,
                            torch.channels_last).model
        t0 = time.perf_counter()
        trainer.evaluate(m, data, False, torch.channels_last)
        eval_s = time.perf_counter() - t0
        forward = flops * len(arrays.test_y) / rate
        ratios.append(eval_s / forward)
        print(json.dumps(dict(
            flops=flops, train_s=round(out.train_seconds, 2), wall_s=round(wall, 2),
            outside_train_s=round(wall - out.train_seconds, 2), eval_s=round(eval_s, 2),
            eval_over_forward_at_train_rate=round(eval_s / forward, 2),
            train_ips=round(out.images_per_second), calibrated_ips=round(ips_cal),
            calibration_s=round(cal_s, 2), calibration_steps=steps)))
    print(json.dumps(dict(median_eval_over_forward=round(statistics.median(ratios), 2))))


if __name__ == "__main__":
    main()
