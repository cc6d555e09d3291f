"""dse: design-space design of neural networks (after Radosavovic et al., CVPR 2020).

The pure stages (spaces, widths, sampling, complexity, store, analysis) import numpy and
pandas only; torch is imported by the model builder and the trainer alone.
"""

__version__ = "0.1.0"
