"""Successive halving as a promote stage of an experiment:

    promote:
      - {halving: {eta: 3, rungs: [1, 3, 9]}, curves: true}

trains every model of each space at the first rung's epochs, then the best ⌊n/eta⌋ of them
(by that rung's error) at the next rung's, and so on to the last. Each rung is an ordinary
`dse train` of its own recipe (the stage's, with the rung's epochs): its results are trials in
the store, and a rung's models are a stored selection (dse.store.selections, the file a
`dse train --top K` of that recipe reads), made from the rung below once all of its models
have a result and before any of them trains. A killed stage, run again, continues where it
stopped and trains nothing twice. `dse halving SPACE` (dse.analysis.halving) replays the rule
on curves already trained. No torch here: training is imported when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dse.analysis.halving import counts
from dse.errors import DseError
from dse.runner.options import TrainOptions
from dse.store import selections
from dse.store.core import Store
from dse.store.recipes import fingerprint, label
from dse.store.status import Status
from dse.system import stamp
from dse.train.recipe import spec_of


@dataclass(frozen=True)
class Halving:
    """A successive-halving promote stage: `rungs` (epochs, rising), keeping the best 1/eta
    at each, trained with `options` (its recipe's epochs are set per rung)."""

    eta: float
    rungs: tuple
    options: TrainOptions

    top = None  # no `--top K` of the experiment's recipe: every model starts (dse.method.analyze)

    def at(self, j: int, top: int | None = None) -> TrainOptions:
        """The TrainOptions of rung j (from 0): the rung's epochs; its `top` models."""
        return replace(self.options, recipe=replace(self.options.recipe, epochs=self.rungs[j]),
                       top=top)

    def recipe_of(self, j: int) -> tuple[str, str]:
        """The fingerprint and label of rung j's recipe."""
        o = self.at(j)
        spec = spec_of(o.recipe, o.draws)
        return fingerprint(spec), label(spec)

    def counts(self, n: int) -> list[int]:
        """Models at each rung when a space holds n."""
        return counts(n, self.eta, len(self.rungs))

    def describe(self) -> str:
        return (f"successive halving at {', '.join(map(str, self.rungs))} epochs, keeping "
                f"the best 1/{self.eta:g} at each rung")


def run(stage: Halving, store: Store, spaces, report=lambda: None) -> list:
    """Train the stage on the store's `spaces`: rung 1 for every model, then each space's
    later rungs, each promoting from the rung below; returns the runs' Summaries
    (dse.runner.loop). `report()` makes a fresh training report per run."""
    from dse.runner import loop as runner

    names = [store.resolve(s) for s in spaces]
    runs = [runner.run(store, names, stage.at(0), report=report())]
    for space in names:
        n = len(store.read_models(space, ["model_id"]))
        c = stage.counts(n)
        for j in range(1, len(stage.rungs)):
            promote(store, space, stage, j, c[j])
            runs.append(runner.run(store, [space], stage.at(j, top=c[j]), report=report()))
    return runs


def rung_models(store: Store, space: str, stage: Halving, j: int) -> list[str] | None:
    """The models of rung j of a space (every model at rung 0; later, its stored selection,
    None before it is made)."""
    if j == 0:
        return store.read_models(space, ["model_id"])["model_id"].tolist()
    n = len(store.read_models(space, ["model_id"]))
    fp, _ = stage.recipe_of(j)
    sel = selections.read(store, space, selections.name(fp, stage.counts(n)[j]))
    return None if sel is None else sel.models


def promote(store: Store, space: str, stage: Halving, j: int, keep: int) -> selections.Selection:
    """The models of rung j (from 1): the stored selection, else the `keep` lowest errors of
    rung j − 1 (seeds averaged; only finished results rank), stored before anything trains.
    Raises DseError while a model of rung j − 1 has no result yet."""
    fp, lab = stage.recipe_of(j)
    have = selections.read(store, space, selections.name(fp, keep))
    if have is not None:
        return have
    below = rung_models(store, space, stage, j - 1)
    fp_below, lab_below = stage.recipe_of(j - 1)
    if below is None:
        raise DseError(f"successive halving of {space}: rung {j} ({stage.rungs[j - 1]} "
                       "epochs) has no stored selection; run the stage from its start")
    res = store.read_results(space)
    rows = res[(res["recipe"] == fp_below) & res["model_id"].isin(below)]
    missing = len(set(below) - set(rows["model_id"]))
    if missing:
        raise DseError(f"successive halving of {space}: {missing} of the {len(below)} models "
                       f"at {stage.rungs[j - 1]} epochs have no result yet (another run may "
                       "be training them, or they were left out); run again once they have, "
                       "and the next rung is chosen then")
    done = rows[rows["status"] == Status.DONE].groupby("model_id", as_index=False)["error"].mean()
    ids = done.sort_values(["error", "model_id"])["model_id"].head(keep).tolist()
    made = selections.Selection(fp, lab, keep, None, 0, tuple(ids), (), fp_below, lab_below,
                                stamp())
    return selections.keep(store, space, made)
