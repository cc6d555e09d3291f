"""Your own images: a class-per-subfolder tree, decoded once and cached (pure: numpy + Pillow).

    <dir>/train/<class>/*.{jpg,jpeg,png,webp,bmp,gif,tif,tiff,ppm}
    <dir>/val/<class>/...        (or test/<class>/...), the same class names

the layout torchvision's ImageFolder reads. Classes are the subfolder names in sorted order.
`scan` lists the tree without decoding an image (what sampling needs); `load` decodes every
image once (in parallel, with a progress bar), resizes its shorter side to R and crops the
centre R×R, and caches the uint8 arrays in <cache>/folder-<key>.npz, the key being a hash of
R and every file's path, size and modification time: later runs and other models reuse them,
and a changed tree is decoded again. The cache is $DSE_CACHE, else ~/.cache/dse.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dse.data.readers import Arrays
from dse.errors import DseError, DseWarning, described
from dse.system import cpu_cores

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm")
TEST_SPLITS = ("val", "test")
CACHE_VERSION = 1  # part of the cache key: bump when decoding changes


@dataclass(frozen=True)
class Tree:
    """An image tree: class names, and (path relative to root, class index) per image."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    test_split: str  # val or test

    def record(self) -> dict:
        """What identifies the data in a store: directory, classes and image counts."""
        return {"dir": str(self.root), "classes": list(self.classes),
                "train_images": len(self.train), "test_images": len(self.test),
                "test_split": self.test_split}


