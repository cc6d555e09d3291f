"""Did a model learn? Read from stored columns (pure numpy/pandas): a classifier that guesses
has a training loss of ln C (cross-entropy of the uniform guess over C classes) and an error
of 100·(1 − 1/C) points. A finished model did not learn when its final training loss is
still at least LOSS_SHARE of ln C or its error at least ERROR_SHARE of the chance error.

A population of which at least UNTRAINED_SHARE did not learn says more about the recipe
(too few steps, a learning rate its blocks or activation cannot take) than about the design:
claims about it are untestable (dse.method.claims), `dse status` and the report count such
models, and `dse train` ends with the levers of the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LOSS_SHARE = 0.8        # final training loss ≥ 0.8·ln C: it barely moved from guessing
ERROR_SHARE = 0.75      # error ≥ 0.75 of the chance error (67.5% for 10 classes)
UNTRAINED_SHARE = 0.25  # this share of a population did not learn: claims are untestable
LEVERS = ("a lower or higher lr (--lr)", "a warm-up (--warmup)",
          "more epochs or images (--epochs, --train-subset)")


def chance_loss(classes) -> np.ndarray:
    """ln C: the cross-entropy of a uniform guess over C classes."""
    return np.log(np.asarray(classes, dtype=float))


def chance_error(classes) -> np.ndarray:
    """100·(1 − 1/C): the error in points of a guess."""
    return 100 * (1 - 1 / np.asarray(classes, dtype=float))


def learned(df: pd.DataFrame) -> pd.Series:
    """Per row: False when the model finished but did not learn (its final training loss or
    its error near chance, a missing loss judged on the error alone), True otherwise, also
    for rows that did not finish (they are counted elsewhere)."""
    if not len(df) or "num_classes" not in df or "error" not in df:
        return pd.Series(True, index=df.index)
    c = pd.to_numeric(df["num_classes"], errors="coerce").to_numpy(dtype=float)
    err = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    loss = (pd.to_numeric(df["train_loss"], errors="coerce").to_numpy(dtype=float)
            if "train_loss" in df else np.full(len(df), np.nan))
    done = (df["status"] == "done").to_numpy(dtype=bool) if "status" in df else \
        np.isfinite(err)
    ok_c = np.isfinite(c) & (c > 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stuck = np.isfinite(loss) & (loss >= LOSS_SHARE * chance_loss(np.where(ok_c, c, 2)))
        near = np.isfinite(err) & (err >= ERROR_SHARE * chance_error(np.where(ok_c, c, 2)))
    return pd.Series(~(done & ok_c & (stuck | near)), index=df.index)


@dataclass(frozen=True)
class Health:
    """A population's training health: finished models, how many did not learn, the
    median final training loss and the chance loss ln C (of its most common C)."""

    finished: int
    untrained: int
    median_loss: float | None
    chance_loss: float | None

    @property
    def share(self) -> float:
        return self.untrained / self.finished if self.finished else 0.0

    @property
    def sick(self) -> bool:
        """At least UNTRAINED_SHARE of its finished models did not learn."""
        return self.finished > 0 and self.share >= UNTRAINED_SHARE

    def text(self) -> str:
        """'21 of 28 models (75%) did not learn (median final training loss 2.06, chance ln
        10 = 2.30)'."""
        loss = (f" (median final training loss {self.median_loss:.2f}, chance ln C = "
                f"{self.chance_loss:.2f})" if self.median_loss is not None else "")
        return (f"{self.untrained} of {self.finished} models ({self.share:.0%}) did not "
                f"learn{loss}")

    def to_json(self) -> dict:
        return dict(finished=self.finished, untrained=self.untrained, share=self.share,
                    median_loss=self.median_loss, chance_loss=self.chance_loss)


def health(pop: pd.DataFrame) -> Health:
    """The training health of a population's finished models (status done, finite error)."""
    if not len(pop) or "error" not in pop:
        return Health(0, 0, None, None)
    err = pd.to_numeric(pop["error"], errors="coerce")
    done = np.isfinite(err.to_numpy(dtype=float))
    if "status" in pop:
        done &= (pop["status"] == "done").to_numpy(dtype=bool)
    fin = pop[done]
    if not len(fin):
        return Health(0, 0, None, None)
    loss = (pd.to_numeric(fin["train_loss"], errors="coerce").dropna()
            if "train_loss" in fin else pd.Series(dtype=float))
    c = (pd.to_numeric(fin["num_classes"], errors="coerce").dropna()
         if "num_classes" in fin else pd.Series(dtype=float))
    chance = float(chance_loss(c.mode().iloc[0])) if len(c) else None
    return Health(len(fin), int((~learned(fin)).sum()),
                  float(loss.median()) if len(loss) else None, chance)


def warning(rows) -> str:
    """The one line `dse train` ends with when models of `rows` (its results: status,
    error, train_loss, num_classes) did not learn ('' when none did not)."""
    h = health(pd.DataFrame(list(rows), columns=["status", "error", "train_loss",
                                                 "num_classes"]))
    untrained, finished = h.untrained, h.finished
    if not untrained:
        return ""
    return (f"{untrained} of {finished} models trained did not learn (final training loss "
            f"or error near chance); the recipe's levers: {', '.join(LEVERS)}")


def untrained(pops: dict, names) -> str:
    """Why a claim about the populations `names` (keys of `pops`, None skipped) is
    untestable because one of them did not train (UNTRAINED_SHARE or more of its finished
    models did not learn), or ''."""
    for s in dict.fromkeys(x for x in names if x is not None and x in pops):
        h = health(pops[s])
        if h.sick:
            return (f"{s}: {h.text()}; its errors measure this recipe's failure to train "
                    "it, not its design (train it again with another lr, a warm-up or more "
                    "epochs)")
    return ""
