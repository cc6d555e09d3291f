"""Store speed: whole commands (`dse status`, `edf compare`, `trends`, `suggest`, `report`, ...)
on stores of 2 × 20, 2 × 1,000, 2 × 10,000 and 100,000 results, dse before compacted results
beside dse now, in one run on one store; and the cost of writing one trained model's result.

    .venv/bin/python bench/store_speed.py --before /tmp/dse-before [--sizes 20,1000,10000]
        [--big 50000] [--repeat 1] [--timeout 900]

--before is a copy of the previous release's source (`git archive 5937511 dse spaces | tar -x
-C DIR`): its commands run with PYTHONPATH=DIR on the store as the trainer leaves it (one
Parquet file per result); then `dse compact` folds the files into segments and the same
commands run with this tree's dse. Results are synthetic (error = a smooth function of the
model's flops, width and depth plus noise, 2% diverged) with every column the trainer writes,
one file per model as pandas writes a one-row frame. Times are wall and CPU seconds of the
whole command (start-up and imports included), best of --repeat.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent.parent
SPACES = ("anynetxa", "anynetxe")


def sample(store: Path, space: str, n: int, src: Path) -> None:
    """n synthetic models of a space, with the dse of `src`."""
    run(src, ["sample", "--space", space, "--n", str(n), "--dataset", "synthetic",
              "--flops", "0.5M:20M", "--seed", "1", "--store", str(store)])


def result_frame(models: pd.DataFrame, space: str, seed: int) -> pd.DataFrame:
    """A trained-looking result per model: every column `dse train` writes."""
    rng = np.random.default_rng(seed)
    n = len(models)
    w = models["ws"].map(lambda ws: float(np.mean(ws))).to_numpy()
    d = models["ds"].map(lambda ds: float(np.sum(ds))).to_numpy()
    err = (60 - 4 * np.log(models["flops"].to_numpy()) + 0.02 * np.abs(w - 96)
           + 0.3 * np.abs(d - 12) + rng.normal(0, 1.5, n) - (2.0 if space == "anynetxe" else 0))
    status = np.where(rng.random(n) < 0.02, "diverged", "done")
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame(dict(
        model_id=models["model_id"], space=space, status=status,
        error=np.where(status == "done", np.clip(err, 5, 90), np.nan),
        message=np.where(status == "done", "", "loss is nan at epoch 3"),
        epochs=10, batch_size=128, lr=0.05, wd=5e-5, seed=0, dataset="synthetic",
        train_subset=None, train_seconds=rng.uniform(5, 30, n),
        images_per_second=rng.uniform(800, 2000, n), train_loss=rng.uniform(0.1, 2, n),
        device="cpu", torch_version="2.14.1", dse_version="0.1.0",
        finished_at=[now + pd.Timedelta(seconds=i) for i in range(n)],
        momentum=0.9, nesterov=True, warmup_epochs=0.0, zero_init_final_gamma=True,
        augment=True, precision="fp32", cuda_graph=False, channels_last=True,
        epochs_run=np.where(status == "done", 10, 3), host="bench"))


def write_result_files(store: Path, space: str, frame: pd.DataFrame) -> float:
    """One Parquet file per result, as pandas writes a one-row frame; returns seconds."""
    d = store / space / "results"
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)  # pandas' types and metadata
    t = time.perf_counter()
    for i, mid in enumerate(frame["model_id"]):
        pq.write_table(table.slice(i, 1), d / f"{mid}.parquet")
    return time.perf_counter() - t


def run(src: Path, args: list[str], timeout: float | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one `dse` command run with the dse of `src`; (inf, inf) past
    `timeout`. CPU (user + system of the command) is the honest number on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "dse", *args], capture_output=True,
                           text=True, timeout=timeout, **side(src))
    except subprocess.TimeoutExpired:
        return float("inf"), float("inf")
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"dse {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def side(src: Path) -> dict:
    """Run a process with the dse of `src`: on PYTHONPATH, from a folder without a dse of its
    own (`python -m` and `-c` put the working directory first on sys.path)."""
    return dict(env={**os.environ, "PYTHONPATH": str(src), "MPLBACKEND": "Agg"},
                cwd=tempfile.gettempdir())


def check_sides(before: Path) -> None:
    """Each side imports its own dse."""
    for src in (before, HERE):
        out = subprocess.run([sys.executable, "-c", "import dse; print(dse.__file__)"],
                             capture_output=True, text=True, check=True, **side(src))
        assert Path(out.stdout.strip()).is_relative_to(src), (src, out.stdout)


def commands(store: Path, out: Path, big: bool) -> dict[str, list[str]]:
    s = ["--store", str(store)]
    cmds = {"status": ["status", *s],
            "edf compare": ["edf", "compare", "xa", "xe", "--out", str(out / "edf.png"), *s],
            "trends": ["trends", "xe", "--out", str(out / "trends.png"), *s],
            "suggest": ["suggest", "anynetxe", *s],
            "report": ["report", "--out", str(out / "report.html"), *s]}
    if big:
        cmds = {**cmds, "fit-linear": ["fit-linear", "--space", "xe", "--out",
                                       str(out / "fit.png"), *s],
                "search-efficiency": ["search-efficiency", "xa", "xe", "--out",
                                      str(out / "search.png"), *s]}
    return cmds


def best(src: Path, args: list[str], repeat: int, timeout: float | None) -> tuple:
    return min(run(src, args, timeout) for _ in range(repeat))


def write_cost(src: Path, n: int = 300) -> float:
    """Milliseconds per Store.write_result of one result row, with the dse of `src`."""
    code = f"""
