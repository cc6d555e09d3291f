"""ImageNet streamed from disk while training, as pycls feeds it (torch + torchvision).

    <root>/train/<class>/*.JPEG     classes: the sorted folder names, labels 0..K-1
    <root>/val/<class>/*.JPEG       the same class folders

ImageNet at 224×224 is ~200 GB as uint8 and fits no device, so `StreamData` decodes it on
every epoch: a torch DataLoader whose worker processes read each JPEG, decode it and
augment it in uint8 (torchvision.io and torch's resize: 1.5–2× the throughput of PIL +
torchvision.transforms here, bench/RESULTS.md), pycls's way: for training a random-resized
crop (8–100% of the area, aspect 3/4–4/3) resized to R×R plus a horizontal flip; for testing
the shorter side resized to 256/224·R and the centre R×R. Batches travel pinned and uint8
and are normalized on the device with ImageNet's mean and std, so `dse.train.trainer.train` takes a
StreamData as it takes a `dse.data.device.DeviceData`.

Each image's crop and flip come from its own seed, drawn per epoch from the trainer's
generator: the same seed gives the same batches whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dse.data.device import steps_per_epoch, subset
from dse.errors import ArgumentError, DseError, one_line, out_of_bounds
from dse.system import cpu_cores

EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp")  # what torchvision.io.decode_image reads
MEAN = (0.485, 0.456, 0.406)  # ImageNet's RGB mean and std, in 0..1 units
STD = (0.229, 0.224, 0.225)
CROP_AREA = (0.08, 1.0)       # RandomResizedCrop: fraction of the image's area …
CROP_RATIO = (3 / 4, 4 / 3)   # … and aspect ratio (w/h) of the crop
TEST_RESIZE = 256 / 224       # shorter side before the centre crop, per pixel of R
PREFETCH = 2                  # batches each worker keeps ready
TEST_BATCH = 250              # at most this many test images per loaded batch: pinned memory


# ---- the image list --------------------------------------------------------------------------

class ImageList(NamedTuple):
    """An ImageNet-layout tree, listed: file paths (numpy bytes, os.fsdecode gives the str),
    int64 labels (the class's index in `classes`) and the sorted class names."""

    train_files: np.ndarray
    train_labels: np.ndarray
    val_files: np.ndarray
    val_labels: np.ndarray
    classes: tuple[str, ...]


def list_images(root: str | os.PathLike) -> ImageList:
    """Every image of root/train and root/val, checked (the same non-empty class folders in
    both), without decoding one: the counts a run checks its batch size against."""
    root = Path(root)
    layout = "train/<class>/*.JPEG and val/<class>/*.JPEG"
    if not (root / "train").is_dir():
        raise DseError(f"{root} has no train/ folder; ImageNet must be laid out as {layout}")
    if not (root / "val").is_dir():
        raise DseError(f"{root} has train/ but no val/ folder; ImageNet must be laid out as "
                       f"{layout}")
    classes = _class_folders(root / "train")
    if not classes:
        raise DseError(f"{root / 'train'} holds no class folders; expected {layout}")
    val_classes = _class_folders(root / "val")
    if not val_classes and _images_in(root / "val"):
        raise DseError(f"{root / 'val'} holds images but no class folders; sort them into "
                       "val/<class>/ (as torchvision's ImageNet preparation does)")
    if val_classes != classes:
        only = [(w, sorted(set(a) - set(b))) for w, a, b in
                (("train", classes, val_classes), ("val", val_classes, classes))]
        raise DseError(f"the class folders of {root / 'train'} and {root / 'val'} differ: "
                       + "; ".join(f"only in {w}: {', '.join(c[:5])}"
                                   + (f" and {len(c) - 5} more" if len(c) > 5 else "")
                                   for w, c in only if c))
    return ImageList(*_split(root / "train", classes), *_split(root / "val", classes), classes)


def _class_folders(d: Path) -> tuple[str, ...]:
    with os.scandir(d) as it:
        return tuple(sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".")))


def _images_in(d: Path) -> list[str]:
    """The image file names directly in d, sorted (scandir: no stat per file)."""
    with os.scandir(d) as it:
        return sorted(e.name for e in it if e.name.lower().endswith(EXTENSIONS)
                      and not e.name.startswith(".") and e.is_file())


