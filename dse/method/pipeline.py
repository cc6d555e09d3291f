"""`dse run` as a library call: carry out an experiment on a store, stage by stage (sample,
train, the refine loop, analyze), as the command line does and a notebook can; an experiment
in rounds samples, trains and judges round by round (dse.method.rounds) before its analysis.
"""

from __future__ import annotations

from dse.method import analyze, halving, refine, rounds, stages
from dse.method.experiment import Experiment
from dse.store.core import Store

STAGES = ("sample", "train", "analyze")  # what `only` picks, in the order a run goes


def run(exp: Experiment, store: Store, only: str | None = None, echo=print,
        progress=None, pick=None) -> dict | None:
    """Run the experiment's stages (all of them, or `only` one); returns the analysis summary
    when the analyze stage ran. `progress()` makes a fresh training report per training call
    (dse.runner.progress.Progress; None trains silently); `pick` (dse.store.recipes.Pick)
    the results the analysis reads (default: the recipe with the most results)."""
    if only not in (None, *STAGES):
        raise ValueError(f"only must be one of {', '.join(STAGES)} (got {only!r})")
    report = progress or (lambda: None)
    if exp.rounds and only in (None, "train"):  # sample, train and judge, round by round
        from dse.runner import loop as runner

        stages.record(exp, store)
        rounds.run(exp, store, lambda spaces: _warn_untrained(
            [runner.run(store, spaces, exp.options, report=report())]), echo, pick)
    else:
        if only in (None, "sample"):
            stages.record(exp, store)
            stages.sample(exp, store, echo)
        if only in (None, "train"):
            _train(exp, store, report, echo, pick)
    if only in (None, "analyze"):
        return analyze.analyze(exp, store, pick=pick)
    return None


def _train(exp: Experiment, store: Store, report, echo, pick=None) -> None:
    """The train stage: the models without a result, the promote stages, the refine loop
    (whose verdicts read the results `pick` names, as the analysis does)."""
    from dse.runner import loop as runner

    runs = [stages.train(exp, Store.existing(store), report())]
    for options in exp.promotes:  # longer schedules, reruns: dse train --top/--seeds
        if isinstance(options, halving.Halving):
            runs += halving.run(options, store, list(exp.spaces), report)
        else:
            runs.append(runner.run(store, list(exp.spaces), options, report=report()))
    _warn_untrained(runs)
    if exp.refine_rounds:
        refine.loop(exp, store, lambda name: runner.run(store, [name], exp.options,
                                                        report=report()), echo, pick)


def _warn_untrained(runs) -> None:
    """One DseWarning when models of these training runs did not learn (the recipe's
    levers named; dse.analysis.health)."""
    import warnings

    from dse.analysis import health
    from dse.errors import DseWarning

    line = health.warning([o for r in runs for o in r.outcomes])
    if line:
        warnings.warn(line, DseWarning, stacklevel=1)
