"""The paper's models by name (pure): the 24 RegNetX/RegNetY models of DDS and the reference
families that `dse speed` compares them with.

A RegNet of the zoo is a RegNet spec (d, w_0, w_a, w_m, g; b = 1; SE ratio 0.25 for Y) taken
from pycls's model-zoo configs, so `spec.parse_spec` turns a name into the same compatible
AnyNetSpec as the JSON it stands for. A reference is a torchvision builder at its native
resolution, built and counted by `dse.compare.references` (torch). Names are case-insensitive.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from dse.errors import DseError

SE_Y = 0.25  # RegNetY = RegNetX + SE with ratio 0.25 of the block's input width

# name: (d, w_0, w_a, w_m, g); 224×224 ImageNet, stem width 32, b = 1 (pycls dds_baselines)
_REGNETX = {
    "RegNetX-200MF": (13, 24, 36.44, 2.49, 8),
    "RegNetX-400MF": (22, 24, 24.48, 2.54, 16),
    "RegNetX-600MF": (16, 48, 36.97, 2.24, 24),
    "RegNetX-800MF": (16, 56, 35.73, 2.28, 16),
    "RegNetX-1.6GF": (18, 80, 34.01, 2.25, 24),
    "RegNetX-3.2GF": (25, 88, 26.31, 2.25, 48),
    "RegNetX-4.0GF": (23, 96, 38.65, 2.43, 40),
    "RegNetX-6.4GF": (17, 184, 60.83, 2.07, 56),
    "RegNetX-8.0GF": (23, 80, 49.56, 2.88, 120),
    "RegNetX-12GF": (19, 168, 73.36, 2.37, 112),
    "RegNetX-16GF": (22, 216, 55.59, 2.1, 128),
    "RegNetX-32GF": (23, 320, 69.86, 2.0, 168),
}
_REGNETY = {
    "RegNetY-200MF": (13, 24, 36.44, 2.49, 8),
    "RegNetY-400MF": (16, 48, 27.89, 2.09, 8),
    "RegNetY-600MF": (15, 48, 32.54, 2.32, 16),
    "RegNetY-800MF": (14, 56, 38.84, 2.4, 16),
    "RegNetY-1.6GF": (27, 48, 20.71, 2.65, 24),
    "RegNetY-3.2GF": (21, 80, 42.63, 2.66, 24),
    "RegNetY-4.0GF": (22, 96, 31.41, 2.24, 64),
    "RegNetY-6.4GF": (25, 112, 33.22, 2.27, 72),
    "RegNetY-8.0GF": (17, 192, 76.82, 2.19, 56),
    "RegNetY-12GF": (19, 168, 73.36, 2.37, 112),
    "RegNetY-16GF": (18, 200, 106.23, 2.48, 112),
    "RegNetY-32GF": (20, 232, 115.89, 2.53, 232),
}


@dataclass(frozen=True)
class Reference:
    """A torchvision builder without weights, run at its native input resolution."""

    name: str         # torchvision builder, e.g. "efficientnet_b3"
    family: str       # ResNet | ResNeXt | EfficientNet | MobileNetV2
    resolution: int


REFERENCES = {r.name: r for r in [
    Reference("resnet50", "ResNet", 224),
    Reference("resnet101", "ResNet", 224),
    Reference("resnet152", "ResNet", 224),
    Reference("resnext50_32x4d", "ResNeXt", 224),
    Reference("resnext101_32x8d", "ResNeXt", 224),
    *(Reference(f"efficientnet_b{i}", "EfficientNet", r)
      for i, r in enumerate((224, 240, 260, 300, 380, 456))),
    Reference("mobilenet_v2", "MobileNetV2", 224),
]}


def regnet_names() -> list[str]:
    """The 24 paper names, RegNetX then RegNetY, in increasing flops."""
    return [*_REGNETX, *_REGNETY]


def family(name: str) -> str:
    """RegNetX, RegNetY or the reference family of a canonical zoo name."""
    if name in _REGNETX:
        return "RegNetX"
    if name in _REGNETY:
        return "RegNetY"
    return REFERENCES[name].family


_CANONICAL = {n.lower(): n for n in [*_REGNETX, *_REGNETY, *REFERENCES]}


def canonical(name: str) -> str | None:
    """The zoo's spelling of a name given in any case (`regnety-8.0gf` → `RegNetY-8.0GF`),
    or None when it is not in the zoo."""
    return _CANONICAL.get(name.strip().lower())


def lookup(name: str) -> str:
    """Like `canonical`, but an unknown name is a DseError listing the near misses."""
    found = canonical(name)
    if found is None:
        near = difflib.get_close_matches(name.strip().lower(), list(_CANONICAL), n=3,
                                         cutoff=0.6)
        hint = (f"did you mean {', '.join(_CANONICAL[n] for n in near)}? " if near else "")
        raise DseError(f"unknown model {name!r}: neither a JSON spec nor a name of the zoo; "
                       f"{hint}`dse zoo` lists the names (RegNetX-400MF, regnety-8.0gf, "
                       "resnet50, efficientnet_b0, ...)")
    return found


def is_reference(name: str) -> bool:
    """True for a (canonical) torchvision reference name."""
    return name in REFERENCES


def regnet_json(name: str) -> dict:
    """The RegNet spec of a zoo name in its JSON form (see spec.parse_spec)."""
    found = lookup(name)
    if found in REFERENCES:
        raise DseError(f"{found} is a torchvision reference model, not a RegNet or AnyNet "
                       "spec; only `dse describe`, `dse zoo` and `dse speed` take it")
    d, w0, wa, wm, g = {**_REGNETX, **_REGNETY}[found]
    return {"kind": "regnet", "depth": d, "w0": w0, "wa": wa, "wm": wm, "group_w": g, "b": 1,
            "se_ratio": SE_Y if found in _REGNETY else 0.0}
