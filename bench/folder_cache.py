"""Decoding and caching a folder dataset: dse.data.folders against a per-epoch decoding pipeline.

    .venv/bin/python bench/folder_cache.py [--n 3000] [--resolution 32] [--classes 10]

Generates N JPEGs of ImageNet-like aspect ratios (a few sizes between 64 and 500 px) in
class folders, then measures, side by side in one run:
  dse, first read     decode every image once (Pillow, draft mode for JPEG), resize the
                      shorter side to R, centre-crop, in 1 and in all worker processes, then
                      write the uint8 cache
  dse, cached read    the same call again: the arrays come from the .npz cache
  baseline            one epoch of torchvision's ImageFolder with Resize(R) + CenterCrop(R) +
                      PILToTensor through a DataLoader (what a pipeline that decodes every
                      epoch pays each epoch), with the same number of worker processes
and reports images/s and the ratios, including a 10-epoch proxy run's data cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dse.data import folders  # noqa: E402


def make_tree(root: Path, n: int, classes: int, seed: int = 0) -> None:
    """n JPEGs in train/ (90%) and val/ (10%), sizes like ImageNet's (smaller on average)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = [(500, 375), (375, 500), (320, 240), (200, 200), (160, 120), (96, 64)]
    for i in range(n):
        split = "val" if (i // classes) % 10 == 0 else "train"
        d = root / split / f"c{i % classes:03d}"
        d.mkdir(parents=True, exist_ok=True)
        w, h = sizes[i % len(sizes)]
        base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)  # smooth, like photos
        img.save(d / f"{i}.JPEG", quality=90)


def baseline_epoch(root: Path, r: int, workers: int) -> float:
    """Seconds for one pass of ImageFolder + Resize + CenterCrop + PILToTensor."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize(r), transforms.CenterCrop(r),
                             transforms.PILToTensor()])
    n = 0
    t0 = time.perf_counter()
    for split in ("train", "val"):
        ds = datasets.ImageFolder(str(root / split), transform=tf)
        loader = torch.utils.data.DataLoader(ds, batch_size=256, num_workers=workers)
        for x, _ in loader:
            n += len(x)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_tree(tmp / "imgs", a.n, a.classes)
        print(f"# {a.n} JPEGs in {a.classes} classes generated in "
              f"{time.perf_counter() - t0:.1f} s; R = {a.resolution}; {cores} cores")
        rows = []
        for jobs in sorted({1, cores}):
            t0 = time.perf_counter()
            arr = folders.load(tmp / "imgs", a.resolution, cache=tmp / f"cache{jobs}", jobs=jobs)
            rows.append((f"dse first read, {jobs} process(es)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        folders.load(tmp / "imgs", a.resolution, cache=tmp / f"cache{cores}")
        rows.append(("dse cached read", time.perf_counter() - t0))
        for workers in sorted({0, cores}):
            rows.append((f"baseline epoch, {workers} DataLoader worker(s)",
                         baseline_epoch(tmp / "imgs", a.resolution, workers)))
        n = len(arr.train_y) + len(arr.test_y)
        size = sum(f.stat().st_size for f in (tmp / f"cache{cores}").glob("*.npz"))
    print(f"{'what':44} {'seconds':>8} {'images/s':>10}")
    for what, s in rows:
        print(f"{what:44} {s:8.2f} {n / s:10.0f}")
    first = dict(rows)[f"dse first read, {cores} process(es)"]
    cached = dict(rows)["dse cached read"]
    base = dict(rows)[f"baseline epoch, {cores} DataLoader worker(s)"]
    print(f"cache: {size / 2**20:.1f} MiB for {n} images at {a.resolution}×{a.resolution}")
    print(f"cached read vs one baseline epoch: {base / cached:.0f}× faster")
    print(f"data cost of a 10-epoch proxy run: baseline {10 * base:.1f} s, dse {first:.1f} s "
          f"the first time ({10 * base / first:.1f}×), {cached:.2f} s after "
          f"({10 * base / cached:.0f}×)")


if __name__ == "__main__":
    main()
