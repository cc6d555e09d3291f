"""The plan's time against the time the committed studies took (experiments/results/*):
each training stage of each store, as this version of dse.runner.plan would have planned it
when the stage started (the store's speed as all its multiply-adds over all their seconds;
training, test passes, the trainers' start), beside the plan before (the median speed of the
store's models; training steps only), and the stage's wall time from its results'
`finished_at`.

    .venv/bin/python bench/plan_accuracy.py [--stores experiments/results/*]

A stage is one `dse train` of an experiment: the results of one recipe (and of seed 0, or of
the other seeds) whose spaces trained over the same span of time. Its wall time is the first
result's `finished_at` minus its `train_seconds`, to the last result's (reading the data and
the calibration before the first model are not in it: seconds). The speed the plan uses is the
one `dse run` would have had: the median speed of the store's results finished before the
stage started (on these stores: the same host, CPU); a store's first stage had a calibration,
which cannot be replayed, so it is planned at the median speed of its own results (the time
model's error alone, marked "own"). Every study ran `jobs: 2` on the 2-core CPU, on 6,000
Fashion-MNIST images with the 10,000 test images.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKERS = 2          # jobs: 2 in every committed study
TEST_IMAGES = 10_000  # Fashion-MNIST's test split
DATA_S = 1.5         # reading Fashion-MNIST (bench/plan_parts.py: 0.95 + 0.52 s)


def results(store_dir: str) -> pd.DataFrame:
    """Every result of a store with its model's flops, oldest first."""
    from dse.store.core import Store

    st = Store(store_dir)
    out = []
    for s in st.spaces():
        r = st.read_results(s)
        m = st.read_models(s, ["model_id", "flops"])
        out.append(r.merge(m, on="model_id").assign(space=s))
    df = pd.concat(out, ignore_index=True).sort_values("finished_at", kind="stable")
    df["speed"] = 3 * df["flops"] * df["train_subset"] * df["epochs_run"] / df["train_seconds"]
    df["key"] = df["recipe"] + np.where(df["seed"] > 0, "-reruns", "")
    return df


def stages(df: pd.DataFrame) -> list[pd.DataFrame]:
    """The results of each stage: per recipe (seed 0 apart from reruns) and space, merged
    where their spans overlap, in the order they started."""
    spans = []
    for (key, _space), g in df.groupby(["key", "space"], sort=False):
        lo = (g["finished_at"] - pd.to_timedelta(g["train_seconds"], unit="s")).min()
        spans.append([key, lo, g["finished_at"].max(), g.index])
    spans.sort(key=lambda s: s[1])
    merged = []
    for key, lo, hi, idx in spans:
        same = next((m for m in merged if m[0] == key and lo <= m[2] and m[1] <= hi), None)
        if same is None:
            merged.append([key, lo, hi, list(idx)])
        else:
            same[1], same[2] = min(same[1], lo), max(same[2], hi)
            same[3] += list(idx)
    return [df.loc[m[3]] for m in merged]


def predict(stage: pd.DataFrame, rate: float) -> tuple[float, float]:
    """(this plan's seconds, the steps-only plan's seconds) of a stage at `rate`."""
    from dse.runner import plan
    from dse.runner.options import TrainOptions
    from dse.train.recipe import Recipe

    curves = bool(stage["history_error"].map(lambda h: h is not None and len(h) > 0).any())
    f = stage["flops"].to_numpy(float)
    ep = stage["epochs"].to_numpy(float)
    cost = float(plan.training_mult_adds(f, stage["train_subset"].to_numpy(float), ep).sum())
    tests = float(plan.test_mult_adds(f, TEST_IMAGES, ep, curves).sum())
    options = TrainOptions(recipe=Recipe(epochs=int(ep.max())), curves=curves, jobs=WORKERS,
                           device="cpu")
    p = plan.Plan(len(stage), int(ep.min()), (("fashion-mnist", 6000),), cost, rate, "",
                  ("cpu",) * WORKERS, options, tests=tests,
                  start_s=plan.WORKER_START_S + DATA_S)
    return p.eta_s, p.train_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stores", nargs="*", default=sorted(glob.glob(
        str(ROOT / "experiments/results/*"))))
    args = ap.parse_args()
    rows = []
    for store in args.stores:
        df = results(store)
        for st in stages(df):
            begin = (st["finished_at"] - pd.to_timedelta(st["train_seconds"], unit="s")).min()
            wall = (st["finished_at"].max() - begin).total_seconds()
            before = df[df["finished_at"] < begin]
            own = not len(before)
            src = st if own else before
            rate = float((src["speed"] * src["train_seconds"]).sum() / src["train_seconds"].sum())
            now, _ = predict(st, rate)  # measured_rate: all multiply-adds over all seconds
            _, old = predict(st, float(np.median(src["speed"])))  # before: the median speed
            rows.append(dict(store=Path(store).name, spaces=",".join(sorted(set(st["space"]))),
                             models=len(st), epochs=int(st["epochs"].max()),
                             speed="own" if own else "before",
                             wall_min=wall / 60, plan_min=now / 60, before_min=old / 60,
                             error=now / wall - 1, before_error=old / wall - 1))
    out = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(out.round(2).to_string(index=False))
    for name, sel in (("all stages", out), ("speed measured before the stage",
                                             out[out["speed"] == "before"])):
        if len(sel):
            print(f"{name}: median |error| {sel['error'].abs().median():.0%} "
                  f"(before {sel['before_error'].abs().median():.0%}); within ±30%: "
                  f"{(sel['error'].abs() <= 0.3).sum()} of {len(sel)} (before "
                  f"{(sel['before_error'].abs() <= 0.3).sum()})")


if __name__ == "__main__":
    main()
