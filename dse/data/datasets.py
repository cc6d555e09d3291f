"""The datasets dse knows, in one table: each fixes the task of its models, its augmentation,
its default flops window and how its files are read (pure: numpy, no torch).

    cifar10                 CIFAR-10, 32×32×3, 10 classes (dse.data.readers)
    fashion-mnist           Fashion-MNIST, 28×28×1, 10 classes
    imagenet16/32/64        the official downsampled ImageNet, R×R×3, 1000 classes
    synthetic               generated, 32×32×3, 10 classes: for smoke runs
    folder                  your own class-per-subfolder images at a resolution you choose
                            (dse.data.folders); its task is set per store at sampling
    imagenet                ImageNet at 224×224, streamed from disk while training (dse.data.ondisk)

A new dataset is one `Dataset` entry in DATASETS: its task, augmentation and reader. Readers
return host arrays (`Arrays`); dse.data.device puts them on the training device. Where the files
are looked for, caching and memory: docs/datasets.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dse.data import folders, readers
from dse.data.readers import Arrays, DataNotFound  # noqa: F401 - part of this module's API
from dse.errors import ArgumentError, DseError, out_of_bounds
from dse.space.spec import Task

DEFAULT_DATA_DIR = "data"


@dataclass(frozen=True)
class Dataset:
    """One dataset: the task its models have, its augmentation and how to read it."""

    name: str
    task: Task | None                 # None: chosen per store when sampling (folder)
    pad: int | None = 0               # zero padding (px) before the random crop; None: R/8
    flip: bool = False                # random horizontal flips
    read: Callable | None = None      # read(data_dir, resolution, options) → Arrays
    stream: bool = False              # too large for memory: streamed from disk (dse.data.ondisk)
    torchvision: str | None = None    # torchvision.datasets class that --download uses
    about: str = ""
    train_size: int | None = None     # images in the train split, where fixed (for plans)
    test_size: int | None = None      # images in the test split, where fixed (for plans)

    @property
    def trainable(self) -> bool:
        return self.read is not None or self.stream

    def augmentation(self, resolution: int) -> tuple[int, bool]:
        """(crop padding in px, flip): CIFAR's 4 px at 32 px scales to R/8 where not fixed."""
        return (round(resolution / 8) if self.pad is None else self.pad), self.flip


@dataclass(frozen=True)
class DataRef:
    """The data a model trains on: a dataset, the directory it is read from (None: the
    default data directory) and the input resolution."""

    dataset: str
    root: str | None
    resolution: int


@dataclass(frozen=True)
class LoadOptions:
    """How to read: skip images that cannot be decoded (folder), where to cache decoded
    folders (default $DSE_CACHE or ~/.cache/dse), and downloading through torchvision."""

    skip_bad_images: bool = False
    cache_dir: str | None = None
    download: bool = False


def _fixed(read):
    return lambda root, r, options: read(root)


def _downsampled(r):
    return lambda root, res, options: readers.read_downsampled_imagenet(root, r)


def _folder(root, r, options):
    return folders.load(root, r, options.skip_bad_images, options.cache_dir)


DATASETS = {d.name: d for d in [
    Dataset("cifar10", Task(32, "cifar", 3, 10), pad=4, flip=True,
            read=_fixed(readers.read_cifar10), torchvision="CIFAR10",
            about="CIFAR-10, 32×32×3, 10 classes", train_size=50_000,
            test_size=10_000),
    Dataset("fashion-mnist", Task(28, "cifar", 1, 10), pad=2, flip=False,
            read=_fixed(readers.read_fashion_mnist), torchvision="FashionMNIST",
            about="Fashion-MNIST, 28×28×1, 10 classes", train_size=60_000,
            test_size=10_000),
    *[Dataset(f"imagenet{r}", Task(r, "cifar", 3, 1000), pad=r // 8, flip=True,
              read=_downsampled(r), about=f"downsampled ImageNet, {r}×{r}×3, 1000 classes",
              train_size=1_281_167, test_size=50_000)
      for r in (16, 32, 64)],
    Dataset("synthetic", Task(32, "cifar", 3, 10), pad=4, flip=True,
            read=_fixed(lambda root: readers.synthetic()),
            about="generated, 32×32×3, 10 classes", train_size=10_000,
            test_size=2_000),
    Dataset("folder", None, pad=None, flip=True, read=_folder,
            about="your images: train/<class>/* and val/<class>/*, at --resolution R"),
    Dataset("imagenet", Task(224, "imagenet", 3, 1000), flip=True, stream=True,
            about="ImageNet, train/ and val/ of class folders, 224×224, streamed",
            train_size=1_281_167, test_size=50_000),
]}

DEFAULT = "cifar10"  # what `dse sample` samples for unless told


def names() -> list[str]:
    return list(DATASETS)


def trainable() -> list[str]:
    return [n for n, d in DATASETS.items() if d.trainable]


def get(name: str) -> Dataset:
    """The dataset called `name`; a clear error naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise DseError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def stem_for(resolution: int) -> str:
    """The stem of models for R×R inputs of your own: CIFAR's (stride 1) up to 64 px,
    ImageNet's (stride 2) above."""
    return "cifar" if resolution <= 64 else "imagenet"


