"""Runtime against complexity (DDS §4, Fig. 12), pure numpy: log-log least-squares fits of
time per image against flops and against activations, and each family's acts-vs-flops
exponent (the paper: about 0.5 for RegNets, about 1 for EfficientNets)."""

from __future__ import annotations

import numpy as np


def loglog_fit(x, y) -> dict:
    """Least squares of log y = slope·log x + intercept: {"slope", "intercept", "r2", "n"}.
    With fewer than 2 distinct x the fit is undefined (None values)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    if n < 2 or np.ptp(lx) == 0:
        return {"slope": None, "intercept": None, "r2": None, "n": n}
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2, "n": n}


def seconds_per_image(models: list[dict]) -> np.ndarray:
    """Time per image of measured models (rows with "images_per_second")."""
    return 1.0 / np.asarray([m["images_per_second"] for m in models], dtype=float)


def speed_fits(models: list[dict]) -> dict:
    """Time per image against flops and against acts over all measured models:
    {"flops": fit, "acts": fit}; the larger r2 is the better single predictor."""
    t = seconds_per_image(models)
    return {k: loglog_fit([m[k] for m in models], t) for k in ("flops", "acts")}


def family_exponents(models: list[dict]) -> dict:
    """Per family, the exponent e of acts ∝ flops^e (log-log slope) with its r2 and count."""
    out = {}
    for fam in dict.fromkeys(m["family"] for m in models):
        rows = [m for m in models if m["family"] == fam]
        out[fam] = loglog_fit([m["flops"] for m in rows], [m["acts"] for m in rows])
    return out