def scan(root: str | os.PathLike) -> Tree:
    """The tree under root, checked: train/ and val/ (or test/) with the same non-empty
    classes. Decodes nothing."""
    root = Path(root).resolve()
    if not (root / "train").is_dir():
        raise DseError(f"{root} has no train/ folder; a folder dataset is "
                       "train/<class>/<image> and val/<class>/<image> (or test/)")
    split = next((s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if split is None:
        raise DseError(f"{root} has train/ but no val/ or test/ folder to measure errors on")
    classes = _classes(root / "train")
    if not classes:
        raise DseError(f"{root / 'train'} holds no class folders")
    other = _classes(root / split)
    if other != classes:
        only_train = sorted(set(classes) - set(other))
        only_test = sorted(set(other) - set(classes))
        raise DseError(f"the classes of {root / 'train'} and {root / split} differ: "
                       + "; ".join(f"only in {w}: {', '.join(c[:5])}"
                                   + (f" and {len(c) - 5} more" if len(c) > 5 else "")
                                   for w, c in (("train", only_train), (split, only_test)) if c))
    return Tree(root, classes, _images(root, "train", classes), _images(root, split, classes),
                split)


def _classes(d: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))


def _images(root: Path, split: str, classes) -> tuple[tuple[str, int], ...]:
    out = []
    for k, c in enumerate(classes):
        files = sorted(p for p in (root / split / c).rglob("*")
                       if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not files:
            raise DseError(f"class {c!r} has no images in {root / split / c} (looked for "
                           f"{', '.join(EXTENSIONS)})")
        out += [(str(p.relative_to(root)), k) for p in files]
    return tuple(out)


# ---- decoding --------------------------------------------------------------------------------

def decode(path: str, r: int) -> np.ndarray:
    """One image as uint8 (3, r, r): RGB, shorter side resized to r, centre crop."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        s = r / min(w, h)
        size = (max(r, round(w * s)), max(r, round(h * s)))
        im.draft("RGB", size)  # JPEG: decode at the smallest scale that is still ≥ size
        im = im.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - r) // 2, (size[1] - r) // 2
        im = im.crop((left, top, left + r, top + r))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _decode_one(args):
    path, r = args
    try:
        return decode(path, r), None
    except Exception as e:  # noqa: BLE001 - any decoder error means "not a usable image"
        return None, described(e, 160)


def _decode_all(paths: list[str], r: int, jobs: int | None):
    """Decoded images in order, and [(path, why)] of those that could not be decoded."""
    from tqdm import tqdm

    out = np.empty((len(paths), 3, r, r), dtype=np.uint8)
    bad = []
    jobs = jobs or cpu_cores()
    args = [(p, r) for p in paths]
    serial = jobs == 1 or mp.current_process().daemon or len(paths) < 64
    pool = None if serial else mp.get_context("spawn").Pool(jobs)
    try:
        it = map(_decode_one, args) if pool is None else pool.imap(_decode_one, args, 32)
        bar = tqdm(it, total=len(paths), desc=f"decoding images at {r}×{r}", unit="img",
                   file=sys.stderr, disable=None, leave=False)
        for i, (x, why) in enumerate(bar):
            if x is None:
                bad.append((paths[i], why))
            else:
                out[i] = x
    finally:
        if pool is not None:
            pool.terminate()
    return out, bad


# ---- the cache and loading -------------------------------------------------------------------

def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where decoded folders are cached: the given path, else $DSE_CACHE, else ~/.cache/dse."""
    if path or os.environ.get("DSE_CACHE"):
        return Path(path or os.environ["DSE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dse"


def cache_key(tree: Tree, r: int) -> str:
    """A hash of the resolution and every image's path, size and modification time."""
    h = hashlib.sha1(f"v{CACHE_VERSION} r{r} {tree.classes}".encode())
    for split, files in (("train", tree.train), (tree.test_split, tree.test)):
        for rel, k in files:
            st = (tree.root / rel).stat()
            h.update(f"{split}|{rel}|{k}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load(root: str | os.PathLike, r: int, skip_bad: bool = False, cache=None,
         jobs: int | None = None) -> Arrays:
    """The tree's images at r×r as Arrays, from the cache or decoded (then cached). An image
    that cannot be decoded stops with its name, unless skip_bad (then a warning lists them)."""
    tree = scan(root)
    path = cache_dir(cache) / f"folder-{cache_key(tree, r)}.npz"
    source = f"{tree.root} ({len(tree.classes)} classes at {r}×{r}; cache {path})"
    cached = _read_cache(path)
    if cached is not None:
        return Arrays("folder", *cached, source)
    files = [str(tree.root / rel) for rel, _ in tree.train + tree.test]
    x, bad = _decode_all(files, r, jobs)
    if bad and not skip_bad:
        f, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DseError(f"{f} is not a decodable image ({why}){more}; remove it, or skip "
                       "such images (--skip-bad-images)")
    y = np.array([k for _, k in tree.train + tree.test], dtype=np.int64)
    keep = np.ones(len(files), dtype=bool)
    if bad:
        keep[[files.index(f) for f, _ in bad]] = False
        shown = ", ".join(Path(f).name for f, _ in bad[:5]) + (" …" if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} undecodable image(s) in {tree.root}: {shown}",
                      DseWarning, stacklevel=2)
    n = len(tree.train)
    arrays = (x[:n][keep[:n]], y[:n][keep[:n]], x[n:][keep[n:]], y[n:][keep[n:]])
    for split, ys in (("train", arrays[1]), (tree.test_split, arrays[3])):
        missing = sorted(set(range(len(tree.classes))) - set(ys.tolist()))
        if missing:
            raise DseError(f"after skipping undecodable images, class "
                           f"{tree.classes[missing[0]]!r} has no {split} images left")
    _write_cache(path, arrays)
    return Arrays("folder", *arrays, source)


def _read_cache(path: Path):
    try:
        with np.load(path) as z:
            return z["train_x"], z["train_y"], z["test_x"], z["test_y"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged cache is decoded again (and replaced)


def _write_cache(path: Path, arrays) -> None:
    from dse.files import write_atomic

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **dict(zip(("train_x", "train_y", "test_x", "test_y"), arrays)))

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write)
    except OSError as e:
        warnings.warn(f"could not cache the decoded images in {path} ({e.strerror or e}); "
                      "they will be decoded again next time", DseWarning, stacklevel=3)
