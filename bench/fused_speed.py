"""Fused trials against separate ones: models/hour of K = 2, 4, 8 trainings of one
architecture as one fused network (dse.train.fused) against the same K trainings one model at
a time, each side at its best --jobs, side by side in one run.

    .venv/bin/python bench/fused_speed.py [--models 2] [--rounds 2] [--seconds 6]
                                          [--windows fmnist,cifar] [--ks 2,4,8]
    python3 bench/fused_speed.py --device cuda     # on a GPU (bench/device_check.sh, fused)

Windows: RegNetX models of the 1.5–2 MF Fashion-MNIST window on the real training images
(/usr/share/datasets/fashion-mnist), and of CIFAR-10's default window (29.4–32.7 MF) on dse's
synthetic dataset, which has CIFAR-10's shape (3×32×32, 10 classes): CIFAR-10 is not on this
machine, and a step's cost does not depend on the pixels. Each configuration trains real
steps, the data built on the fly as the trainer builds it (shuffle, crop, flip per copy), batch
128, after warm-up steps; on the CPU channels-last and fp32, on CUDA bf16 autocast and the
step replayed from a CUDA graph (--jobs there are processes sharing the GPU):

    separate, --jobs 1   one process, one model, all cores' threads
    separate, --jobs 2   one process per core, one model each, at once
    fused K, --jobs 1    one process, one K-copy fused network, all cores' threads
    fused K, --jobs 2    one process per core, a K-copy fused network each, at once

A configuration's speed is trial-images per second (K × batch per fused step, summed over
processes that run at once); models/hour are proportional to it at a fixed recipe. The ratio
compares the best fused configuration with the best separate one. Rounds repeat every
configuration in turn, so a neighbour's load falls on both sides; each round's ratio is
reported and the median taken.

`--findings N` times experiments/findings-cpu-trials.yaml's 24 × 3 seed reruns scaled to N
models instead, as whole `dse train` commands (findings()).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOWS = {"fmnist": ("fashion-mnist", "fashion-mnist", 1.5e6, 2e6),
           "cifar": ("cifar10", "synthetic", 29.4e6, 32.7e6)}  # sampled for, trained on


def models(window: str, n: int) -> list[dict]:
    from dse.data import datasets
    from dse.space import definition as spaces
    from dse.space import sampling

    task, _, lo, hi = WINDOWS[window]
    rows = sampling.sample(spaces.load("regnetx"), n, datasets.task(task),
                           sampling.Window(lo, hi), seed=1)
    return [dict(ds=list(r["ds"]), ws=list(r["ws"]), bs=list(r["bs"]), gs=list(r["gs"]),
                 se=r["se_ratio"] or 0.0, flops=int(r["flops"]), id=r["model_id"])
            for r in rows]


def worker(args) -> None:
    """One process: warm up, wait for the common start time, time steps for `seconds`
    (at least 2 steps), print trial-images per second as JSON."""
    import torch

    from dse.data import datasets, readers
    from dse.data import device as data
    from dse.space.spec import AnyNetSpec
    from dse.train import fused, trainer
    from dse.train.recipe import Recipe

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    amp = graph = cuda  # CUDA: bf16 autocast and the CUDA graph; CPU: channels-last
    cl = not cuda
    fmt = torch.channels_last if cl else torch.contiguous_format
    m = json.loads(args.model)
    task_name, data_name, _, _ = WINDOWS[args.window]
    task = datasets.task(task_name)
    spec = AnyNetSpec(tuple(m["ds"]), tuple(m["ws"]), tuple(m["bs"]), tuple(m["gs"]), m["se"])
    arrays = (readers.synthetic() if data_name == "synthetic"
              else datasets.load(data_name))
    d = data.DeviceData(arrays, args.device, train_subset=8192)
    x_dtype = torch.bfloat16 if amp else torch.float32
    k = args.k
    recipes = [Recipe(seed=s) for s in range(max(k, 1))]  # --seeds K: one lr and wd
    if k == 0:  # the unfused trainer's own step and data
        step = trainer.Stepper(spec, task, recipes[0], d.device,
                               torch.full((10_000,), 0.05, device=d.device), amp, graph, fmt)
        gen = torch.Generator(d.device).manual_seed(0)

        def epoch():
            return d.batches(128, gen, True, x_dtype, cl)
        per_step = 128
    else:
        step = fused.FusedStepper(spec, task, recipes, d.device, 64, amp, graph, fmt)
        step.lrs = torch.full((10_000,), 0.05, device=d.device)
        epoch, per_step = fused.batches(d, recipes, x_dtype, cl), 128 * k

    def steps():
        while True:
            yield from epoch()

    it = steps()
    for _ in range(6 if graph else 2):  # CUDA: the eager warm-up and the capture
        step.advance(*next(it))
    if cuda:
        torch.cuda.synchronize()
    Path(args.sync, f"ready-{os.getpid()}").touch()  # then wait for every process's warm-up
    while not Path(args.sync, "go").exists():
        time.sleep(0.01)
    t0, n = time.perf_counter(), 0
    while n < 2 or time.perf_counter() - t0 < args.seconds:
        step.advance(*next(it))
        n += 1
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps(dict(images_per_second=n * per_step / dt, steps=n, seconds=dt)))


def measure(window: str, model: dict, k: int, jobs: int, seconds: float,
            device: str = "cpu") -> float:
    """Trial-images per second of `jobs` processes at once, each a fused K (0: the unfused
    trainer), with the cores split between them; the timed steps start together, after every
    process's warm-up."""
    threads = max(1, (os.cpu_count() or 1) // (jobs if device == "cpu" else 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="dse-fused-speed-") as sync:
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--window", window,
                                   "--model", json.dumps(model), "--k", str(k), "--threads",
                                   str(threads), "--sync", sync, "--seconds", str(seconds),
                                   "--device", device],
                                  env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(jobs)]
        while len(list(Path(sync).glob("ready-*"))) < jobs:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.02)
        Path(sync, "go").touch()
        out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(o["images_per_second"] for o in out)


