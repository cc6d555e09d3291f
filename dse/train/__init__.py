"""Build and train one model. Torch-free: the proxy-training `Recipe` (`recipe`) and the
`Outcome` of a training (`outcome`). With torch: the AnyNet builder (`models`), the trainer
with its CUDA-graph step (`trainer`), and several models trained at once on CUDA streams
(`multistream`). Importing this package does not import torch."""

from dse.train.outcome import Outcome
from dse.train.recipe import Recipe, lr_schedule

__all__ = ["Outcome", "Recipe", "lr_schedule"]
