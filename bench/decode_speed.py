"""Decoding + augmentation throughput of streamed ImageNet on the CPU: PIL vs torchvision.io.

Generates --n JPEGs at ImageNet-like sizes (mostly 500×375 and 375×500, some up to 800×600,
quality 90, textured so that they compress like photos) in an ImageNet layout, then times
one image at a time in this process (one thread: images/s per core):

    PIL + transforms   Image.open → RGB → RandomResizedCrop(224) + flip on the PIL image
                       (torchvision.transforms, as pycls and most ImageNet loaders) → tensor
    decode_jpeg + v2   torchvision.io.decode_jpeg → transforms.v2 RandomResizedCrop + flip
                       on the uint8 tensor
    decode_image + v2  the same with decode_image (which also reads PNG, grey and CMYK)
    dse.data.ondisk         what StreamData's workers run: decode_image, crop, one channels-last
                       uint8 antialiased resize, flip

and the test transform (shorter side to 256, centre 224×224) by PIL and by dse.data.ondisk; then
StreamData's DataLoader (uint8 batches of --batch, as a GPU run receives them) with 1 and 2
worker processes. Prints a table with the ratios to PIL.

    python bench/decode_speed.py [--n 300] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms as T  # noqa: E402
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from dse.data import ondisk as stream  # noqa: E402

SIZES = [(500, 375)] * 5 + [(375, 500)] * 2 + [(500, 333), (333, 500), (500, 500), (640, 480),
                                                (800, 600)]  # (w, h)


def write_jpegs(root: Path, n: int, seed: int = 0) -> float:
    """n photo-like JPEGs in root/{train,val}/n000000{0,1}/; returns the mean file size (KB)."""
    rng = np.random.default_rng(seed)
    total = 0
    for i in range(n):
        w, h = SIZES[rng.integers(len(SIZES))]
        # smooth colour regions + a mid-frequency texture + sensor noise
        low = rng.uniform(0, 255, (h // 32 + 2, w // 32 + 2, 3)).astype(np.uint8)
        x = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), np.float32)
        tex = rng.normal(128, 40, (h // 4 + 1, w // 4 + 1)).clip(0, 255).astype(np.uint8)
        x += np.asarray(Image.fromarray(tex).resize((w, h), Image.BILINEAR), np.float32)[
            ..., None] - 128
        x += rng.normal(0, 8, (h, w, 3))
        im = Image.fromarray(x.clip(0, 255).astype(np.uint8))
        for split in ("train", "val") if i % 10 < 2 else ("train",):  # val: every 5th
            d = root / split / f"n0000000{i % 2}"
            d.mkdir(parents=True, exist_ok=True)
            im.save(d / f"{i:05d}.JPEG", quality=90)
        total += (root / "train" / f"n0000000{i % 2}" / f"{i:05d}.JPEG").stat().st_size
    return total / n / 1024


def per_image(files, fn, repeats: int) -> float:
    """Best images/s of fn over every file, in this process."""
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for f in files:
            fn(f)
        best = max(best, len(files) / (time.perf_counter() - t))
    return best


def pipelines():
    """name → one image's decode + augmentation, each giving uint8 pixels."""
    rrc, flip = T.RandomResizedCrop(224), T.RandomHorizontalFlip()
    rrc2, flip2 = v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()
    test_pil = T.Compose([T.Resize(256), T.CenterCrop(224)])

    def pil(f):
        with Image.open(f) as im:
            return im.convert("RGB")

    def dse_train(f):
        x = stream.decode(f)
        rnd = stream.random.Random(zlib.crc32(f.encode()))
        x = stream.resize(stream.crop(x, *stream.crop_box(x.shape[1], x.shape[2], rnd)),
                          224, 224)
        return x.flip(2) if rnd.random() < 0.5 else x

    train = {
        "PIL + transforms": lambda f: torch.from_numpy(np.array(flip(rrc(pil(f))))),
        "decode_jpeg + v2": lambda f: flip2(rrc2(decode_jpeg(read_file(f),
                                                             mode=ImageReadMode.RGB))),
        "decode_image + v2": lambda f: flip2(rrc2(decode_image(read_file(f),
                                                               mode=ImageReadMode.RGB))),
        "dse.data.ondisk": dse_train,
    }
    test = {
        "PIL + transforms": lambda f: torch.from_numpy(np.array(test_pil(pil(f)))),
        "dse.data.ondisk": lambda f: stream.centre_crop(stream.decode(f), 224),
    }
    decode = {"PIL": pil, "decode_image": lambda f: stream.decode(f)}
    return train, test, decode


def loader_speed(root: Path, workers: int, batch: int, repeats: int) -> float:
    """Images/s of StreamData's DataLoader (train augmentation, uint8 host batches), best of
    `repeats` passes after one that starts the workers."""
    data = stream.StreamData(root, "cpu", workers=workers)
    rng = np.random.default_rng(0)
    n = data.n_train // batch * batch
    keys = list(zip(rng.permutation(data.n_train)[:n].tolist(),
                    rng.integers(0, 2**62, n).tolist()))
    plan = [keys[i: i + batch] for i in range(0, n, batch)]
    best = 0.0
    for r in range(repeats + 1):
        t = time.perf_counter()
        for _ in data.host_batches(plan):
            pass
        if r:
            best = max(best, n / (time.perf_counter() - t))
    data.close()
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300, help="images to generate")
    ap.add_argument("--batch", type=int, default=64, help="DataLoader batch size")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many passes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0))
    print(f"{platform.machine()} {platform.processor() or ''}, {cores} cores, torch "
          f"{torch.__version__}, torchvision {torchvision.__version__}, Pillow "
          f"{Image.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kb = write_jpegs(root, args.n)
        files = sorted(str(p) for p in (root / "train").rglob("*.JPEG"))
        print(f"{len(files)} JPEGs, mean {kb:.0f} KB, sizes {sorted(set(SIZES))}")
        train, test, decode = pipelines()
        rows = []
        for title, group in (("decode only", decode), ("train: decode + RandomResizedCrop "
                             "224 + flip", train), ("test: decode + resize 256 + centre 224",
                                                    test)):
            speeds = {k: per_image(files, fn, args.repeats) for k, fn in group.items()}
            base = next(iter(speeds.values()))
            rows += [(title, k, v, v / base) for k, v in speeds.items()]
        base = next(v for t, k, v, _ in rows if t.startswith("train"))
        for w in (1, 2):
            v = loader_speed(root, w, args.batch, args.repeats)
            rows.append((f"DataLoader, batches of {args.batch}, train", f"dse.data.ondisk, {w} "
                         f"worker{'s' * (w > 1)}", v, v / base))
    print("\n| what | pipeline | img/s | ratio to PIL |\n|---|---|---|---|")
    for title, k, v, ratio in rows:
        print(f"| {title} | {k} | {v:.0f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
