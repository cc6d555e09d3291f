"""Datasets for proxy training, held on the training device as uint8 (torch).

    cifar10        the official "cifar-10-batches-py" pickles (what torchvision downloads)
    fashion-mnist  the four IDX files, gzipped or not: torchvision's FashionMNIST/raw layout, a
                   plain folder, or Debian's dataset-fashion-mnist in /usr/share/datasets
    synthetic      generated from a fixed seed: class = colour + stripe orientation under
                   noise, learnable by any network and translation/flip invariant

Every epoch is built at once by batched tensor ops on the device (normalize, pad, random
crop, flip, shuffle): no DataLoader, no workers, no per-image Python. See docs/training.md.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dse.errors import DseError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DATA_DIR = "data"
TRAINABLE = ("cifar10", "fashion-mnist", "synthetic")

# Augmentation per dataset: (padding in pixels for the random crop, horizontal flip).
AUGMENT = {"cifar10": (4, True), "fashion-mnist": (2, False), "synthetic": (4, True)}

CHUNK = 4096  # images per batched augmentation op; bounds the temporary memory


@dataclass(frozen=True)
class Arrays:
    """A dataset in host memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # where it was read from, for messages and logs


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: the given path, else $DSE_DATA, else ./data."""
    return Path(path or os.environ.get("DSE_DATA") or DEFAULT_DATA_DIR)


def load(name: str, path: str | os.PathLike | None = None, download: bool = False) -> Arrays:
    """Read a dataset from disk (downloading it through torchvision when asked)."""
    if name == "synthetic":
        return synthetic()
    if name == "imagenet":
        raise DseError("imagenet models cannot be trained yet (ImageNet-style folders come in "
                       f"a later version); dse train supports {', '.join(TRAINABLE)}")
    if name not in TRAINABLE:
        raise DseError(f"unknown dataset {name!r}; dse train supports {', '.join(TRAINABLE)}")
    root = data_dir(path)
    find = _find_cifar10 if name == "cifar10" else _find_fashion_mnist
    found, looked = find(root)
    if found is None and download:
        _download(name, root)
        found, looked = find(root)
    if found is None:
        how = ("the official cifar-10-batches-py folder" if name == "cifar10" else
               "the four Fashion-MNIST IDX files (.gz or not), or install Debian's "
               "dataset-fashion-mnist")
        raise DseError(f"{name} not found; looked in {', '.join(map(str, looked))}; put "
                       f"{how} there (--data-dir DIR or DSE_DATA), or pass --download where "
                       "the network allows")
    read = _read_cifar10 if name == "cifar10" else _read_fashion_mnist
    arrays = read(found)
    _check(arrays)
    return arrays


def _download(name: str, root: Path) -> None:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.FashionMNIST
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # URLError, RuntimeError, OSError: all mean "no data"
        raise DseError(f"could not download {name} into {root} "
                       f"({' '.join(str(e).split())[:200]})") from None


# ---- CIFAR-10: data_batch_1..5 and test_batch, pickled dicts of uint8 rows ---------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


def _find_cifar10(root: Path):
    looked = [root / "cifar-10-batches-py", root]
    for d in looked:
        if all((d / f).is_file() for f in CIFAR_TRAIN + CIFAR_TEST):
            return d, looked
    return None, looked


def _read_cifar10(d: Path) -> Arrays:
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


# ---- Fashion-MNIST: IDX files (big-endian header, then uint8 data) ------------------------

FASHION_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                 "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _find_fashion_mnist(root: Path):
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
            return files, looked
    return None, looked


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


def _read_fashion_mnist(files: dict) -> Arrays:
    a = {k: read_idx(f) for k, f in files.items()}
    for split in ("train", "test"):
        x, y = a[f"{split}_x"], a[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DseError(f"{files[split + '_x']} and {files[split + '_y']} do not match "
                           f"(images {x.shape}, labels {y.shape})")
    return Arrays("fashion-mnist", a["train_x"][:, None], a["train_y"].astype(np.int64),
                  a["test_x"][:, None], a["test_y"].astype(np.int64),
                  str(files["train_x"].parent))


def _check(a: Arrays) -> None:
    for split in ("train", "test"):
        y = getattr(a, f"{split}_y")
        if len(y) == 0:
            raise DseError(f"{a.name} in {a.source} has an empty {split} split")
        if y.min() < 0 or y.max() > 9:
            raise DseError(f"{a.name} in {a.source} has labels outside 0..9 in its {split} "
                           "split; the data is damaged")


# ---- synthetic: deterministic, learnable ---------------------------------------------------

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


# ---- on the device -------------------------------------------------------------------------

class DeviceData:
    """A dataset resident on one device: uint8 images, labels, per-channel mean/std.

    `train_subset` keeps the first N images of a fixed permutation (independent of the
    training seed), so every model of a study trains on the same images.
    """

    def __init__(self, arrays: Arrays, device: torch.device, train_subset: int | None = None):
        self.name = arrays.name
        self.device = torch.device(device)
        train_x, train_y = arrays.train_x, arrays.train_y
        if train_subset is not None:
            if train_subset > len(train_x):
                raise DseError(f"--train-subset {train_subset} exceeds the {len(train_x)} "
                               f"training images of {arrays.name}")
            keep = np.random.default_rng(0).permutation(len(train_x))[:train_subset]
            train_x, train_y = train_x[keep], train_y[keep]
        sample = train_x[:: max(1, len(train_x) // 10_000)].astype(np.float64)  # ≤ 20k images
        mean, std = sample.mean(axis=(0, 2, 3)), sample.std(axis=(0, 2, 3))
        to = dict(device=self.device)
        self.train_x = torch.from_numpy(np.ascontiguousarray(train_x)).to(**to)
        self.train_y = torch.from_numpy(np.ascontiguousarray(train_y)).to(**to)
        self.test_x = torch.from_numpy(np.ascontiguousarray(arrays.test_x)).to(**to)
        self.test_y = torch.from_numpy(np.ascontiguousarray(arrays.test_y)).to(**to)
        # x_norm = x_uint8 · scale + shift, per channel
        self.scale = torch.tensor(1 / np.maximum(std, 1e-3), dtype=torch.float32, **to)
        self.shift = torch.tensor(-mean / np.maximum(std, 1e-3), dtype=torch.float32, **to)
        self.pad, self.flip = AUGMENT.get(arrays.name, (0, False))

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, C, H, W) → float32, zero mean and unit variance per channel."""
        return x.float() * self.scale[:, None, None] + self.shift[:, None, None]

    def epoch(self, batch_size: int, gen: torch.Generator, augment: bool = True,
              dtype: torch.dtype = torch.float32, channels_last: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """One shuffled, augmented epoch: x (S, B, C, H, W) and y (S, B) with S = n // B
        (the last partial batch is dropped, so every step has the same shape); with
        channels_last each x[i] has channels-last strides."""
        n, (c, h, w) = self.n_train, self.train_x.shape[1:]
        steps = n // batch_size
        if steps == 0:
            raise DseError(f"batch size {batch_size} exceeds the {n} training images")
        perm = torch.randperm(n, generator=gen, device=self.device)[: steps * batch_size]
        if channels_last:
            xs = torch.empty((steps * batch_size, h, w, c), dtype=dtype, device=self.device)
            xs = xs.permute(0, 3, 1, 2)
        else:
            xs = torch.empty((steps * batch_size, c, h, w), dtype=dtype, device=self.device)
        for i in range(0, len(perm), CHUNK):
            x = self.normalize(self.train_x[perm[i: i + CHUNK]])
            if augment:
                x = self.augment(x, gen)
            xs[i: i + CHUNK] = x
        return xs.unflatten(0, (steps, batch_size)), self.train_y[perm].view(steps, batch_size)

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Zero-pad by `pad` px, crop back at a random offset per image, flip half of them."""
        n, c, h, w = x.shape
        p = self.pad
        if p:
            x = torch.nn.functional.pad(x, (p, p, p, p))
            dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=gen, device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = x.gather(2, rows.expand(n, c, h, w + 2 * p)).gather(3, cols.expand(n, c, h, w))
        if self.flip:
            m = torch.rand(n, generator=gen, device=x.device) < 0.5
            x = torch.where(m[:, None, None, None], x.flip(3), x)
        return x
