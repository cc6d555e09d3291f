"""The block types a stage can repeat, and the activations (pure).

DDS App. D compares the X block with three others, and NDS's CIFAR spaces use two more:

    x      residual bottleneck with group conv: 1×1, 3×3 group conv (the stride), 1×1; b and g
    r      DDS's R: the X block without groups (one group, g = w_b); b applies
    v      DDS's V: one 3×3 conv + BN + activation, no residual
    vr     DDS's VR: V with a residual (1×1 projection + BN when the shape changes)
    basic  NDS's ResNet block (pycls `res_basic_block`): two 3×3 convs + residual
    plain  NDS's Vanilla block (pycls `vanilla_block`): two 3×3 convs, no residual

A block without a bottleneck has b = 1; a block without groups has one group (g = w_b). A
spec or space that sets b or g where the block has none is refused, so is SE (`se_ratio`)
outside the bottleneck blocks (pycls's vanilla and basic blocks take none).
"""

from __future__ import annotations

from dataclasses import dataclass

from dse.errors import DseError


@dataclass(frozen=True)
class Block:
    """One block type: which parameters apply, whether it adds its input back."""

    name: str
    title: str
    bottleneck: bool   # b applies: w_b = w / b
    groups: bool       # g applies: a group conv of group width g
    residual: bool     # output = act(shortcut + f(x)); projection when the shape changes
    convs: int         # 3×3 convs at width w (0 for the bottleneck blocks)
    pycls: str | None  # pycls's BLOCK_TYPE of the same block, if it has one

    @property
    def se(self) -> bool:
        """SE applies (after the 3×3 conv of a bottleneck block, as pycls's Y block)."""
        return self.bottleneck


BLOCKS = {b.name: b for b in (
    Block("x", "X (residual bottleneck, group conv)", True, True, True, 0,
          "res_bottleneck_block"),
    Block("r", "R (residual bottleneck, no groups)", True, False, True, 0,
          "res_bottleneck_block"),
    Block("v", "V (one 3×3 conv)", False, False, False, 1, None),
    Block("vr", "VR (one 3×3 conv + residual)", False, False, True, 1, None),
    Block("basic", "ResNet basic (two 3×3 convs + residual)", False, False, True, 2,
          "res_basic_block"),
    Block("plain", "Vanilla (two 3×3 convs)", False, False, False, 2, "vanilla_block"),
)}
DEFAULT = "x"
ACTIVATIONS = ("relu", "silu")
DEFAULT_ACTIVATION = "relu"


def get(name, where: str = "block") -> Block:
    """The block type of a name; DseError listing the allowed ones otherwise."""
    if not isinstance(name, str) or name not in BLOCKS:
        raise DseError(f"{where}: unknown block {name!r}; allowed: {', '.join(BLOCKS)}")
    return BLOCKS[name]


def activation(name, where: str = "activation") -> str:
    """A known activation name; DseError listing the allowed ones otherwise."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise DseError(f"{where}: unknown activation {name!r}; allowed: "
                       f"{', '.join(ACTIVATIONS)}")
    return name


def check_params(block: Block, where: str, b_set: bool, g_set: bool, se: float) -> None:
    """Refuse b, g or SE set for a block that has no such thing."""
    if b_set and not block.bottleneck:
        raise DseError(f"{where}: b does not apply to {block.name} blocks (no bottleneck); "
                       "b applies to x and r blocks")
    if g_set and not block.groups:
        raise DseError(f"{where}: g does not apply to {block.name} blocks (no group conv); "
                       "g applies to x blocks")
    if se and not block.se:
        raise DseError(f"{where}: se_ratio does not apply to {block.name} blocks; SE goes with "
                       "the bottleneck blocks x and r")
