"""Torch networks for AnyNet/RegNet specs: stem, blocks of any type, head, pycls init.

RegNets are built through their AnyNetSpec (dse.space.spec.parse_spec / the sampler), so one
builder serves every space, and its parameter count equals dse.space.complexity's. Module names
follow pycls/timm: `stem`, stages `s1`, `s2`, … of blocks `b1`, `b2`, …, and `head`; an X
block is `f.a` (1×1), `f.b` (3×3 group conv), `f.se` (Y only), `f.c` (1×1, the final BN) and
`proj` (shortcut), each conv unit `conv`, `bn` (and `relu`, whatever the activation), e.g.
`s1.b1.f.c.bn.weight`; the other block types name their 3×3 convs `f.a`, `f.b` (`Block`).

`copies` = K builds K copies of one network side by side as one network (dse.train.fused):
every conv takes K times the channels in K times the groups (copy k's channels are the k-th
block of each tensor), so BN, SE and the head stay per copy; the input holds the K copies'
images stacked along channels and the head gives (batch, K, classes). Its state has the same
names as one copy's, each tensor the K copies' tensors concatenated along the first axis.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from dse.space import blocks, regnet
from dse.space.spec import AnyNetSpec, Task


def activation(name: str) -> nn.Module:
    """The block's nonlinearity: ReLU, or SiLU (Swish, DDS App. B)."""
    return nn.SiLU(inplace=True) if name == "silu" else nn.ReLU(inplace=True)


class ConvBN(nn.Sequential):
    """k×k conv (no bias, padding k // 2) → BN, then the activation `act` unless None."""

    def __init__(self, w_in: int, w_out: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu", copies: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(w_in * copies, w_out * copies, k, stride=stride, padding=k // 2,
                              groups=groups * copies, bias=False)
        self.bn = nn.BatchNorm2d(w_out * copies)
        if act:
            self.relu = activation(act)  # named `relu` for any activation: stable state keys


class SE(nn.Module):
    """Squeeze-and-Excitation: pool → 1×1 conv (w → w_se) → act → 1×1 conv → sigmoid → scale."""

    def __init__(self, w: int, w_se: int, act: str = "relu", copies: int = 1):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(w * copies, w_se * copies, 1, bias=True, groups=copies)
        self.relu = activation(act)
        self.fc2 = nn.Conv2d(w_se * copies, w * copies, 1, bias=True, groups=copies)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


