"""Shared fixtures: the paper's reference models."""

import pytest

# pycls model zoo, 224×224, 1000 classes, ImageNet stem (REFERENCE §5)
ZOO = {
    "RegNetX-200MF": (dict(kind="regnet", depth=13, w0=24, wa=36.44, wm=2.49, group_w=8),
                      199_040_872, 2_684_792, 2_164_056),
    "RegNetX-400MF": (dict(kind="regnet", depth=22, w0=24, wa=24.48, wm=2.54, group_w=16),
                      397_678_568, 5_157_512, 3_143_272),
    "RegNetY-400MF": (dict(kind="regnet", depth=16, w0=48, wa=27.89, wm=2.09, group_w=8,
                           se_ratio=0.25), 401_849_056, 4_344_144, 3_892_496),
}


@pytest.fixture(params=sorted(ZOO))
def zoo_model(request):
    """(name, spec dict, flops, params, acts) of one published model."""
    return (request.param, *ZOO[request.param])
