"""Reference networks from torchvision (no weights) and a pycls-style counter for any module.

`count` runs one forward pass at batch 1 with forward hooks and adds up, per layer, what
dse.space.complexity adds up analytically (REFERENCE §5): a conv counts k·k·c_in·c_out/groups
multiply-adds per output pixel (+1 per output with a bias), its weights, and its output
elements as activations; a linear layer likewise; BN counts 2·C parameters; a max or average
pool with a window counts its output elements as activations; global pooling, activations
(ReLU, SiLU, sigmoid), the SE multiply, residual adds and dropout count nothing. The pass
runs on the meta device, so it costs shapes only and needs no memory for the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from dse.space import zoo


def build(name: str) -> nn.Module:
    """The torchvision reference network of a zoo name (randomly initialized)."""
    import torchvision.models as tvm

    ref = zoo.REFERENCES[zoo.lookup(name)]
    return getattr(tvm, ref.name)(weights=None)


def _pair(x):
    return x if isinstance(x, tuple) else (x, x)


def _is_global(m: nn.Module) -> bool:
    return isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and \
        _pair(m.output_size) == (1, 1)


def count(model: nn.Module, resolution: int, in_channels: int = 3) -> dict:
    """{"flops", "params", "acts"} of a module on one resolution×resolution input (pycls
    conventions; flops are multiply-adds). Params are counted per layer, so a parameter
    outside conv/linear/BN layers would show as a difference from the module's own count."""
    total = {"flops": 0, "params": 0, "acts": 0}

    def hook(m, _inputs, out):
        n_out = out.numel()  # batch 1: elements of one output
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            per_out = kh * kw * m.in_channels // m.groups
            total["flops"] += per_out * n_out + (n_out if m.bias is not None else 0)
            total["acts"] += n_out
        elif isinstance(m, nn.Linear):
            total["flops"] += m.in_features * n_out + (n_out if m.bias is not None else 0)
            total["acts"] += n_out
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or \
                (isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and not _is_global(m)):
            total["acts"] += n_out
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            total["params"] += sum(p.numel() for p in m.parameters(recurse=False))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, in_channels, resolution, resolution, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def complexity(name: str) -> dict:
    """{"flops", "params", "acts", "resolution", "family"} of a reference at its native
    resolution, counted on the meta device (no weights are allocated)."""
    ref = zoo.REFERENCES[zoo.lookup(name)]
    with torch.device("meta"):
        model = build(ref.name)
    return {**count(model, ref.resolution), "resolution": ref.resolution, "family": ref.family}
