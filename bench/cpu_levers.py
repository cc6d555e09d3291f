"""CPU levers on the trainer's step for the tiny models of a CPU experiment (dds-cpu):
eager (today's trainer) against torch.compile (inductor), and the thread split of `--jobs`
(one 2-thread trainer against two 1-thread trainers at once), on one RegNetX model of the
1.5–2 MF Fashion-MNIST window, channels-last, batch 128, SGD Nesterov.

    .venv/bin/python bench/cpu_levers.py [--steps 60] [--skip-compile]

Images/s count the steps after 10 warm-up steps; "first 10" is the time of the warm-up steps
(for torch.compile: the compilation). Two 1-thread trainers run as two processes at once and
their images/s are summed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def step_speed(threads: int, compile_: bool, steps: int) -> dict:
    import torch

    from dse.data import datasets
    from dse.space import definition as spaces
    from dse.space import sampling
    from dse.space.spec import AnyNetSpec
    from dse.train.models import build

    torch.set_num_threads(threads)
    task = datasets.task("fashion-mnist")
    (row,) = sampling.sample(spaces.load("regnetx"), 1, task, sampling.Window(1.5e6, 2e6),
                             seed=3)
    spec = AnyNetSpec(tuple(row["ds"]), tuple(row["ws"]), tuple(row["bs"]), tuple(row["gs"]),
                      row["se_ratio"] or 0.0)
    torch.manual_seed(0)
    m = build(spec, task).to(memory_format=torch.channels_last)
    if compile_:
        m = torch.compile(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    t0 = time.perf_counter()
    for i in range(steps):
        if i == 10:
            t1 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t2 = time.perf_counter()
    return dict(flops=int(row["flops"]), first10_s=t1 - t0,
                images_per_second=128 * (steps - 10) / (t2 - t1))


def child(threads, compile_, steps):
    cmd = [sys.executable, __file__, "--child", str(threads), str(int(compile_)), str(steps)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(step_speed(int(sys.argv[2]), bool(int(sys.argv[3])),
                                    int(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip-compile", action="store_true")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    run = lambda t, c: json.loads(child(t, c, a.steps).communicate()[0])  # noqa: E731
    eager2 = run(2, False)
    print(f"eager, 1 trainer × 2 threads: {eager2['images_per_second']:.0f} img/s "
          f"(model {eager2['flops'] / 1e6:.2f} MF; first 10 steps {eager2['first10_s']:.1f} s)")
    eager1 = run(1, False)
    print(f"eager, 1 trainer × 1 thread: {eager1['images_per_second']:.0f} img/s")
    ps = [child(1, False, a.steps) for _ in range(2)]
    two = [json.loads(p.communicate()[0]) for p in ps]
    total = sum(r["images_per_second"] for r in two)
    each = " + ".join(f"{r['images_per_second']:.0f}" for r in two)
    print(f"eager, 2 trainers × 1 thread at once: {total:.0f} img/s in all ({each}) = "
          f"{total / eager2['images_per_second']:.2f}× one 2-thread trainer")
    if not a.skip_compile:
        comp = run(2, True)
        print(f"torch.compile, 1 trainer × 2 threads: {comp['images_per_second']:.0f} img/s "
              f"= {comp['images_per_second'] / eager2['images_per_second']:.2f}× eager; "
              f"compiling took {comp['first10_s']:.0f} s (per architecture)")


if __name__ == "__main__":
    main()
