"""The datasets dse knows, in one table: each fixes the task of its models, its augmentation,
its default flops window and how its files are read (pure: numpy, no torch).

    cifar10        the official "cifar-10-batches-py" pickles (what torchvision downloads)
    fashion-mnist  the four IDX files, gzipped or not: torchvision's FashionMNIST/raw layout, a
                   plain folder, or Debian's dataset-fashion-mnist in /usr/share/datasets
    synthetic      generated from a fixed seed: class = colour + stripe orientation under
                   noise, learnable by any network and translation/flip invariant
    imagenet       sampling and complexity only (no reader yet)

A new dataset is one `Dataset` entry in DATASETS: its task, augmentation and reader.
Readers return host arrays (`Arrays`); dse.data puts them on the training device.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.errors import DseError
from dse.spec import Task

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DATA_DIR = "data"


@dataclass(frozen=True)
class Arrays:
    """A dataset in host memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # where it was read from, for messages and logs


@dataclass(frozen=True)
class Dataset:
    """One dataset: the task its models have, its augmentation and how to read it."""

    name: str
    task: Task
    pad: int = 0                      # zero padding (px) before the random crop; 0 = no crop
    flip: bool = False                # random horizontal flips
    read: Callable[[Path], Arrays] | None = None  # data dir → arrays; None = not trainable
    torchvision: str | None = None    # torchvision.datasets class that --download uses
    about: str = ""

    @property
    def trainable(self) -> bool:
        return self.read is not None


# ---- readers ---------------------------------------------------------------------------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


def _read_cifar10(root: Path) -> Arrays:
    looked = [root / "cifar-10-batches-py", root]
    d = next((d for d in looked if all((d / f).is_file() for f in CIFAR_TRAIN + CIFAR_TEST)),
             None)
    if d is None:
        raise DataNotFound(looked, "the official cifar-10-batches-py folder")

    def read(files):
        xs, ys = [], []
        for f in files:
            try:
                with open(d / f, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry["labels"], dtype=np.int64)
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError,
                    TypeError) as e:
                raise DseError(f"{d / f} is damaged ({type(e).__name__}: {e}); replace the "
                               "cifar-10-batches-py folder with a fresh copy") from None
            if len(x) != len(y):
                raise DseError(f"{d / f} is damaged ({len(x)} images but {len(y)} labels)")
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = read(CIFAR_TRAIN)
    test_x, test_y = read(CIFAR_TEST)
    return Arrays("cifar10", train_x, train_y, test_x, test_y, str(d))


FASHION_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                 "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _find_fashion_mnist(root: Path) -> dict:
    looked = [root / "FashionMNIST" / "raw", root / "fashion-mnist", root, DEBIAN_FASHION_MNIST]
    for d in looked:
        files = {}
        for key, stem in FASHION_FILES.items():
            f = next((d / (stem + ext) for ext in ("", ".gz") if (d / (stem + ext)).is_file()),
                     None)
            if f is None:
                break
            files[key] = f
        else:
            return files
    raise DataNotFound(looked, "the four Fashion-MNIST IDX files (.gz or not), or install "
                            "Debian's dataset-fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX array of unsigned bytes (the MNIST format), from a plain or gzipped file."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DseError(f"{path} is damaged ({e}); replace it with a fresh copy") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise DseError(f"{path} is not an IDX file of unsigned bytes (bad header); replace it "
                       "with a fresh copy")
    nd = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(shape)):
        raise DseError(f"{path} is damaged ({data.size} bytes of data for shape {shape}); "
                       "replace it with a fresh copy")
    return data.reshape(shape).copy()  # writable, detached from the file's bytes


