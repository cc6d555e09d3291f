"""Time to sample 500 AnyNetX_A models at 360–400MF (224×224): dse vs a per-candidate loop.

The baseline is how a sampler is usually written (pycls's sweep setup works this way): draw
one candidate at a time with Python's random numbers, walk its layers to count flops, keep it
if it lands in the window. dse draws batches of 8192 candidates and counts them in closed
form with numpy. Both count the same flops (the script checks this on dse's models).

    python bench/sample_speed.py [--n 500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.space import definition as spaces  # noqa: E402
from dse.space.complexity import complexity  # noqa: E402
from dse.space.sampling import Window, sample  # noqa: E402
from dse.space.spec import AnyNetSpec, Task  # noqa: E402


def walk_flops(ds, ws, bs, gs, res=224):
    """Flops by walking every conv of the network (pycls rules), one model at a time."""
    h = (res - 1) // 2 + 1
    f = 9 * 3 * 32 * h * h
    w_in = 32
    for d, w, b, g in zip(ds, ws, bs, gs):
        for j in range(d):
            s, wb = (2 if j == 0 else 1), w // b
            h_in, h = h, (h - 1) // s + 1
            f += w_in * wb * h_in * h_in + 9 * wb * g * h * h + wb * w * h * h
            if w_in != w or s != 1:
                f += w_in * w * h * h
            w_in = w
    return f + w_in * 1000 + 1000


def baseline(n, seed=0, lo=360e6, hi=400e6):
    """One candidate at a time: log-uniform draws, compatibility rounding, a layer walk."""
    rng = random.Random(seed)
    logu = lambda a, b, q: max(a, min(b, round(math.exp(rng.uniform(math.log(a), math.log(b)))
                                                 / q) * q))
    out, seen, draws = [], set(), 0
    while len(out) < n:
        draws += 1
        ds = [logu(1, 16, 1) for _ in range(4)]
        ws = [logu(8, 1024, 8) for _ in range(4)]
        bs = [rng.choice((1, 2, 4)) for _ in range(4)]
        gs = [rng.choice((1, 2, 4, 8, 16, 32)) for _ in range(4)]
        vs = [max(1, w // b) for w, b in zip(ws, bs)]
        gs = [min(g, v) for g, v in zip(gs, vs)]
        ws = [max(g, round(v / g) * g) * b for v, g, b in zip(vs, gs, bs)]
        f = walk_flops(ds, ws, bs, gs)
        key = (tuple(ds), tuple(ws), tuple(bs), tuple(gs))
        if lo <= f <= hi and key not in seen:
            seen.add(key)
            out.append(key)
    return out, draws


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    space, task, window = spaces.load("anynetxa"), Task(), Window(360e6, 400e6)

    d_min, d_med, rows = best_of(lambda: sample(space, args.n, task, window, seed=0),
                                 args.repeats)
    b_min, b_med, (_, draws) = best_of(lambda: baseline(args.n), max(1, args.repeats // 2))
    for r in rows[:50]:  # the two flop counts agree
        spec = AnyNetSpec(tuple(r["ds"]), tuple(r["ws"]), tuple(r["bs"]), tuple(r["gs"]))
        assert walk_flops(r["ds"], r["ws"], r["bs"], r["gs"]) == complexity(spec, task)["flops"]

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "dse.cli", "sample", "--space", "xa", "--n", str(args.n),
               "--dataset", "imagenet", "--store", tmp]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True,
                       cwd=Path(__file__).resolve().parent.parent)
        cli_s = time.perf_counter() - t

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}")
    print(f"sample {args.n} anynetxa models, flops 360M–400M, 224×224 "
          f"(baseline needed {draws:,} draws)")
    print(f"  dse sampler      best {d_min:.3f} s  median {d_med:.3f} s")
    print(f"  per-candidate    best {b_min:.3f} s  median {b_med:.3f} s")
    print(f"  speed-up         {b_min / d_min:.1f}×")
    print(f"  `dse sample` CLI end to end (imports, sampling, Parquet write): {cli_s:.2f} s")


if __name__ == "__main__":
    main()