import time, tempfile, datetime as dt
from dse.store.core import Store
s = Store(tempfile.mkdtemp())
row = dict(space="x", status="done", error=10.0, epochs=10, dataset="synthetic",
           finished_at=dt.datetime.now(dt.timezone.utc))
for i in range(20):
    s.write_result("x", dict(row, model_id=f"w{{i:015d}}"))
t = time.perf_counter()
for i in range({n}):
    s.write_result("x", dict(row, model_id=f"{{i:016d}}"))
print((time.perf_counter() - t) / {n} * 1000)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, **side(src))
    return float(out.stdout.strip())


def one_size(n_per_space: int, before: Path | None, repeat: int, tmp: Path,
             timeout: float | None) -> dict:
    """Build a store of len(SPACES) × n results; time every command before and now."""
    store, out = tmp / f"store{n_per_space}", tmp / f"out{n_per_space}"
    out.mkdir()
    row = dict(size=f"{len(SPACES)} × {n_per_space:,}")
    t = time.perf_counter()
    for i, space in enumerate(SPACES):
        sample(store, space, n_per_space, HERE)
        if n_per_space:
            models = pd.read_parquet(store / space / "models.parquet")
            write_result_files(store, space, result_frame(models, space, i))
    print(f"{row['size']}: store built in {time.perf_counter() - t:.0f} s", flush=True)
    cmds = commands(store, out, big=before is None)
    if before is not None:
        for name, args in cmds.items():
            row[f"{name} before"] = best(before, args, repeat, timeout)
            show("before", name, row[f"{name} before"])
    row["compact"] = run(HERE, ["compact", "--store", str(store)])
    show("now", "dse compact", row["compact"])
    for name, args in cmds.items():
        row[name] = best(HERE, args, repeat, timeout)
        show("now", name, row[name])
    shutil.rmtree(store)
    return row


def show(side: str, name: str, t: tuple) -> None:
    print(f"  {side} {name}: {t[0]:.2f} s wall, {t[1]:.2f} s CPU", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True,
                    help="source tree of the previous release (PYTHONPATH for 'before')")
    ap.add_argument("--sizes", default="20,1000,10000",
                    help="results per space, side by side (20: about the fixed cost)")
    ap.add_argument("--big", type=int, default=50_000,
                    help="results per space of the large store, now only (0: none)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds after which a command is reported as '> timeout'")
    a = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    check_sides(a.before)
    wb, wn = write_cost(a.before), write_cost(HERE)
    print(f"write one result: before {wb:.2f} ms, now {wn:.2f} ms ({wn / wb:.2f}×)")
    with tempfile.TemporaryDirectory(prefix="dse-store-speed-") as tmp:
        rows = [one_size(int(n), a.before, a.repeat, Path(tmp), a.timeout)
                for n in a.sizes.split(",")]
        if a.big:
            rows.append(one_size(a.big, None, a.repeat, Path(tmp), a.timeout))
    for r in rows:
        print(" | ".join(f"{k}: {v[0]:.2f} s ({v[1]:.2f} CPU)" if isinstance(v, tuple)
                         else f"{k}: {v}" for k, v in r.items()))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
