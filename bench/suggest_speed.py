"""`dse suggest` speed on 1,000 models (target ≤ 5 s on a 2-core CPU), side by side with a
baseline in the same run: the same candidates with every model's e_fit computed (no cap on
the linear-rule fit) and the exact KS test, the way one would first write it. Then the
permutation test's random top sets at --sets-n models: a full ranking of each row of draws
(np.argsort) beside the partition suggest uses (np.argpartition), with a check that both
give the same sets.

    .venv/bin/python bench/suggest_speed.py [--n 1000] [--space anynetxa] [--repeat 3]
        [--sets-n 1000,10000]

The population is sampled from the space (CIFAR task, 1–50 MF) and its errors follow a known
rule (b = 1 in every stage is better) plus noise; the script also prints what suggest ranked
first, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dse.method import claims as expect
from dse.method import suggest  # noqa: E402
from dse.space import definition as spaces
from dse.space import sampling
from dse.space.spec import Task  # noqa: E402


def population(name: str, n: int, seed: int = 0):
    space = spaces.load(name)
    pop = pd.DataFrame(sampling.sample(space, n, Task(32, "cifar", 3, 10),
                                       sampling.Window(1e6, 50e6), seed=seed))
    pop["space"], pop["kind"] = space.name, space.kind
    rng = np.random.default_rng(seed + 1)
    pop["error"] = (20 + 3 * pop["bs"].map(lambda b: np.mean(np.array(b) != 1))
                    + rng.normal(size=n))
    return space, pop


def timed(fn, repeat):
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return best, cpu, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--space", default="anynetxa")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets-n", default="1000,10000",
                    help="models for the permutation sets' comparison")
    a = ap.parse_args()
    space, pop = population(a.space, a.n)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; {a.n} {space.name} models")
    wall, cpu, out = timed(lambda: suggest.suggest(space, pop), a.repeat)
    first = out.candidates[0]
    print(f"dse suggest: {wall:.2f} s wall, {cpu:.2f} s CPU (best of {a.repeat}); "
          f"first: {first.constraint} (significant {first.significant})")
    cap, exact = suggest.LINEAR_FIT, expect.one_sided.__defaults__
    suggest.LINEAR_FIT = a.n + 1  # baseline: fit every model, exact KS
    expect.one_sided.__defaults__ = (None, None, True)
    orig = suggest.one_sided
    suggest.one_sided = lambda x, y, exact=True: orig(x, y)
    try:
        bw, bc, bout = timed(lambda: suggest.suggest(space, pop), 1)
    finally:
        suggest.LINEAR_FIT, expect.one_sided.__defaults__ = cap, exact
        suggest.one_sided = orig
    print(f"baseline (all e_fit, exact KS): {bw:.2f} s wall, {bc:.2f} s CPU; first: "
          f"{bout.candidates[0].constraint}")
    print(f"ratio baseline / dse: {bw / wall:.1f}× wall, {bc / cpu:.1f}× CPU")
    for n in map(int, a.sets_n.split(",")):
        k = max(1, round(0.25 * n))
        fw, fc, want = timed(lambda n=n, k=k: np.argsort(
            np.random.default_rng(0).random((suggest.PERMUTATIONS, n)), axis=1)[:, :k],
            a.repeat)
        pw, pc, got = timed(lambda n=n, k=k: suggest.random_sets(np.random.default_rng(0), n,
                                                                 k), a.repeat)
        same = bool((np.sort(want, axis=1) == np.sort(got, axis=1)).all())
        print(f"{suggest.PERMUTATIONS} random top sets of {k} among {n}: argsort {fw:.2f} s "
              f"wall ({fc:.2f} CPU), argpartition {pw:.2f} s ({pc:.2f} CPU), "
              f"{fc / pc:.1f}× CPU; the same sets: {same}")


if __name__ == "__main__":
    main()
