"""Torch networks for AnyNet/RegNet specs: stem, X/Y blocks, head, pycls initialization.

RegNets are built through their AnyNetSpec (dse.spec.parse_spec / the sampler), so one
builder serves every space, and its parameter count equals dse.complexity's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dse.spec import AnyNetSpec, Task


def _conv_bn(w_in, w_out, k=1, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(w_in, w_out, k, stride=stride, padding=k // 2, groups=groups,
                        bias=False), nn.BatchNorm2d(w_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SE(nn.Module):
    """Squeeze-and-Excitation: pool → 1×1 conv (w → w_se) → ReLU → 1×1 conv → sigmoid → scale."""

    def __init__(self, w: int, w_se: int):
        super().__init__()
        self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w, w_se, 1, bias=True),
                               nn.ReLU(inplace=True), nn.Conv2d(w_se, w, 1, bias=True),
                               nn.Sigmoid())

    def forward(self, x):
        return x * self.f(x)


class Block(nn.Module):
    """X block (residual bottleneck with group conv); with se_ratio > 0 the Y block.

    1×1 (w_in → w_b) → 3×3 group conv with the stride (groups = w_b / g) → [SE] → 1×1
    (w_b → w_out) with its final BN; identity shortcut, or 1×1 conv + BN when the shape
    changes; ReLU after the add.
    """

    def __init__(self, w_in: int, w_out: int, stride: int, b: int, g: int, se_ratio: float):
        super().__init__()
        w_b = w_out // b
        parts = [_conv_bn(w_in, w_b), _conv_bn(w_b, w_b, 3, stride, groups=w_b // g)]
        if se_ratio:
            parts.append(SE(w_b, round(se_ratio * w_in)))
        parts.append(_conv_bn(w_b, w_out, relu=False))
        self.f = nn.Sequential(*parts)
        self.final_bn = parts[-1][1]
        self.proj = (_conv_bn(w_in, w_out, 1, stride, relu=False)
                     if (w_in != w_out or stride != 1) else None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = self.proj(x) if self.proj is not None else x
        return self.relu(shortcut + self.f(x))


class AnyNet(nn.Module):
    """stem → stages of blocks (first block of each stage has stride 2) → pool + linear."""

    def __init__(self, spec: AnyNetSpec, task: Task):
        super().__init__()
        self.stem = _conv_bn(task.in_channels, spec.stem_w, 3, task.stem_stride)
        blocks, w_in = [], spec.stem_w
        for d, w, b, g in zip(spec.ds, spec.ws, spec.bs, spec.gs):
            for j in range(d):
                blocks.append(Block(w_in, w, 2 if j == 0 else 1, b, g, spec.se_ratio))
                w_in = w
        self.body = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, task.num_classes, bias=True)

    def forward(self, x):
        x = self.pool(self.body(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


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
    return sum(p.numel() for p in model.parameters())
