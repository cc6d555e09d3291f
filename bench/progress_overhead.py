"""What progress reporting costs the CPU trainer: the same model trained without any report
(no on_step, no on_epoch; twice, to show the noise of the machine) and with the reports
`dse train` makes (step counts about once a second into a Progress: the tqdm bar of a
terminal, or the log lines written off one), interleaved in one run, plus the two costs that
make up the overhead, timed alone: the per-step check of the clock and one report. Then the
plan's calibration of the same model (dse.train.trainer.calibrate: ~2 s of steps after a
warm-up) against the images/s its trainings reached.

    .venv/bin/python bench/progress_overhead.py [--rounds 5] [--epochs 2] [--subset 6000]

One RegNetX model of the 1.5–2 MF Fashion-MNIST window (the dds-cpu size: the shortest steps,
so the largest relative overhead), batch 128, one thread. Each round trains it once per side,
in a rotated order; a side's ratio is the median over rounds of its seconds over the
baseline's in the same round, for the wall seconds of training and for the CPU seconds of
this process over the whole call (less disturbed by other jobs on shared cores).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def model_and_data(subset: int):
    """The bench's model (spec, task, flops) and Fashion-MNIST on the CPU (synthetic if absent)."""
    from dse.data import datasets
    from dse.data.device import DeviceData
    from dse.errors import DseError
    from dse.space import definition as spaces
    from dse.space import sampling
    from dse.space.spec import AnyNetSpec

    name = "fashion-mnist"
    try:
        arrays = datasets.load(name)
    except DseError:
        name, arrays = "synthetic", datasets.load("synthetic")
    task = datasets.task(name)
    (row,) = sampling.sample(spaces.load("regnetx"), 1, task, sampling.Window(1.5e6, 2e6),
                             seed=3)
    spec = AnyNetSpec(tuple(row["ds"]), tuple(row["ws"]), tuple(row["bs"]), tuple(row["gs"]),
                      row["se_ratio"] or 0.0)
    return spec, task, int(row["flops"]), DeviceData(arrays, "cpu", subset), name


def reporters(flops: int, images: int, epochs: int) -> dict:
    """Each side's (on_step, on_epoch): none, the terminal's bar, the log lines."""
    from dse.runner.options import TrainOptions
    from dse.runner.plan import Plan
    from dse.runner.progress import Progress

    job = SimpleNamespace(key="regnetx/bench", model_id="bench", space="regnetx", flops=flops,
                          data="bench")
    plan = Plan(1, epochs, (("bench", images),), 3.0 * flops * images * epochs, 1e9, "bench",
                ("cpu",), TrainOptions())

    def hooks(tty: bool):
        p = Progress(stream=io.StringIO(), tty=tty, epochs=epochs, warn_after_s=None)
        p.start(1, "1 worker (cpu)")
        p.plan(plan)
        p.begin(job)
        return (lambda e, k, n: p.step(job, e, k, n)), (lambda e, loss: p.epoch(job, e, loss))

    return {"none": lambda: (None, None), "none again": lambda: (None, None),
            "bar": lambda: hooks(True), "lines": lambda: hooks(False)}


def step_costs(flops: int, images: int, epochs: int) -> dict:
    """The two parts of the overhead, timed alone: the clock check every step makes, and one
    report (an AtStep into a Progress) for each side."""
    check = min(timeit.repeat("time.perf_counter() >= t", setup="t = time.perf_counter() + 1",
                              globals={"time": time}, number=100_000, repeat=5)) / 100_000
    out = {"check_s": check}
    for side, make in reporters(flops, images, epochs).items():
        on_step, _ = make()
        if on_step is not None:
            out[f"report_{side}_s"] = min(timeit.repeat(lambda f=on_step: f(1, 7, 46), number=200,
                                                        repeat=5)) / 200
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=6000)
    args = ap.parse_args()
    import torch

    from dse.train import trainer
    from dse.train.recipe import Recipe

    torch.set_num_threads(1)
    spec, task, flops, data, name = model_and_data(args.subset)
    recipe = Recipe(epochs=args.epochs, train_subset=args.subset)
    sides = reporters(flops, args.subset, args.epochs)
    seconds = {side: [] for side in sides}
    cpu = {side: [] for side in sides}
    errors = {side: set() for side in sides}
    trainer.train(spec, task, data, recipe)  # warm: oneDNN primitives, allocator
    for r in range(args.rounds):
        names = list(sides)
        for side in names[r % len(names):] + names[:r % len(names)]:
            on_step, on_epoch = sides[side]()
            c0 = time.process_time()
            out = trainer.train(spec, task, data, recipe, on_step=on_step, on_epoch=on_epoch)
            cpu[side].append(time.process_time() - c0)
            seconds[side].append(out.train_seconds)
            errors[side].add(out.error)
    steps = data.steps(recipe.batch_size) * args.epochs
    med = {side: statistics.median(s) for side, s in seconds.items()}

    def ratio(t: dict) -> dict:
        return {s: statistics.median(a / b for a, b in zip(t[s], t["none"])) for s in sides}

    costs = step_costs(flops, args.subset, args.epochs)
    calibrated = [trainer.calibrate(spec, task, data, recipe)[0] for _ in range(3)]
    trained = [steps * recipe.batch_size / s for s in seconds["none"]]
    step_s = med["none"] / steps
    print(json.dumps(dict(
        dataset=name, flops=flops, steps=steps, rounds=args.rounds, seconds=seconds,
        cpu_seconds=cpu, median_s=med, ratio=ratio(seconds), cpu_ratio=ratio(cpu),
        same_error=all(len(e) == 1 for e in errors.values()) and
        len(set().union(*errors.values())) == 1,
        step_s=step_s, **costs,
        calibrated_images_per_s=calibrated, trained_images_per_s=trained,
        calibrated_over_trained=statistics.median(calibrated) / statistics.median(trained),
        bound={s: (costs["check_s"] + costs[f"report_{s}_s"] / trainer.STEP_REPORT_S * step_s)
               / step_s for s in ("bar", "lines")}), indent=1))


if __name__ == "__main__":
    main()
