"""Runtime against flops and activations (DDS §4, Fig. 12) on this machine: `dse speed` over
RegNetX, RegNetY and the reference networks, with the load average before and after (a shared
CPU slows whichever model runs during a neighbour's job).

    python bench/speed_zoo.py [--device auto] [--batch-size B] [--iters 5] [--warmup 2]
                              [--rounds 2] [--max-gf 4.1] [--out speed.png]

Prints the per-model table, both log-log fits and the acts-vs-flops exponent of each family.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.analysis import plots
from dse.cli.compare import speed_text  # noqa: E402
from dse.compare import speed, speedfit
from dse.space import zoo  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2,
                    help="Times every model is measured; the best round counts.")
    ap.add_argument("--max-gf", type=float, default=4.1,
                    help="Only models up to this many GF (the CPU cannot run the 32GF ones).")
    ap.add_argument("--out", default=None, help="Figure path.")
    a = ap.parse_args()
    cands = [speed.zoo_candidate(n) for n in [*zoo.regnet_names(), *zoo.REFERENCES]]
    cands = [c for c in cands if c.flops <= a.max_gf * 1e9]
    load0 = os.getloadavg()
    show = lambda m: print(f"  {m['name']}: {m['images_per_second']:.1f} images/s",  # noqa: E731
                           file=sys.stderr, flush=True)
    # rounds over all models; each keeps its best round (load on a shared machine varies)
    runs = [speed.measure(cands, a.device, a.batch_size, "infer", a.iters, a.warmup,
                          progress=show) for _ in range(a.rounds)]
    result = runs[0]
    result["models"] = [max(ms, key=lambda m: m["images_per_second"])
                        for ms in zip(*(r["models"] for r in runs))]
    result["fits"] = speedfit.speed_fits(result["models"])
    load1 = os.getloadavg()
    print(f"{dt.datetime.now().isoformat(timespec='minutes')}, torch {result['torch_version']}, "
          f"load average {load0[0]:.2f} before, {load1[0]:.2f} after, best of {a.rounds} "
          "rounds\n")
    print(speed_text(result))
    if a.out:
        print(f"figure: {plots.save(plots.speed_figure(result), a.out)}")


if __name__ == "__main__":
    main()
