"""dse: design-space design of neural networks (after Radosavovic et al., CVPR 2020).

One package per stage, in the order they may import each other (docs/architecture.md):
space (define, sample) → data → store → train → runner (a whole store) → analysis →
method (experiments, claims, suggest, refine) → compare (the paper's comparisons) → cli.
The pure packages never import torch.
"""

__version__ = "0.3.0"
