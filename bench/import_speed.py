"""Speed of `dse import` on an NDS-shaped file (the release holds >100,000 models).

Writes N records in the NDS list format — ResNet (basic), Vanilla (plain) and ResNeXt
(bottleneck, bot_muls and num_gs) CIFAR networks with 3 stages and the stem at element 0,
50-epoch histories — and times, side by side in one run: the baseline `json.load` of the
file (what every ad hoc loader does first), `imports.read` (parse and check every record),
and the whole import into a fresh store (networks, complexity, ids, models.parquet, one
results segment, space.yaml), then a second import of the same file (adds nothing).

    python bench/import_speed.py [--n 100000] [--epochs 50]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dse.store import imports
from dse.store.core import Store


def nds_file(path: Path, n: int, epochs: int, seed: int = 0) -> None:
    """N NDS records of random CIFAR networks of three block types."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        kind = ("res_basic_block", "double_plain_block", "res_bottleneck_block")[i % 3]
        ds = [1, *rng.integers(1, 17, 3).tolist()]
        ws = [16, *rng.choice([16, 32, 64, 128, 256], 3).tolist()]
        net = dict(block_type=kind, ds=ds, ws=ws, ss=[1, 1, 2, 2])
        if kind == "res_bottleneck_block":
            net.update(bot_muls=[1, *(1 / rng.choice([1, 2, 4], 3)).tolist()],
                       num_gs=[1, *rng.choice([1, 2, 4], 3).tolist()])
        errs = np.round(30 - np.linspace(0, 20, epochs) + rng.normal(0, 0.3, epochs),
                        2).tolist()
        jobs.append(dict(job_id=i, rng_seed=int(rng.integers(1, 4)), params=1, flops=1,
                         net=net, optim=dict(base_lr=0.1, wd=5e-4, max_ep=epochs,
                                             lr_policy="cos", momentum=0.9, nesterov=True),
                         min_test_top1=min(errs), test_ep_top1=errs,
                         train_ep_top1=errs, train_ep_loss=np.round(
                             np.linspace(2, 0.1, epochs), 4).tolist(),
                         train_it_loss=[], train_it_top1=[], prec_time=0.0, iter_time=0.0,
                         exp_mem=0.0, act_mem=0.0))
    path.write_text(json.dumps(jobs))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "ResNet.json"
        nds_file(f, args.n, args.epochs)
        size = f.stat().st_size
        t_json, _ = timed(lambda: json.loads(f.read_text()))
        t_read, src = timed(lambda: imports.read(f))
        store = Store(Path(tmp) / "store")
        t_all, rep = timed(lambda: imports.import_source(store, imports.read(f)))
        t_again, rep2 = timed(lambda: imports.import_source(store, imports.read(f)))
    print(f"{args.n:,} NDS records × {args.epochs} epochs, {size / 1e6:.0f} MB of JSON")
    print(f"json.load (baseline)           {t_json:7.2f} s")
    print(f"imports.read (parse + check)   {t_read:7.2f} s  ({t_read / t_json:.1f}× json.load)")
    print(f"dse import, fresh store        {t_all:7.2f} s  ({t_all / t_json:.1f}× json.load); "
          f"{rep.models_added:,} models, {rep.results_added:,} results")
    print(f"dse import again (adds nothing) {t_again:6.2f} s; {rep2.results_added} results "
          f"added, {rep2.results_held:,} held")


if __name__ == "__main__":
    main()
