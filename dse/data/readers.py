"""Readers of datasets as they are distributed, into host arrays (pure: numpy, no torch).

    cifar10        the official "cifar-10-batches-py" pickles (what torchvision downloads),
                   unpickled with only numpy arrays and plain values allowed
    fashion-mnist  the four IDX files, gzipped or not: torchvision's FashionMNIST/raw layout, a
                   plain folder, or Debian's dataset-fashion-mnist in /usr/share/datasets
    imagenetR      the official downsampled ImageNet (Chrabaszcz et al. 2017) at R = 16, 32,
                   64: Imagenet{R}_train_npz/train_data_batch_1..10.npz and
                   Imagenet{R}_val_npz/val_data.npz (or all of them in one folder)
    synthetic      generated from a fixed seed: class = colour + stripe orientation under
                   noise, learnable by any network and translation/flip invariant

A reader takes the data directory and returns `Arrays`, or raises `DataNotFound` with the
folders it looked in; a damaged file is a one-line DseError naming it.
"""

from __future__ import annotations

import functools
import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.errors import DseError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Arrays:
    """A dataset in host memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # where it was read from, for messages and logs


class DataNotFound(Exception):
    """A reader found no copy of its dataset: the folders it looked in, and what it wanted."""

    def __init__(self, looked: list[Path], what: str):
        super().__init__(what)
        self.looked, self.what = looked, what


# ---- CIFAR-10 and Fashion-MNIST ----------------------------------------------------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


# The only globals an official batch (or a copy pickled again by numpy 1 or 2) refers to: numpy
# arrays and their dtypes, and the codec Python 3 uses for bytes in old pickle protocols.
CIFAR_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
      for n in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")})


class NotABatch(pickle.UnpicklingError):
    """A pickle that refers to something an official CIFAR batch never holds."""


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what the official CIFAR batches hold (dicts, lists, str, bytes, ints, numpy
    arrays) and nothing else, so a crafted batch file cannot run code."""

    def find_class(self, module, name):
        if (module, name) not in CIFAR_GLOBALS:
            raise NotABatch(f"it refers to {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def read_cifar10(root: Path) -> Arrays:
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
                    entry = BatchUnpickler(fh, encoding="latin1").load()
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry["labels"], dtype=np.int64)
            except NotABatch as e:
                raise DseError(f"{d / f} is not an official CIFAR-10 batch: {e}, so dse does "
                               "not unpickle it (it could run code); replace the "
                               "cifar-10-batches-py folder with a fresh copy") from None
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError,
                    TypeError, AttributeError, IndexError) as e:
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


def read_fashion_mnist(root: Path) -> Arrays:
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


# ---- downsampled ImageNet: npz files of channel planes and 1-based labels -----------------

def read_downsampled_imagenet(root: Path, r: int) -> Arrays:
    """Imagenet{r}_train_npz/train_data_batch_1..10.npz and Imagenet{r}_val_npz/val_data.npz
    (or all in one folder: root, root/imagenet{r}, root/Imagenet{r}); `data` is N × 3·r·r
    uint8 (red, green, blue planes), `labels` are 1..1000."""
    looked = [root, root / f"imagenet{r}", root / f"Imagenet{r}"]
    for d in looked:
        train = sorted((f for sub in (d / f"Imagenet{r}_train_npz", d) if sub.is_dir()
                        for f in sub.glob("train_data_batch_*.npz")),
                       key=lambda f: int(f.stem.rsplit("_", 1)[1]) if f.stem.rsplit(
                           "_", 1)[1].isdigit() else 0)
        val = next((f for f in (d / f"Imagenet{r}_val_npz" / "val_data.npz",
                                d / "val_data.npz") if f.is_file()), None)
        if train and val is not None:
            break
    else:
        raise DataNotFound(looked, f"Imagenet{r}_train_npz/train_data_batch_*.npz and "
                                   f"Imagenet{r}_val_npz/val_data.npz")
    parts = [_read_npz_batch(f, r) for f in train]
    test_x, test_y = _read_npz_batch(val, r)
    return Arrays(f"imagenet{r}", np.concatenate([x for x, _ in parts]),
                  np.concatenate([y for _, y in parts]), test_x, test_y, str(train[0].parent))


def _read_npz_batch(path: Path, r: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as z:
            x, y = np.asarray(z["data"]), np.asarray(z["labels"])
    except (OSError, ValueError, KeyError, EOFError, zlib.error) as e:
        raise DseError(f"{path} is damaged or not a downsampled-ImageNet batch "
                       f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); replace it "
                       "with a fresh copy") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * r * r or len(x) != len(y):
        raise DseError(f"{path} does not hold {r}×{r} images: data {x.dtype} {x.shape}, "
                       f"labels {y.shape}; expected N × {3 * r * r} uint8 and N labels")
    y = y.astype(np.int64).ravel()
    if len(y) and (y.min() < 1 or y.max() > 1000):
        raise DseError(f"{path} has labels outside 1..1000 ({y.min()}..{y.max()}); the "
                       "official files number classes from 1")
    return x.reshape(-1, 3, r, r), y - 1