def _split(d: Path, classes) -> tuple[np.ndarray, np.ndarray]:
    # paths as fixed-width bytes, not Python objects: forked workers then share the pages
    # instead of copying them as reference counts change
    files, labels = [], []
    for k, c in enumerate(classes):
        names = _images_in(d / c)
        if not names:
            raise DseError(f"class {c!r} has no images in {d / c} (looked for "
                           f"{', '.join(EXTENSIONS)})")
        prefix = os.fsencode(d / c) + os.sep.encode()
        files += [prefix + os.fsencode(n) for n in names]
        labels += [k] * len(names)
    return np.array(files), np.array(labels, dtype=np.int64)


# ---- the data ----------------------------------------------------------------------------------

def default_workers(trainers: int = 1) -> int:
    """Decoding processes of one trainer: the cores left by `trainers` training processes
    on this machine, shared fairly among them."""
    return max(1, (cpu_cores() - trainers) // trainers)


class StreamData:
    """ImageNet-layout images under `root`, streamed to `device` with dse.data.device's interface.

    `train_subset` keeps the first N training images of a fixed permutation (seed 0), as
    DeviceData does; `resolution` R is the side of the crops; `workers` decoding processes
    (0: decode in this process), by default default_workers().
    """

    def __init__(self, root: str | os.PathLike, device: torch.device,
                 train_subset: int | None = None, resolution: int = 224,
                 workers: int | None = None, name: str = "imagenet"):
        if why := out_of_bounds(resolution, 8, integer=True):
            raise ArgumentError("resolution", why)
        workers = default_workers() if workers is None else workers
        if why := out_of_bounds(workers, 0, integer=True):
            raise ArgumentError("workers", why)
        if workers and mp.current_process().daemon:
            raise DseError(f"streaming {name} needs DataLoader worker processes, which this "
                           "daemonic process cannot start; train it in a non-daemonic "
                           "process, or pass workers=0 (decode in the training process)")
        self.root, self.name, self.device = Path(root), name, torch.device(device)
        images = list_images(self.root)
        files, labels = images.train_files, images.train_labels
        keep = subset(len(files), train_subset, name)
        if keep is not None:
            files, labels = files[keep], labels[keep]
        self.classes, self.num_classes = images.classes, len(images.classes)
        self.n_train, self.n_test = len(files), len(images.val_files)
        self.image_shape = (3, resolution, resolution)
        self.workers = workers
        # one dataset over train then val images; a key (index, seed) says which and how
        self._images = _Images(np.concatenate([files, images.val_files]),
                               np.concatenate([labels, images.val_labels]), resolution)
        self._plan = _Plan()
        self._loader = None  # started at the first pass; its workers persist across passes
        # x_norm = x_uint8 · scale + shift, per channel
        std = torch.tensor(STD, dtype=torch.float32) * 255
        self.scale = (1 / std).to(self.device)[:, None, None]
        self.shift = (-torch.tensor(MEAN, dtype=torch.float32) * 255 / std).to(
            self.device)[:, None, None]

    def steps(self, batch_size: int) -> int:
        """Steps per epoch: full batches only (the last partial batch is dropped)."""
        return steps_per_epoch(self.n_train, batch_size)

    def batches(self, batch_size: int, gen: torch.Generator, augment: bool = True,
                dtype: torch.dtype = torch.float32, channels_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch of steps(batch_size) normalized batches on the device: random-
        resized crops and flips, or (augment=False) the test transform."""
        n = self.steps(batch_size) * batch_size
        # one draw from the trainer's generator seeds the order and every image's crop
        seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device))
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.n_train)[:n].tolist()
        seeds = rng.integers(0, 2**62, n).tolist() if augment else [-1] * n
        keys = list(zip(order, seeds))
        plan = [keys[i: i + batch_size] for i in range(0, n, batch_size)]
        yield from self._to_device(self.host_batches(plan), dtype, channels_last)

    def test_batches(self, batch_size: int, dtype: torch.dtype = torch.float32,
                     channels_last: bool = False
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The val split in order, shorter side resized and centre-cropped, normalized on the
        device, in batches of at most min(batch_size, TEST_BATCH)."""
        b = min(batch_size, TEST_BATCH)
        keys = [(self.n_train + i, -1) for i in range(self.n_test)]
        plan = [keys[i: i + b] for i in range(0, self.n_test, b)]
        yield from self._to_device(self.host_batches(plan), dtype, channels_last)

    def host_batches(self, plan: list[list[tuple[int, int]]]
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The planned batches as the workers make them: x uint8 (B, R, R, 3), y (B,), pinned
        when the device is CUDA. A key is (image index, crop seed; -1: the test transform)."""
        self._plan.batches = plan
        for out in self._dataloader():
            if isinstance(out, str):  # a file that could not be decoded, named
                raise DseError(out)
            yield out

    def close(self) -> None:
        """Stop the worker processes (they also stop when this object is dropped)."""
        self._loader = None

    def _dataloader(self):
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self._images, batch_sampler=self._plan, num_workers=self.workers,
                collate_fn=_collate, pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
                prefetch_factor=PREFETCH if self.workers else None)
        return self._loader

    def _to_device(self, host, dtype, channels_last):
        """Host uint8 NHWC batches → normalized (B, C, H, W) device batches of dtype."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for xb, yb in host:
            # NHWC memory seen as NCHW: channels-last strides for free
            x = xb.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            x = (x.float() * self.scale + self.shift).to(dtype, memory_format=fmt)
            yield x, yb.to(self.device, non_blocking=True)


class _Plan:
    """The DataLoader's batch sampler: the key batches of the current pass."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


# ---- in the workers: decode, crop, resize ----------------------------------------------------

class _Images(torch.utils.data.Dataset):
    """Image i as uint8 (R, R, 3) with its label: a random-resized crop and flip from a seed,
    or (seed -1) the test transform. A file that cannot be decoded gives a message instead."""

    def __init__(self, files: np.ndarray, labels: np.ndarray, r: int):
        self.files, self.labels, self.r = files, labels, r

    def __len__(self):
        return len(self.files)

    def __getitem__(self, key):
        i, seed = key
        path = os.fsdecode(self.files[i])
        try:
            x = decode(path)
        except Exception as e:  # noqa: BLE001 - any decoder error means "not a usable image"
            why = re.sub(r"^\w+, \S+:\d+, ", "", one_line(e))[:160]
            return f"{path} cannot be decoded as an image ({why}); replace or remove it"
        if seed < 0:
            x = centre_crop(x, self.r)
        else:
            rnd = random.Random(seed)
            x = resize(crop(x, *crop_box(x.shape[1], x.shape[2], rnd)), self.r, self.r)
            if rnd.random() < 0.5:
                x = x.flip(2)
        return x.permute(1, 2, 0), int(self.labels[i])


def _collate(items):
    """Stack a batch: (x (B, R, R, 3) uint8, y (B,)), or the first undecodable file's message."""
    bad = next((it for it in items if isinstance(it, str)), None)
    if bad is not None:
        return bad
    return (torch.stack([x for x, _ in items]),
            torch.tensor([y for _, y in items], dtype=torch.int64))


def decode(path: str) -> torch.Tensor:
    """An image file (JPEG, PNG, WebP; grey, CMYK or RGBA) as RGB uint8 (3, H, W)."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    return decode_image(read_file(path), mode=ImageReadMode.RGB)


def crop_box(h: int, w: int, rnd: random.Random) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop of an h×w image: area 8–100%,
    aspect 3/4–4/3, 10 tries, else the largest centred box in that aspect range
    (torchvision's RandomResizedCrop.get_params, with an explicit random source)."""
    area = h * w
    log_ratio = (np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rnd.uniform(*CROP_AREA)
        aspect = float(np.exp(rnd.uniform(*log_ratio)))
        cw, ch = round((target * aspect) ** 0.5), round((target / aspect) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            return rnd.randint(0, h - ch), rnd.randint(0, w - cw), ch, cw
    ratio = w / h
    if ratio < CROP_RATIO[0]:
        cw, ch = w, round(w / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        ch, cw = h, round(h * CROP_RATIO[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def crop(x: torch.Tensor, top: int, left: int, h: int, w: int) -> torch.Tensor:
    """The h×w window of x (3, H, W) at (top, left), as a view."""
    return x[:, top: top + h, left: left + w]


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """uint8 (3, H, W) → (3, h, w), bilinear with antialiasing (as PIL and torchvision's
    transforms); channels-last in memory, where torch's uint8 kernel is fastest."""
    if x.shape[1:] == (h, w):
        return x
    x = x.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True,
                         align_corners=False)[0]


def centre_crop(x: torch.Tensor, r: int) -> torch.Tensor:
    """The test transform: shorter side resized to round(256/224·r), then the centre r×r."""
    s = round(TEST_RESIZE * r)
    h, w = x.shape[1:]
    # torchvision's Resize(s): the longer side is truncated, not rounded
    size = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
    x = resize(x, *size)
    top, left = int(round((size[0] - r) / 2)), int(round((size[1] - r) / 2))
    return crop(x, top, left, r, r)
