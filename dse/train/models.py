"""Torch networks for AnyNet/RegNet specs: stem, X/Y blocks, head, pycls initialization.

RegNets are built through their AnyNetSpec (dse.space.spec.parse_spec / the sampler), so one
builder serves every space, and its parameter count equals dse.space.complexity's. Module names
follow pycls/timm: `stem`, stages `s1`, `s2`, … of blocks `b1`, `b2`, …, and `head`; a block
is `f.a` (1×1), `f.b` (3×3 group conv), `f.se` (Y only), `f.c` (1×1, the final BN) and
`proj` (shortcut), each conv unit `conv`, `bn` (and `relu`), e.g. `s1.b1.f.c.bn.weight`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from dse.space.spec import AnyNetSpec, Task


class ConvBN(nn.Sequential):
    """k×k conv (no bias, padding k // 2) → BN, then ReLU unless relu=False."""

    def __init__(self, w_in: int, w_out: int, k: int = 1, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(w_in, w_out, k, stride=stride, padding=k // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(w_out)
        if relu:
            self.relu = nn.ReLU(inplace=True)


class SE(nn.Module):
    """Squeeze-and-Excitation: pool → 1×1 conv (w → w_se) → ReLU → 1×1 conv → sigmoid → scale."""

    def __init__(self, w: int, w_se: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(w, w_se, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(w_se, w, 1, bias=True)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


class Block(nn.Module):
    """X block (residual bottleneck with group conv); with se_ratio > 0 the Y block.

    f: a 1×1 (w_in → w_b) → b 3×3 group conv with the stride (groups = w_b / g) → [se] →
    c 1×1 (w_b → w_out) with the final BN; identity shortcut, or proj (1×1 conv + BN) when
    the shape changes; ReLU after the add.
    """

    def __init__(self, w_in: int, w_out: int, stride: int, b: int, g: int, se_ratio: float):
        super().__init__()
        w_b = w_out // b
        f = {"a": ConvBN(w_in, w_b), "b": ConvBN(w_b, w_b, 3, stride, groups=w_b // g)}
        if se_ratio:
            f["se"] = SE(w_b, round(se_ratio * w_in))
        f["c"] = ConvBN(w_b, w_out, relu=False)
        self.f = nn.Sequential(OrderedDict(f))
        self.proj = (ConvBN(w_in, w_out, 1, stride, relu=False)
                     if (w_in != w_out or stride != 1) else None)
        self.relu = nn.ReLU(inplace=True)

    @property
    def final_bn(self) -> nn.BatchNorm2d:
        """The BN closing f (f.c.bn), the one zero_init_final_gamma starts at γ = 0."""
        return self.f.c.bn

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.relu(shortcut + self.f(x))


class Stage(nn.Sequential):
    """d blocks b1 … bd of width w; b1 has stride 2 and takes w_in."""

    def __init__(self, w_in: int, w: int, d: int, b: int, g: int, se_ratio: float):
        super().__init__()
        for j in range(d):
            self.add_module(f"b{j + 1}", Block(w_in if j == 0 else w, w, 2 if j == 0 else 1,
                                               b, g, se_ratio))


class Head(nn.Module):
    """Global average pool → linear classifier."""

    def __init__(self, w_in: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes, bias=True)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class AnyNet(nn.Module):
    """stem → stages s1, s2, … (first block of each has stride 2) → head (pool + linear)."""

    def __init__(self, spec: AnyNetSpec, task: Task):
        super().__init__()
        self.stem = ConvBN(task.in_channels, spec.stem_w, 3, task.stem_stride)
        w_in = spec.stem_w
        for i, (d, w, b, g) in enumerate(zip(spec.ds, spec.ws, spec.bs, spec.gs)):
            self.add_module(f"s{i + 1}", Stage(w_in, w, d, b, g, spec.se_ratio))
            w_in = w if d else w_in
        self.head = Head(w_in, task.num_classes)

    def forward(self, x):
        for m in self.children():  # stem, s1, s2, …, head in order
            x = m(x)
        return x


def init_weights(model: nn.Module, zero_init_final_gamma: bool = False) -> None:
    """pycls init: conv ~ N(0, sqrt(2 / (k·k·out_channels))), BN γ = 1 and β = 0 (γ = 0 on
    each block's final BN when asked), linear ~ N(0, 0.01) with zero bias."""
    final = {id(m.final_bn) for m in model.modules() if isinstance(m, Block)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.0 if zero_init_final_gamma and id(m) in final else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def build(spec: AnyNetSpec, task: Task, zero_init_final_gamma: bool = False) -> AnyNet:
    """The torch module of a (compatible) spec, initialized as pycls does."""
    model = AnyNet(spec, task)
    init_weights(model, zero_init_final_gamma)
    return model


def num_params(model: nn.Module) -> int:
    """Number of parameters (each counted once)."""
    return sum(p.numel() for p in model.parameters())