def task(name: str, path: str | os.PathLike | None = None,
         resolution: int | None = None) -> Task:
    """The task (resolution, stem, channels, classes) of models for a dataset; for folder,
    of the tree at `path` (the data directory) at `resolution`."""
    return task_and_record(name, path, resolution)[0]


def task_and_record(name: str, path=None, resolution: int | None = None) -> tuple[Task, dict]:
    """The task, and what a store records to find and check the data again ({} for the
    built-in datasets; folder: directory, classes, image counts)."""
    ds = get(name)
    if ds.task is not None:
        if resolution is not None and resolution != ds.task.resolution:
            raise ArgumentError("resolution", f"{resolution} does not apply to {name}, whose "
                                f"images are {ds.task.resolution}×{ds.task.resolution}; only "
                                "folder takes a resolution")
        return ds.task, {}
    if resolution is None:
        raise ArgumentError("resolution", f"is needed for {name}: the side R of the R×R "
                            "images the models will see (e.g. 32, 64, 224)")
    if why := out_of_bounds(resolution, 8, integer=True):
        raise ArgumentError("resolution", why)
    tree = folders.scan(data_dir(path))
    return Task(resolution, stem_for(resolution), 3, len(tree.classes)), tree.record()


# The paper's window (360–400MF at 224×224, ImageNet stem) carried to other inputs by the
# area of the first stage's input: flops of every stage scale with it, the stem and head are
# negligible. 224 → 112 after the ImageNet stem; the CIFAR stem keeps 32 and 28.
PAPER_WINDOW = (360e6, 400e6)


def flops_window(t: Task) -> tuple[float, float]:
    """The paper's 360–400MF window scaled by (stage-1 input side / 112)^2, rounded to 0.1M."""
    side = (t.resolution - 1) // t.stem_stride + 1
    scale = (side / 112) ** 2
    return tuple(round(x * scale / 1e5) * 1e5 for x in PAPER_WINDOW)


def default_flops_window(name: str) -> tuple[float, float]:
    """flops_window of a dataset with a fixed task."""
    return flops_window(task(name))


# ---- reading ---------------------------------------------------------------------------------

def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: the given path, else $DSE_DATA, else ./data."""
    return Path(path or os.environ.get("DSE_DATA") or DEFAULT_DATA_DIR)


def stream_root(path: str | os.PathLike | None = None) -> Path:
    """Where ImageNet's train/ and val/ are: <data>/imagenet, else the data directory."""
    root = data_dir(path)
    for d in (root / "imagenet", root):
        if (d / "train").is_dir():
            return d
    raise DseError(f"imagenet not found; looked for train/ and val/ in {root / 'imagenet'} "
                   f"and {root}; put the ImageNet folders there (--data-dir DIR or DSE_DATA)")


def load(name: str, path: str | os.PathLike | None = None, download: bool = False, *,
         resolution: int | None = None, options: LoadOptions | None = None) -> Arrays:
    """Read a dataset into host memory (downloading it through torchvision when asked)."""
    ds = get(name)
    options = options or LoadOptions(download=download)
    if ds.read is None:
        why = "it is streamed from disk (dse.data.ondisk)" if ds.stream else "it has no reader yet"
        raise DseError(f"{name} cannot be read into memory: {why}; in-memory datasets: "
                       f"{', '.join(n for n, d in DATASETS.items() if d.read)}")
    r = resolution or (ds.task.resolution if ds.task else None)
    if r is None:
        raise ArgumentError("resolution", f"is needed to read {name}")
    root = data_dir(path)
    try:
        arrays = ds.read(root, r, options)
    except DataNotFound as e:
        if not (options.download and ds.torchvision):
            raise DseError(f"{name} not found; looked in {', '.join(map(str, e.looked))}; put "
                           f"{e.what} there (--data-dir DIR or DSE_DATA)"
                           + (", or pass --download where the network allows"
                              if ds.torchvision else "")) from None
        _download(ds, root)
        try:
            arrays = ds.read(root, r, options)
        except DataNotFound:
            raise DseError(f"{name} was downloaded into {root} but cannot be found there") \
                from None
    _check(arrays, ds.task.num_classes if ds.task else int(arrays.train_y.max()) + 1)
    return arrays


def load_ref(ref: DataRef, options: LoadOptions | None = None) -> Arrays:
    """load() of the data a DataRef names."""
    return load(ref.dataset, ref.root, resolution=ref.resolution, options=options)


def _download(ds: Dataset, root: Path) -> None:
    import torchvision

    cls = getattr(torchvision.datasets, ds.torchvision)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # URLError, RuntimeError, OSError: all mean "no data"
        raise DseError(f"could not download {ds.name} into {root} "
                       f"({' '.join(str(e).split())[:200]})") from None


def _check(a: Arrays, k: int) -> None:
    for split in ("train", "test"):
        y = getattr(a, f"{split}_y")
        if len(y) == 0:
            raise DseError(f"{a.name} in {a.source} has an empty {split} split")
        if y.min() < 0 or y.max() > k - 1:
            raise DseError(f"{a.name} in {a.source} has labels outside 0..{k - 1} in its "
                           f"{split} split; the data is damaged")