def findings(n: int, rounds: int, first: str = "off") -> None:
    """experiments/findings-cpu-trials.yaml's seed reruns, scaled to n models: n of the
    48-model population (RegNetX, Fashion-MNIST, 1.5–2 MF, sampling seed 0) chosen at random
    (--sample n --sample-seed 1), 3 seeds each under its proxy recipe (2 epochs on 6,000
    images, lr 0.1, --jobs 2), by `dse train --fuse on` and `--fuse off` on fresh copies of
    one store, the sides alternating round by round; wall seconds of each whole command."""
    with tempfile.TemporaryDirectory(prefix="dse-fused-findings-") as tmp:
        base = Path(tmp) / "base"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        dse = [sys.executable, "-m", "dse"]
        subprocess.run([*dse, "sample", "--space", "rx", "--n", "48", "--dataset",
                        "fashion-mnist", "--flops", "1.5M:2M", "--seed", "0", "--store",
                        str(base)], env=env, check=True, capture_output=True)
        times = {"on": [], "off": []}
        for i in range(rounds):
            order = ("off", "on") if first == "off" else ("on", "off")
            for fuse in (order if i % 2 == 0 else order[::-1]):
                store = Path(tmp) / f"{fuse}-{i}"
                shutil.copytree(base, store)
                t0 = time.perf_counter()
                subprocess.run([*dse, "train", "--store", str(store), "--epochs", "2",
                                "--train-subset", "6000", "--lr", "0.1", "--device", "cpu",
                                "--jobs", "2", "--sample", str(n), "--sample-seed", "1",
                                "--seeds", "3", "--fuse", fuse], env=env, check=True,
                               capture_output=True)
                times[fuse].append(time.perf_counter() - t0)
                print(f"  round {i + 1} --fuse {fuse}: {times[fuse][-1]:.0f} s "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
        on, off = statistics.median(times["on"]), statistics.median(times["off"])
        print(f"| {n} × 3 seeds | {off:.0f} s | {on:.0f} s | {off / on:.2f}× |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--window", default="fmnist")
    ap.add_argument("--model")
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sync")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--models", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--windows", default="fmnist,cifar")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--findings", type=int, default=0, metavar="N",
                    help="instead: the findings study's seed reruns scaled to N models")
    ap.add_argument("--first", choices=("off", "on"), default="off",
                    help="--findings: the side that runs first in odd rounds")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 + CUDA graph)")
    ap.add_argument("--jobs", default=None,
                    help="processes at once to try per side [default: 1,2 on CPU, 1,4 on CUDA]")
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if a.findings:
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
        print("| reruns | --fuse off | --fuse on | models/hour on / off |")
        return findings(a.findings, a.rounds, a.first)
    ks = [int(x) for x in a.ks.split(",")]
    jobs = [int(x) for x in (a.jobs or ("1,2" if a.device == "cpu" else "1,4")).split(",")]
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    js = " / ".join(f"j{j}" for j in jobs)
    print(f"| window | model (MF) | K | separate {js} (img/s) | fused {js} (img/s) | "
          "best fused / best separate (per round) | median |")
    print("|---|---|---|---|---|---|---|")
    for window in a.windows.split(","):
        for m in models(window, a.models):
            rows = {k: [] for k in ks}
            for _ in range(a.rounds):
                sep = [measure(window, m, 0, j, a.seconds, a.device) for j in jobs]
                for k in ks:
                    fus = [measure(window, m, k, j, a.seconds, a.device) for j in jobs]
                    rows[k].append((sep, fus, max(fus) / max(sep)))
            for k in ks:
                sep = [statistics.median(r[0][j] for r in rows[k]) for j in range(len(jobs))]
                fus = [statistics.median(r[1][j] for r in rows[k]) for j in range(len(jobs))]
                ratios = [r[2] for r in rows[k]]
                print(f"| {window} | {m['id'][:8]} ({m['flops'] / 1e6:.2f}) | {k} | "
                      f"{' / '.join(f'{x:.0f}' for x in sep)} | "
                      f"{' / '.join(f'{x:.0f}' for x in fus)} | "
                      f"{', '.join(f'{x:.2f}' for x in ratios)} | "
                      f"**{statistics.median(ratios):.2f}×** |", flush=True)
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
