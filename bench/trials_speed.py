"""Trials speed: whole commands on a store written before results were keyed by recipe and
seed, read by the release before trials and by this tree, side by side in one run; then the
same store with 3 seeds per model and a second recipe, read by this tree.

    .venv/bin/python bench/trials_speed.py --before /tmp/dse-before-trials [--n 50000]

--before is a copy of the release before trials (`git archive 3ddf4c8 dse spaces | tar -x -C
DIR`). The store (2 spaces × n synthetic results, every column the old trainer wrote, no
`recipe` column) is compacted by the old release, so this tree computes each result's recipe
fingerprint when it reads the segment: the cost of opening an old store unchanged. Reuses
bench/store_speed.py's generators. Times are wall and CPU seconds of the whole command.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import store_speed as ss  # noqa: E402

HERE = ss.HERE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--n", type=int, default=50_000, help="results per space")
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    ss.check_sides(a.before)
    with tempfile.TemporaryDirectory(prefix="dse-trials-speed-") as tmp:
        store, out = Path(tmp) / "store", Path(tmp) / "out"
        out.mkdir()
        for i, space in enumerate(ss.SPACES):
            ss.sample(store, space, a.n, HERE)
            models = pd.read_parquet(store / space / "models.parquet")
            ss.write_result_files(store, space, ss.result_frame(models, space, i))
        ss.run(a.before, ["compact", "--store", str(store)])
        print(f"store: {len(ss.SPACES)} × {a.n:,} results, compacted by the old release")
        cmds = {k: v for k, v in ss.commands(store, out, big=False).items()
                if k in ("status", "edf compare", "trends")}
        for name, args in cmds.items():
            b, n = ss.run(a.before, args), ss.run(HERE, args)
            print(f"| {name} | {b[0]:.2f} s ({b[1]:.2f}) | {n[0]:.2f} s ({n[1]:.2f}) | "
                  f"{n[0] / b[0]:.2f}× |", flush=True)
        # seeds 1 and 2 of every model and a second recipe for a quarter: one more segment
        for i, space in enumerate(ss.SPACES):
            models = pd.read_parquet(store / space / "models.parquet")
            base = ss.result_frame(models, space, i)
            extra = [base.assign(seed=s, error=base["error"] + np.random.default_rng(s)
                                 .normal(0, 1, len(base))) for s in (1, 2)]
            extra.append(base.head(len(base) // 4).assign(epochs=40))
            t = pa.Table.from_pandas(pd.concat(extra, ignore_index=True), preserve_index=False)
            pq.write_table(t, store / space / "results" / "extra.parquet")
        ss.run(HERE, ["compact", "--store", str(store)])
        print(f"store: + 2 seeds per model and a 40-epoch recipe for a quarter "
              f"({len(ss.SPACES)} × {int(a.n * 3.25):,} results), this tree")
        for name, args in {**cmds, "edf compare --recipe epochs=40":
                           [*cmds["edf compare"], "--recipe", "epochs=40"]}.items():
            n = ss.run(HERE, args)
            print(f"| {name} | | {n[0]:.2f} s ({n[1]:.2f}) | |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
