"""Datasets on the training device as uint8, with augmentation by batched tensor ops (torch).

dse.data.datasets reads a dataset into host arrays; `DeviceData` puts it on one device, after
`check_fits` has made sure they fit there with room to train. Each epoch is built on the
device in chunks (normalize, pad, random crop, flip, shuffle): no DataLoader, no workers, no
per-image Python. See docs/training.md.

The trainer reads any data through the `Data` interface, which `DeviceData` and the streamed
`dse.data.ondisk.StreamData` both have.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from dse.data import datasets
from dse.data.datasets import Arrays
from dse.errors import ArgumentError, DseError

CHUNK = 4096  # images per batched augmentation op at ≤ 32×32×3 …
CHUNK_VALUES = CHUNK * 3 * 32 * 32  # … and fewer for larger images: bounds the temporaries
HEADROOM = 1.5  # device memory per byte of uint8 data: the data plus one epoch chunk and slack
RESERVE = 2 << 30  # bytes kept free for the model, activations, cuDNN workspaces, the context
GB = 1e9


class Data(Protocol):
    """What dse.train.trainer.train needs of its data: training batches of a fixed shape and the
    test
    split, normalized, on `device`."""

    name: str
    device: torch.device
    num_classes: int  # labels run 0..num_classes-1

    @property
    def n_train(self) -> int: ...

    @property
    def image_shape(self) -> tuple[int, int, int]: ...  # (C, H, W)

    def steps(self, batch_size: int) -> int:
        """Batches per epoch (full batches only); ArgumentError when there are none."""

    def batches(self, batch_size: int, gen: torch.Generator, augment: bool = True,
                dtype: torch.dtype = torch.float32, channels_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch: steps(batch_size) batches x (B, C, H, W) of dtype, y (B,), drawn
        from `gen` (so the same seed gives the same epochs); x channels-last when asked."""

    def test_batches(self, batch_size: int, dtype: torch.dtype = torch.float32,
                     channels_last: bool = False
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole test split once, in batches of at most batch_size."""


# ---- memory --------------------------------------------------------------------------------

def free_memory(device: torch.device) -> int | None:
    """Bytes free on `device`: CUDA's free memory, or the host's MemAvailable; None if
    unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def subset(n: int, train_subset: int | None, name: str) -> np.ndarray | None:
    """The indices of a fixed training subset: the first N of a seed-0 permutation (the
    same for every model and training seed); None for all n images."""
    if train_subset is None:
        return None
    if train_subset > n:
        raise ArgumentError("train_subset", f"{train_subset} exceeds the {n} training images "
                            f"of {name}")
    return np.random.default_rng(0).permutation(n)[:train_subset]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches of an epoch (the last partial batch is dropped, so shapes are static)."""
    if n_train // batch_size == 0:
        raise ArgumentError("batch_size", f"{batch_size} exceeds the {n_train} training "
                            "images")
    return n_train // batch_size


def check_fits(nbytes: int, device: torch.device, what: str, resident: int = 0) -> None:
    """Refuse data of `nbytes` that would not fit on `device` with room to train: it needs
    HEADROOM × nbytes + RESERVE. `resident` bytes of it already sit in that memory (host
    arrays used in place on the CPU) and count as free."""
    free = free_memory(device)
    need = int(HEADROOM * nbytes) + RESERVE
    if free is None or need <= free + resident:
        return
    raise DseError(f"{what} needs {need / GB:.1f} GB on {device} (its {nbytes / GB:.2f} GB of "
                   f"uint8 images × {HEADROOM} plus {RESERVE / GB:.1f} GB for training) but "
                   f"only {(free + resident) / GB:.1f} GB are free; train on fewer images "
                   "(train_subset), use a device with more memory, or run fewer jobs on it")


def at_resolution(data: Data, side: int) -> Data:
    """The data a model of side×side inputs trains on: `data` itself at its own side, else
    its resized copy where it makes one (`DeviceData.resized`); data that cannot resize is
    returned as is (the trainer then names the mismatch)."""
    if data.image_shape[1] == side or not hasattr(data, "resized"):
        return data
    return data.resized(side)


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images (n, C, H, W) → (n, C, side, side), chunk by chunk (bounded temporaries)."""
    out = torch.empty((len(x), x.shape[1], side, side), dtype=torch.uint8, device=x.device)
    step = max(1, CHUNK_VALUES // int(np.prod(x.shape[1:])))
    for i in range(0, len(x), step):
        y = torch.nn.functional.interpolate(x[i: i + step].float(), size=(side, side),
                                            mode="bilinear", antialias=True, align_corners=False)
        out[i: i + step] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


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
        keep = subset(len(train_x), train_subset, arrays.name)
        if keep is not None:
            train_x, train_y = train_x[keep], train_y[keep]
        nbytes = train_x.nbytes + arrays.test_x.nbytes
        # on the CPU the host arrays are used in place; a subset is a copy
        resident = (0 if self.device.type != "cpu" else
                    arrays.test_x.nbytes + (train_x.nbytes if train_subset is None else 0))
        check_fits(nbytes, self.device, f"{arrays.name} ({len(train_x) + len(arrays.test_x)} "
                   "images)", resident)
        to = dict(device=self.device)
        self.train_x = torch.from_numpy(np.ascontiguousarray(train_x)).to(**to)
        self.train_y = torch.from_numpy(np.ascontiguousarray(train_y)).to(**to)
        self.test_x = torch.from_numpy(np.ascontiguousarray(arrays.test_x)).to(**to)
        self.test_y = torch.from_numpy(np.ascontiguousarray(arrays.test_y)).to(**to)
        self._set_side_stats()
        # labels run 0..num_classes-1; a model needs at least that many outputs
        self.num_classes = int(max(train_y.max(initial=0), arrays.test_y.max(initial=0))) + 1
        self._sides = {}  # resized copies by side (`resized`)

    def _set_side_stats(self) -> None:
        """Per-channel mean/std of the training images (x_norm = x_uint8 · scale + shift) and
        the augmentation at their side."""
        x = self.train_x[:: max(1, len(self.train_x) // 10_000)]  # ≤ 20k images
        sample = x.cpu().numpy().astype(np.float64)
        mean, std = sample.mean(axis=(0, 2, 3)), sample.std(axis=(0, 2, 3))
        to = dict(device=self.device)
        self.scale = torch.tensor(1 / np.maximum(std, 1e-3), dtype=torch.float32, **to)
        self.shift = torch.tensor(-mean / np.maximum(std, 1e-3), dtype=torch.float32, **to)
        self.pad, self.flip = datasets.get(self.name).augmentation(self.train_x.shape[-1])

    def resized(self, side: int) -> DeviceData:
        """This data with every image resized to side×side (bilinear, antialiased, back to
        uint8) on its device: what a model drawn at a smaller resolution sees. Built once per
        side and kept; labels are shared."""
        if side == self.image_shape[1]:
            return self
        if side > self.image_shape[1]:
            raise DseError(f"models for {side}×{side} inputs cannot train on {self.name}, "
                           f"whose images are {self.image_shape[1]}×{self.image_shape[2]}; "
                           "a space samples resolutions up to its data's")
        if side not in self._sides:
            out = copy.copy(self)
            out._sides = {}
            nbytes = (len(self.train_x) + len(self.test_x)) * self.image_shape[0] * side * side
            check_fits(nbytes, self.device, f"{self.name} at {side}×{side}")
            out.train_x, out.test_x = _resize(self.train_x, side), _resize(self.test_x, side)
            out._set_side_stats()
            self._sides[side] = out
        return self._sides[side]

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image the trainer sees."""
        return tuple(self.train_x.shape[1:])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, C, H, W) → float32, zero mean and unit variance per channel."""
        return x.float() * self.scale[:, None, None] + self.shift[:, None, None]

    def steps(self, batch_size: int) -> int:
        """Steps per epoch: full batches only (the last partial batch is dropped)."""
        return steps_per_epoch(self.n_train, batch_size)

    def batches(self, batch_size: int, gen: torch.Generator, augment: bool = True,
                dtype: torch.dtype = torch.float32, channels_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled, augmented epoch as steps(batch_size) batches x (B, C, H, W), y (B,),
        built chunk by chunk: the same batches as epoch() with the same generator, without
        holding the whole epoch in memory."""
        perm = self._order(batch_size, gen)
        rest = None  # the head of a batch that straddles two chunks
        for x, y in self._chunks(perm, gen, augment, dtype, channels_last):
            if rest is not None:
                need = batch_size - len(rest[1])
                yield torch.cat([rest[0], x[:need]]), torch.cat([rest[1], y[:need]])
                x, y = x[need:], y[need:]
            full = len(y) // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield x[i: i + batch_size], y[i: i + batch_size]
            rest = (x[full:], y[full:]) if full < len(y) else None

    def test_batches(self, batch_size: int, dtype: torch.dtype = torch.float32,
                     channels_last: bool = False
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole test split in order, normalized, as batches of at most batch_size."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for i in range(0, len(self.test_y), batch_size):
            x = self.normalize(self.test_x[i: i + batch_size])
            yield x.to(dtype, memory_format=fmt), self.test_y[i: i + batch_size]

    def epoch(self, batch_size: int, gen: torch.Generator, augment: bool = True,
              dtype: torch.dtype = torch.float32, channels_last: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """One shuffled, augmented epoch at once: x (S, B, C, H, W) and y (S, B) with
        S = n // B (the last partial batch is dropped, so every step has the same shape); with
        channels_last each x[i] has channels-last strides."""
        perm = self._order(batch_size, gen)
        steps, (c, h, w) = len(perm) // batch_size, self.image_shape
        if channels_last:
            xs = torch.empty((len(perm), h, w, c), dtype=dtype, device=self.device)
            xs = xs.permute(0, 3, 1, 2)
        else:
            xs = torch.empty((len(perm), c, h, w), dtype=dtype, device=self.device)
        i = 0
        for x, _ in self._chunks(perm, gen, augment, dtype, channels_last):
            xs[i: i + len(x)] = x
            i += len(x)
        return xs.unflatten(0, (steps, batch_size)), self.train_y[perm].view(steps, batch_size)

    def _order(self, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """The epoch's training images: a random permutation cut to whole batches."""
        n = self.steps(batch_size) * batch_size
        return torch.randperm(self.n_train, generator=gen, device=self.device)[:n]

    def _chunks(self, perm, gen, augment, dtype, channels_last):
        """(x, y) of consecutive chunks of perm: normalized, augmented, cast to dtype."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        chunk = max(1, min(CHUNK, CHUNK_VALUES // int(np.prod(self.image_shape))))
        for i in range(0, len(perm), chunk):
            idx = perm[i: i + chunk]
            x = self.normalize(self.train_x[idx])
            if augment:
                x = self.augment(x, gen)
            yield x.to(dtype, memory_format=fmt), self.train_y[idx]

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
