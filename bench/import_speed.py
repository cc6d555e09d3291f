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
    """(wall seconds, CPU seconds of this process, fn's value)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "ResNet.json"
        nds_file(f, args.n, args.epochs)
        size = f.stat().st_size
        t_json = timed(lambda: json.loads(f.read_text()))
        t_read = timed(lambda: imports.read(f))
        store = Store(Path(tmp) / "store")
        t_all = timed(lambda: imports.import_source(store, imports.read(f)))
        t_again = timed(lambda: imports.import_source(store, imports.read(f)))
    rep, rep2 = t_all[2], t_again[2]
    print(f"{args.n:,} NDS records × {args.epochs} epochs, {size / 1e6:.0f} MB of JSON; "
          "wall s / CPU s (ratio to json.load in CPU time)")
    for what, t in (("json.load (baseline)", t_json), ("imports.read (parse + check)", t_read),
                    ("dse import, fresh store", t_all),
                    ("dse import again (adds nothing)", t_again)):
        print(f"{what:32s} {t[0]:7.2f} / {t[1]:6.2f}  ({t[1] / t_json[1]:.1f}×)")
    print(f"{rep.models_added:,} models and {rep.results_added:,} results added; again: "
          f"{rep2.results_added} added, {rep2.results_held:,} held")

if __name__ == "__main__":
    main()
