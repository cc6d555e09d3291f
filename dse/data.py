"""Datasets on the training device as uint8, with augmentation by batched tensor ops (torch).

dse.datasets reads a dataset into host arrays; `DeviceData` puts it on one device. Every epoch
is built at once on the device (normalize, pad, random crop, flip, shuffle): no DataLoader, no
workers, no per-image Python. See docs/training.md.
"""

from __future__ import annotations

import numpy as np
import torch

from dse import datasets
from dse.datasets import Arrays
from dse.errors import ArgumentError

CHUNK = 4096  # images per batched augmentation op; bounds the temporary memory


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
                raise ArgumentError("train_subset", f"{train_subset} exceeds the "
                                    f"{len(train_x)} training images of {arrays.name}")
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
        self.pad, self.flip = datasets.get(arrays.name).augmentation(arrays.train_x.shape[-1])

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
            raise ArgumentError("batch_size", f"{batch_size} exceeds the {n} training images")
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