def _read_fashion_mnist(root: Path) -> Arrays:
    files = _find_fashion_mnist(root)
    a = {k: read_idx(f) for k, f in files.items()}
    for split in ("train", "test"):
        x, y = a[f"{split}_x"], a[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DseError(f"{files[split + '_x']} and {files[split + '_y']} do not match "
                           f"(images {x.shape}, labels {y.shape})")
    return Arrays("fashion-mnist", a["train_x"][:, None], a["train_y"].astype(np.int64),
                  a["test_x"][:, None], a["test_y"].astype(np.int64),
                  str(files["train_x"].parent))


@functools.lru_cache(maxsize=2)
def synthetic(n_train: int = 10_000, n_test: int = 2_000, seed: int = 0) -> Arrays:
    """3×32×32 images of 10 classes: each class has its own mean colour and stripe
    orientation (random phase, so crops and flips keep the class), under Gaussian noise."""
    rng = np.random.default_rng(seed)
    colors = rng.uniform(-1, 1, size=(10, 3))
    angles = np.arange(10) * np.pi / 10
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angles, colors = angles.astype(np.float32), colors.astype(np.float32)

    def draw(n):
        y = rng.integers(0, 10, size=n)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1)).astype(np.float32)
        a = angles[y][:, None, None]
        stripes = np.sin(0.8 * (np.cos(a) * xx + np.sin(a) * yy) + phase)  # (n, 32, 32)
        x = rng.standard_normal((n, 3, 32, 32), dtype=np.float32) * 24
        x += 128 + 64 * colors[y][:, :, None, None] + 48 * stripes[:, None]
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return Arrays("synthetic", train_x, train_y, test_x, test_y, f"generated (seed {seed})")


class DataNotFound(Exception):
    """A reader found no copy of its dataset: the folders it looked in, and what it wanted."""

    def __init__(self, looked: list[Path], what: str):
        super().__init__(what)
        self.looked, self.what = looked, what


# ---- the table -------------------------------------------------------------------------------

DATASETS = {d.name: d for d in [
    Dataset("cifar10", Task(32, "cifar", 3, 10), pad=4, flip=True, read=_read_cifar10,
            torchvision="CIFAR10", about="CIFAR-10, 32×32×3, 10 classes"),
    Dataset("fashion-mnist", Task(28, "cifar", 1, 10), pad=2, flip=False,
            read=_read_fashion_mnist, torchvision="FashionMNIST",
            about="Fashion-MNIST, 28×28×1, 10 classes"),
    Dataset("synthetic", Task(32, "cifar", 3, 10), pad=4, flip=True,
            read=lambda root: synthetic(), about="generated, 32×32×3, 10 classes"),
    Dataset("imagenet", Task(224, "imagenet", 3, 1000),
            about="ImageNet at 224×224, 1000 classes (sampling and complexity only)"),
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


def task(name: str) -> Task:
    """The task (resolution, stem, channels, classes) of models for dataset `name`."""
    return get(name).task


# The paper's window (360–400MF at 224×224, ImageNet stem) carried to other inputs by the
# area of the first stage's input: flops of every stage scale with it, the stem and head are
# negligible. 224 → 112 after the ImageNet stem; the CIFAR stem keeps 32 and 28.
PAPER_WINDOW = (360e6, 400e6)


def default_flops_window(name: str) -> tuple[float, float]:
    """The paper's 360–400MF window scaled by (stage-1 input side / 112)^2, rounded to 0.1M."""
    t = task(name)
    side = (t.resolution - 1) // t.stem_stride + 1
    scale = (side / 112) ** 2
    return tuple(round(x * scale / 1e5) * 1e5 for x in PAPER_WINDOW)


# ---- reading ---------------------------------------------------------------------------------

def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: the given path, else $DSE_DATA, else ./data."""
    return Path(path or os.environ.get("DSE_DATA") or DEFAULT_DATA_DIR)


def load(name: str, path: str | os.PathLike | None = None, download: bool = False) -> Arrays:
    """Read a dataset from disk (downloading it through torchvision when asked)."""
    ds = get(name)
    if not ds.trainable:
        raise DseError(f"{name} models cannot be trained yet; dse trains on "
                       f"{', '.join(trainable())}")
    root = data_dir(path)
    try:
        arrays = ds.read(root)
    except DataNotFound as e:
        if not (download and ds.torchvision):
            raise DseError(f"{name} not found; looked in {', '.join(map(str, e.looked))}; put "
                           f"{e.what} there (--data-dir DIR or DSE_DATA), or pass --download "
                           "where the network allows") from None
        _download(ds, root)
        try:
            arrays = ds.read(root)
        except DataNotFound:
            raise DseError(f"{name} was downloaded into {root} but cannot be found there") \
                from None
    _check(arrays, ds)
    return arrays


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


def _check(a: Arrays, ds: Dataset) -> None:
    k = ds.task.num_classes
    for split in ("train", "test"):
        y = getattr(a, f"{split}_y")
        if len(y) == 0:
            raise DseError(f"{a.name} in {a.source} has an empty {split} split")
        if y.min() < 0 or y.max() > k - 1:
            raise DseError(f"{a.name} in {a.source} has labels outside 0..{k - 1} in its "
                           f"{split} split; the data is damaged")
