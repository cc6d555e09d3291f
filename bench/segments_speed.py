"""Bounded, checksummed segments against one segment per space: `dse status`, `dse edf compare`
and `dse verify` on a store of 2 × 10,000 results, the release before bounded segments beside
this tree, in one run on copies of one store; then what `dse train` pays when it ends: the
compaction that folds 5 new results into a space of 10,000.

    .venv/bin/python bench/segments_speed.py --before /tmp/dse-before [--n 10000] [--repeat 3]

--before is a copy of the previous source (`git archive <commit> dse spaces | tar -x -C DIR`). The
results (every column the trainer writes, bench/store_speed.py's synthetic errors) are
written once as one segment per space, as the release before compacts them; each side then
runs its own `dse compact` on its own copy (before: nothing to do; now: 10 bounded segments of
at most 1,024 results, page checksums and a digest) and its own commands. Times are wall and
CPU seconds of the whole command (start-up and imports included), best of --repeat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_speed import HERE, SPACES, best, check_sides, result_frame, run, sample, side  # noqa: E402


def build(store: Path, n: int) -> None:
    """2 × n models with a result each, one segment per space (as the release before)."""
    for i, space in enumerate(SPACES):
        sample(store, space, n, HERE)
        models = pd.read_parquet(store / space / "models.parquet")
        frame = result_frame(models, space, i)
        seg = store / space / "results" / "segments"
        seg.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       seg / "000001.parquet")


def add_five(src: Path, store: Path) -> None:
    """Five new results of the first space, written by Store.write_result of `src`."""
    code = f"""
import datetime as dt
import pandas as pd
from dse.store.core import Store
s = Store({str(store)!r})
ids = pd.read_parquet(s.models_path({SPACES[0]!r}))["model_id"][:5]
for i, m in enumerate(ids):
    s.write_result({SPACES[0]!r}, dict(model_id=m, space={SPACES[0]!r}, status="done",
                   error=50.0 + i, epochs=10, dataset="synthetic",
                   finished_at=dt.datetime.now(dt.timezone.utc)))
"""
    subprocess.run([sys.executable, "-c", code], check=True, **side(src))


def in_process(src: Path, store: Path, repeat: int) -> float:
    """Milliseconds of dse.runner.pending.status on `store` with the dse of `src`, imports
    done: the part of `dse status` that reads the store, best of `repeat`."""
    code = f"""
import time
from dse.runner.pending import status
from dse.store.core import Store
best = float("inf")
for _ in range({repeat}):
    t = time.perf_counter()
    status(Store({str(store)!r}))
    best = min(best, time.perf_counter() - t)
print(best * 1000)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, **side(src))
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--n", type=int, default=10_000, help="results per space")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    check_sides(a.before)
    with tempfile.TemporaryDirectory(prefix="dse-segments-speed-") as tmp:
        base = Path(tmp) / "base"
        t = time.perf_counter()
        build(base, a.n)
        print(f"store of 2 × {a.n:,} built in {time.perf_counter() - t:.0f} s", flush=True)
        sides = {"before": a.before, "now": HERE}
        stores = {}
        for name, src in sides.items():
            stores[name] = Path(tmp) / name
            shutil.copytree(base, stores[name])
            w, c = run(src, ["compact", "--store", str(stores[name])])
            segs = sorted(p.name for p in (stores[name] / SPACES[0] / "results" / "segments")
                          .glob("*.parquet"))
            print(f"{name}: dse compact {w:.2f} s ({c:.2f} CPU); {SPACES[0]}: {len(segs)} "
                  "segments", flush=True)
        out = Path(tmp) / "out"
        out.mkdir()
        cmds = {"status": ["status"],
                "edf compare xa xe": ["edf", "compare", "xa", "xe", "--out",
                                      str(out / "edf.png")],
                "verify": ["verify"]}
        for cmd, args in cmds.items():
            for name, src in sides.items():
                if cmd == "verify" and name == "before":
                    continue  # no such command before
                w, c = best(src, [*args, "--store", str(stores[name])], a.repeat, None)
                print(f"dse {cmd}: {name} {w:.2f} s ({c:.2f} CPU)", flush=True)
        for name, src in sides.items():  # the store's part of `dse status`, in one process
            ms = in_process(src, stores[name], a.repeat * 4)
            print(f"status(store) in process, best of {a.repeat * 4}: {name} {ms:.0f} ms",
                  flush=True)
        for name, src in sides.items():  # what `dse train` pays when it ends
            add_five(src, stores[name])
            w, c = run(src, ["compact", "--store", str(stores[name])])
            print(f"fold 5 new results into 2 × {a.n:,}: {name} {w:.2f} s ({c:.2f} CPU)",
                  flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
