"""Population training speed: dse's trainer vs a conventional one, same models and device.

dse: `dse train` on a temporary store (runner.run): the dataset resident on the device as
uint8, each epoch augmented by batched tensor ops, batches by index slices, loss read once
per epoch; on CUDA bf16 autocast and the whole step replayed from a CUDA graph; --jobs
models at once; test error once at the end.

Baseline, written the usual way (pycls-like): torchvision transforms on PIL images
(RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize) through a DataLoader
with workers, eager steps, fp16 autocast + GradScaler on CUDA, `loss.item()` every step, the
test split evaluated after every epoch. One model at a time.

Both use the same recipe (SGD Nesterov, per-step half-period cosine, same init), the same
images (same --train-subset) and the same epochs. Printed per model: seconds, images/s,
TFLOP/s (6 · flops · images/s), test error; for the population: models per hour and the
dse/baseline ratio.

    python bench/train_throughput.py       # small, for a CPU: 3 synthetic models of 1-3 MF,
                                           # 2 epochs on 4000 images
    python bench/train_throughput.py --dataset cifar10 --fake-cifar 50000 --flops default \\
        --train-subset 0 --n 16 --epochs 10 --jobs 4          # GPU, CIFAR-shaped
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dse.data import datasets, readers
from dse.runner import loop as runner
from dse.runner.options import TrainOptions  # noqa: E402
from dse.space import definition as spaces  # noqa: E402
from dse.space import sampling
from dse.store.core import Store  # noqa: E402
from dse.train.models import build  # noqa: E402
from dse.train.trainer import Recipe, device_name, lr_schedule, resolve_device  # noqa: E402


def write_fake_cifar(root: Path, n_train: int, n_test: int = 10_000) -> Path:
    """dse's synthetic images (learnable) written as an official cifar-10-batches-py copy."""
    a = readers.synthetic.__wrapped__(n_train, n_test, seed=0)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(n_train), 5)
    for name, idx in zip(readers.CIFAR_TRAIN, parts):
        with open(d / name, "wb") as f:
            pickle.dump({"data": a.train_x[idx].reshape(len(idx), -1),
                         "labels": a.train_y[idx].tolist()}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": a.test_x.reshape(n_test, -1), "labels": a.test_y.tolist()}, f)
    return root


# ---- the baseline ---------------------------------------------------------------------------

class PILDataset(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) arrays served as torchvision's CIFAR10/FashionMNIST do: a PIL image
    per item through a transform."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        img = self.x[i]
        img = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        return self.transform(img), int(self.y[i])


def baseline(spec, task, arrays, recipe: Recipe, device, workers: int) -> dict:
    """Train one model the conventional way; returns seconds, images/s and test error."""
    import torch.nn.functional as F
    from torchvision import transforms as T

    x, y = arrays.train_x, arrays.train_y
    if recipe.train_subset is not None:  # the same images as dse.data.device.DeviceData
        keep = np.random.default_rng(0).permutation(len(x))[: recipe.train_subset]
        x, y = x[keep], y[keep]
    sample = x[:: max(1, len(x) // 10_000)].astype(np.float64) / 255
    mean, std = sample.mean(axis=(0, 2, 3)).tolist(), sample.std(axis=(0, 2, 3)).tolist()
    pad, flip = datasets.get(arrays.name).augmentation(x.shape[-1])
    aug = [T.RandomCrop(x.shape[-1], padding=pad)] + ([T.RandomHorizontalFlip()] if flip else [])
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True  # as dse sets it, not whatever ran last
    kw = dict(num_workers=workers, pin_memory=cuda)
    train_loader = torch.utils.data.DataLoader(
        # pad after normalizing, as dse does: the padding is the mean, not black
        PILDataset(x, y, T.Compose(norm + aug)), batch_size=recipe.batch_size, shuffle=True,
        drop_last=False, **kw)
    test_loader = torch.utils.data.DataLoader(
        PILDataset(arrays.test_x, arrays.test_y, T.Compose(norm)), batch_size=200, **kw)

    torch.manual_seed(recipe.seed)
    model = build(spec, task, recipe.zero_init_final_gamma).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=recipe.nesterov, weight_decay=recipe.wd)
    steps = math.ceil(len(y) / recipe.batch_size)
    lrs = lr_schedule(recipe, steps)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    t0 = time.perf_counter()
    train_s, seen, k, err = 0.0, 0, 0, float("nan")
    for _epoch in range(recipe.epochs):
        model.train()
        te = time.perf_counter()
        for xb, yb in train_loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            for g in opt.param_groups:
                g["lr"] = lrs[min(k, len(lrs) - 1)]
            with torch.autocast(device.type, torch.float16, enabled=cuda):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            _ = loss.item()  # per-step logging
            seen += len(yb)
            k += 1
        train_s += time.perf_counter() - te
        model.eval()
        wrong = 0
        with torch.no_grad():
            for xb, yb in test_loader:
                with torch.autocast(device.type, torch.float16, enabled=cuda):
                    pred = model(xb.to(device)).argmax(1).cpu()
                wrong += int((pred != yb).sum())
        err = 100.0 * wrong / len(arrays.test_y)
    return dict(seconds=time.perf_counter() - t0, images_per_second=seen / train_s, error=err)


# ---- the run --------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthetic", choices=datasets.trainable())
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--fake-cifar", type=int, default=0, metavar="N",
                    help="with --dataset cifar10: write N synthetic training images as a "
                         "cifar-10-batches-py copy and use it (for machines without CIFAR-10)")
    ap.add_argument("--space", default="rx")
    ap.add_argument("--n", type=int, default=3, help="models in the population")
    ap.add_argument("--flops", default="1M:3M",
                    help="window LO:HI, or `default` for the dataset's default window")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=4000, help="0 = every image")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--jobs", type=int, default=1, help="dse models at once per device")
    ap.add_argument("--concurrency", choices=["processes", "streams"], default="processes",
                    help="how dse's --jobs models share a GPU")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="baseline DataLoader workers")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                    help="dse's memory format [default: dse's per-device default]")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    a = ap.parse_args(argv)

    device = resolve_device(a.device)
    recipe = Recipe(epochs=a.epochs, train_subset=a.train_subset or None)
    tmp = Path(tempfile.mkdtemp(prefix="dse-bench-"))
    data_dir = a.data_dir
    if a.fake_cifar:
        data_dir = write_fake_cifar(tmp / "data", a.fake_cifar)
    space = spaces.load(a.space)
    task = datasets.task(a.dataset)
    flops = (sampling.Window(*datasets.default_flops_window(a.dataset)) if a.flops == "default"
             else sampling.parse_window(a.flops))
    rows = sampling.sample(space, a.n, task, flops, sampling.Window(), sampling.Window(), a.seed)
    Store(tmp / "store").add_models(space, a.dataset, task, rows, a.seed)
    models = Store(tmp / "store").read_models(space.name).set_index("model_id")
    arrays = datasets.load(a.dataset, data_dir)
    n_img = recipe.train_subset or len(arrays.train_y)
    print(f"# {len(models)} {space.name} models for {a.dataset} ({flops} flops, "
          f"{models.flops.min() / 1e6:.1f}–{models.flops.max() / 1e6:.1f} MF), {a.epochs} "
          f"epoch(s) × {n_img} images; device {device_name(device)}; torch {torch.__version__}")

    t0 = time.perf_counter()
    options = TrainOptions(recipe=recipe, device=a.device, jobs=a.jobs, data_dir=data_dir,
                           concurrency=a.concurrency,
                           channels_last={"auto": None, "on": True,
                                          "off": False}[a.channels_last])
    runner.run(Store(tmp / "store"), [space.name], options)
    dse_wall = time.perf_counter() - t0
    res = Store(tmp / "store").read_results(space.name).set_index("model_id")

    out = {"device": device_name(device), "dataset": a.dataset, "epochs": a.epochs,
           "train_images": n_img, "jobs": a.jobs, "concurrency": a.concurrency, "models": []}
    base_wall = 0.0
    hdr = (f"{'model':16} {'MF':>6} | {'dse s':>7} {'img/s':>8} {'TFLOP/s':>8} {'err%':>6} | "
           f"{'base s':>7} {'img/s':>8} {'TFLOP/s':>8} {'err%':>6}")
    print(hdr)
    print("-" * len(hdr))
    for mid, m in models.sort_values("flops", ascending=False).iterrows():
        r = res.loc[mid]
        tf = 6 * m.flops * r.images_per_second / 1e12 if r.status == "done" else float("nan")
        row = {"model_id": mid, "flops": int(m.flops), "dse_seconds": float(r.train_seconds),
               "dse_images_per_second": float(r.images_per_second or 0),
               "dse_tflops": tf, "dse_error": r.error, "dse_status": r.status}
        line = (f"{mid:16} {m.flops / 1e6:6.2f} | {r.train_seconds:7.1f} "
                f"{r.images_per_second or 0:8.0f} {tf:8.4f} "
                f"{r.error if r.error is not None else float('nan'):6.2f} |")
        if not a.skip_baseline:
            from dse.space.spec import AnyNetSpec

            spec = AnyNetSpec(tuple(m.ds), tuple(m.ws), tuple(m.bs), tuple(m.gs),
                              float(m.se_ratio), int(m.stem_w))
            b = baseline(spec, task, arrays, recipe, device, a.workers)
            base_wall += b["seconds"]
            btf = 6 * m.flops * b["images_per_second"] / 1e12
            row.update(base_seconds=b["seconds"], base_images_per_second=b["images_per_second"],
                       base_tflops=btf, base_error=b["error"])
            line += (f" {b['seconds']:7.1f} {b['images_per_second']:8.0f} {btf:8.4f} "
                     f"{b['error']:6.2f}")
        print(line, flush=True)
        out["models"].append(row)
    n = len(models)
    out["dse_wall_seconds"] = dse_wall
    out["dse_models_per_hour"] = 3600 * n / dse_wall
    print(f"dse:      {n} models in {dse_wall:.1f} s wall (data loading, workers, claims "
          f"included) = {out['dse_models_per_hour']:.1f} models/hour; mean error "
          f"{res.error.mean():.2f}%")
    if not a.skip_baseline:
        out["base_wall_seconds"] = base_wall
        out["base_models_per_hour"] = 3600 * n / base_wall
        out["ratio"] = out["dse_models_per_hour"] / out["base_models_per_hour"]
        errs = [r["base_error"] for r in out["models"]]
        print(f"baseline: {n} models in {base_wall:.1f} s = {out['base_models_per_hour']:.1f} "
              f"models/hour; mean error {np.mean(errs):.2f}%")
        print(f"dse/baseline models per hour: {out['ratio']:.2f}×")
    out["machine"] = f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus"
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