class Block(nn.Module):
    """One block of any type (dse.space.blocks); f holds its convs in order:

    x, r   a 1×1 (w_in → w_b) → b 3×3 group conv with the stride (groups = w_b / g; one for
           r) → [se] → c 1×1 (w_b → w_out), the final BN
    v, vr  a 3×3 conv with the stride (vr: its BN is the final one)
    basic  a 3×3 with the stride → b 3×3 (the final BN)
    plain  a 3×3 with the stride → b 3×3, each followed by the activation

    A residual block adds its input back (identity, or `proj`: 1×1 conv + BN when the shape
    changes) and applies the activation after the add.
    """

    def __init__(self, w_in: int, w_out: int, stride: int, b: float, g: int, se_ratio: float,
                 block: str = "x", act: str = "relu", copies: int = 1):
        super().__init__()
        bt = blocks.get(block)
        k = dict(copies=copies)
        if bt.bottleneck:
            w_b = int(regnet.bottleneck(w_out, b))
            f = {"a": ConvBN(w_in, w_b, act=act, **k),
                 "b": ConvBN(w_b, w_b, 3, stride, groups=w_b // g, act=act, **k)}
            if se_ratio:
                f["se"] = SE(w_b, round(se_ratio * w_in), act, **k)
            f["c"] = ConvBN(w_b, w_out, act=None, **k)
        else:  # a residual block activates after the add, so its last conv has no act
            last = None if bt.residual else act
            if bt.convs == 1:
                f = {"a": ConvBN(w_in, w_out, 3, stride, act=last, **k)}
            else:
                f = {"a": ConvBN(w_in, w_out, 3, stride, act=act, **k),
                     "b": ConvBN(w_out, w_out, 3, act=last, **k)}
        self.f = nn.Sequential(OrderedDict(f))
        self.residual = bt.residual
        self.proj = (ConvBN(w_in, w_out, 1, stride, act=None, **k)
                     if bt.residual and (w_in != w_out or stride != 1) else None)
        self.relu = activation(act) if bt.residual else None

    @property
    def final_bn(self) -> nn.BatchNorm2d | None:
        """The BN closing f of a residual block (the one zero_init_final_gamma starts at
        γ = 0); None for a block without a residual."""
        return self.f[-1].bn if self.residual else None

    def forward(self, x):
        if not self.residual:
            return self.f(x)
        shortcut = self.proj(x) if self.proj is not None else x
        return self.relu(shortcut + self.f(x))


class Stage(nn.Sequential):
    """d blocks b1 … bd of width w; b1 has the stage's stride and takes w_in."""

    def __init__(self, w_in: int, w: int, d: int, stride: int, b: float, g: int,
                 se_ratio: float, block: str = "x", act: str = "relu", copies: int = 1):
        super().__init__()
        for j in range(d):
            self.add_module(f"b{j + 1}", Block(w_in if j == 0 else w, w, stride if j == 0 else 1,
                                               b, g, se_ratio, block, act, copies))


class Head(nn.Module):
    """Global average pool → linear classifier (one per copy: logits (batch, copies,
    classes) when copies > 1)."""

    def __init__(self, w_in: int, num_classes: int, copies: int = 1):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = (nn.Linear(w_in, num_classes, bias=True) if copies == 1
                   else CopiesLinear(w_in, num_classes, copies))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class CopiesLinear(nn.Module):
    """K linear layers side by side: (batch, K·w_in) → (batch, K, w_out), copy k's weight
    rows k·w_out … (k+1)·w_out − 1 of `weight` (K·w_out, w_in), as K nn.Linear concatenated."""

    def __init__(self, w_in: int, w_out: int, copies: int):
        super().__init__()
        self.copies, self.w_in, self.w_out = copies, w_in, w_out
        self.weight = nn.Parameter(torch.empty(copies * w_out, w_in))
        self.bias = nn.Parameter(torch.zeros(copies * w_out))

    def forward(self, x):
        k, n = self.copies, len(x)
        x = x.reshape(n, k, self.w_in).transpose(0, 1)                  # (K, batch, w_in)
        w = self.weight.view(k, self.w_out, self.w_in).transpose(1, 2)   # (K, w_in, w_out)
        out = torch.baddbmm(self.bias.view(k, 1, self.w_out), x, w)     # (K, batch, w_out)
        return out.transpose(0, 1)


class AnyNet(nn.Module):
    """stem → stages s1, s2, … (the first block of each has the stage's stride: 2, or
    first_stride for s1) → head (pool + linear); `copies` K side by side (module doc)."""

    def __init__(self, spec: AnyNetSpec, task: Task, copies: int = 1):
        super().__init__()
        self.copies = copies
        self.stem = ConvBN(task.in_channels, spec.stem_w, 3, task.stem_stride,
                           act=spec.activation, copies=copies)
        w_in = spec.stem_w
        for i, (d, w, b, g, s) in enumerate(zip(spec.ds, spec.ws, spec.bs, spec.gs,
                                                spec.strides)):
            self.add_module(f"s{i + 1}", Stage(w_in, w, d, s, b, g, spec.se_ratio, spec.block,
                                               spec.activation, copies))
            w_in = w if d else w_in
        self.head = Head(w_in, task.num_classes, copies)

    def forward(self, x):
        for m in self.children():  # stem, s1, s2, …, head in order
            x = m(x)
        return x


def init_weights(model: nn.Module, zero_init_final_gamma: bool = False) -> None:
    """pycls init: conv ~ N(0, sqrt(2 / (k·k·out_channels))), BN γ = 1 and β = 0 (γ = 0 on
    each block's final BN when asked), linear ~ N(0, 0.01) with zero bias."""
    final = {id(m.final_bn) for m in model.modules()
             if isinstance(m, Block) and m.final_bn is not None}
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
