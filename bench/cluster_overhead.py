"""What `dse train --cluster` costs over a plain `dse train` on the same population.

Samples one small synthetic population, copies it per run, and times each way of training
it end to end as a user would run it (a `dse` process): seconds from the command's start to
its first claim (the start-up: imports, data, and for a cluster run the submission, the job
start and submitit's unpickling), total wall seconds, and models/hour over the whole run.

    .venv/bin/python bench/cluster_overhead.py [--n 8] [--repeats 2] [--slurm]

--slurm adds the test Slurm of tests/slurm/start.sh (SLURM_CONF as that script sets it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = ["--epochs", "1", "--train-subset", "1000"]


def dse(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dse", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(store: Path, extra: list[str], env: dict) -> tuple[float, float]:
    """(seconds to the first claim, total seconds) of one `dse train` on `store`."""
    claims = store / "regnetx" / "claims"
    t0 = time.perf_counter()
    p = dse("train", "--store", store, *RECIPE, *extra, env=env)
    first = None
    while p.poll() is None:
        if first is None and claims.is_dir() and any(claims.glob("*.json")):
            first = time.perf_counter() - t0
        time.sleep(0.02)
    total = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"dse train {' '.join(extra)} failed: {p.stderr.read()}")
    return (first if first is not None else total), total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="models in the population")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--slurm", action="store_true", help="also --cluster slurm")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.slurm:
        env.setdefault("SLURM_CONF", "/tmp/dse-slurm/slurm.conf")
    ways = {"plain dse train": [],
            "--cluster local --tasks 1": ["--cluster", "local", "--tasks", "1", "--wait"],
            "--cluster local --tasks 2": ["--cluster", "local", "--tasks", "2", "--wait"]}
    if a.slurm:
        ways["--cluster slurm --tasks 2"] = ["--cluster", "slurm", "--tasks", "2", "--wait"]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        p = dse("sample", "--space", "rx", "--n", a.n, "--dataset", "synthetic",
                "--flops", "0.5M:2M", "--store", base)
        if p.wait():
            raise SystemExit(p.stderr.read())
        rows = {w: [] for w in ways}
        for r in range(a.repeats):
            for way, extra in ways.items():  # interleaved, so load changes hit every way
                store = Path(tmp) / f"s{r}{len(rows[way])}{abs(hash(way))}"
                shutil.copytree(base, store)
                rows[way].append(timed(store, extra, env))
                print(f"{way}: {rows[way][-1][0]:.1f} s to the first claim, "
                      f"{rows[way][-1][1]:.1f} s in all", file=sys.stderr, flush=True)
        load = os.getloadavg()
    print(f"{a.n} synthetic RegNetX models (0.5–2 MF), {' '.join(RECIPE)}, "
          f"median of {a.repeats}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| how | to first claim (s) | wall (s) | models/hour |")
    print("|---|---|---|---|")
    for way, xs in rows.items():
        start = statistics.median(x[0] for x in xs)
        wall = statistics.median(x[1] for x in xs)
        print(f"| {way} | {start:.1f} | {wall:.1f} | {3600 * a.n / wall:.0f} |")


if __name__ == "__main__":
    main()
