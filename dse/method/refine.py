"""The method's loop, an experiment's `refine: {start: SPACE, rounds: K}`: train the start
space, ask `suggest` for its best supported refinement, write it as a space file, sample and
train it, and keep it only if its error EDF is not worse than the space it refines (the
one-sided KS test of "at least as good as" at the experiment's alpha); K rounds, or fewer
when nothing is supported.

A refused refinement is not proposed again; the next round tries the next supported
candidate of the same space. Space files and the chain go to
<store>/experiments/<name>/refine/ (`<start>-r<k>.yaml`, chain.json); a rerun reuses the
files already written, so an interrupted loop continues where it stopped. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from dse.analysis import stats as analysis
from dse.method import claims as expect
from dse.method import stages, suggest
from dse.method.experiment import Experiment
from dse.space import definition as spaces
from dse.store.core import Store, write_atomic


@dataclass(frozen=True)
class Step:
    """One round of the loop: the space tried (None when nothing was supported), the space
    it refines, its constraint, whether it was kept, the verdict, the one-sided KS p that it
    is worse, and the refinement's summary. Round 0 is the start space."""

    round: int
    space: str | None
    refines: str | None
    constraint: dict | None
    kept: bool
    verdict: str
    p: float | None
    summary: str


def chain_path(exp: Experiment, store: Store) -> Path:
    return store.refine_chain_path(exp.name)


def read_chain(exp: Experiment, store: Store) -> list[Step]:
    """The chain of a previous loop of this experiment on this store ([] before any)."""
    p = chain_path(exp, store)
    if not exp.refine_rounds or not p.is_file():
        return []
    try:
        return [Step(**s) for s in json.loads(p.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def loop(exp: Experiment, store: Store, train, echo=print) -> list[Step]:
    """Run the rounds; `train(space_name)` trains one space's pending models. Returns the
    chain: one Step per round."""
    start = stages.load_space(exp, exp.spaces[0])
    current, refused = start, []
    chain = [Step(0, start.name, None, None, True, "start", None, "")]
    for r in range(1, exp.refine_rounds + 1):
        stages.sample_space(exp, store, current, echo)
        train(current.name)
        found = _refinement(exp, store, current, start.name, r, refused)
        if found is None:
            chain.append(Step(r, None, current.name, None, False, "nothing supported", None,
                              f"no refinement of {current.name} is supported"))
            echo(f"refine round {r}: nothing supported for {current.name}; stopping")
            break
        new, constraint, what = found
        echo(f"refine round {r}: {current.name} → {new.name}: {what}")
        step = _try(exp, store, current, new, constraint, what, r, train, echo)
        chain.append(step)
        _save(exp, store, chain)
        if step.verdict == "untrained":
            break
        if step.kept:
            current = new
        else:
            refused.append(constraint)
    _save(exp, store, chain)
    return chain


def _refinement(exp, store, current, start: str, r: int, refused: list):
    """The refined space of round r: the file written by an earlier run of this round, or the
    best supported candidate not refused before, written now; None when there is none."""
    path = store.refine_dir(exp.name) / f"{start}-r{r}.yaml"
    if path.is_file():
        cfg = yaml.safe_load(path.read_text())
        constraint = {k: v for k, v in cfg.items() if k not in ("extends", "name", "title", "adds")}
        return spaces.load(str(path)), constraint, str(cfg.get("adds", ""))
    pop = analysis.population(store.load([current.name]), current.name)
    out = suggest.suggest(current, pop, alpha=exp.alpha, seed=exp.seed + r)
    best = next((c for c in out.candidates
                 if c.significant and c.constraint not in refused), None)
    if best is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return suggest.write_space_file(current, best, path), best.constraint, best.what


def _try(exp, store, current, new, constraint, what, r, train, echo) -> Step:
    """Sample and train the refined space; keep it unless its errors are worse (one-sided KS
    at the experiment's alpha)."""
    stages.sample_space(exp, store, new, echo)
    train(new.name)
    e_old = analysis.population(store.load([current.name]), current.name)["error"]
    e_new = analysis.population(store.load([new.name]), new.name)["error"]
    if len(e_new) == 0:
        return Step(r, new.name, current.name, constraint, False, "untrained", None, what)
    _, p_worse = expect.one_sided(e_old, e_new)
    kept = bool(p_worse >= exp.alpha)
    echo(f"refine round {r}: {new.name} {'kept' if kept else 'refused'} (one-sided KS "
         f"p = {p_worse:.3g} that it is worse than {current.name})")
    return Step(r, new.name, current.name, constraint, kept,
                "kept: not worse" if kept else "refused: worse", float(p_worse), what)


def _save(exp, store, chain: list[Step]):
    text = json.dumps([asdict(s) for s in chain], indent=2)
    write_atomic(chain_path(exp, store), lambda p: Path(p).write_text(text + "\n"))
