"""The method's loop, an experiment's `refine: {start: SPACE, rounds: K}`: train the start
space, ask `suggest` for its best supported refinement, write it as a space file, sample and
train it, and keep it only if it is shown to be at least as good as the space it refines
(the non-inferiority test of "at least as good as" within the experiment's margin, at its
alpha); K rounds, or fewer when nothing is supported.

A refused refinement is not proposed again; the next round tries the next supported
candidate of the same space. Space files and the chain go to
<store>/experiments/<name>/refine/ (`<start>-r<k>.yaml`, chain.json); a rerun reuses the
files already written, so an interrupted loop continues where it stopped.

Sequential looks: when a round found nothing and the space's sample has grown since (the
experiment's n was raised), the next look at it is a second test. It is made on a fresh
confirmation sample: only the models sampled after the previous look, so that no model
takes part in two looks. The chain records every look (`looks`: the models sampled at each)
and what the last one was tested on. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from dse.analysis import stats
from dse.analysis.population import Operand
from dse.files import write_atomic, writing
from dse.method import claims as expect
from dse.method import stages, suggest
from dse.method.experiment import Experiment
from dse.space import definition as spaces
from dse.store.core import Store


@dataclass(frozen=True)
class Step:
    """One round of the loop: the space tried (None when nothing was supported), the space
    it refines, its constraint, whether it was kept, the verdict with its p-values, the
    refinement's summary, and the looks of suggest at the space refined. Round 0 is the
    start space."""

    round: int
    space: str | None
    refines: str | None
    constraint: dict | None
    kept: bool
    verdict: str
    p: float | None            # non-inferiority p of the kept test (small: at least as good)
    summary: str
    p_worse: float | None = None  # p that it is worse by the margin or more
    looks: tuple = ()          # models of `refines` sampled at each look of suggest
    tested_on: str = ""        # the models the last look tested


def chain_path(exp: Experiment, store: Store) -> Path:
    return store.refine_chain_path(exp.name)


def read_chain(exp: Experiment, store: Store) -> list[Step]:
    """The chain of a previous loop of this experiment on this store ([] before any)."""
    p = chain_path(exp, store)
    if not exp.refine_rounds or not p.is_file():
        return []
    try:
        return [Step(**{**s, "looks": tuple(s.get("looks", ()))})
                for s in json.loads(p.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def loop(exp: Experiment, store: Store, train, echo=print, pick=None) -> list[Step]:
    """Run the rounds; `train(space_name)` trains one space's pending models; `pick`
    (dse.store.recipes.Pick) the results the verdicts read, as the analysis does (default:
    the recipe with the most results). Returns the chain: one Step per round."""
    d = store.refine_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    start = stages.load_space(exp, exp.spaces[0])
    current, refused = start, []
    before = {(s.round, s.refines): s for s in read_chain(exp, store)}
    chain = [Step(0, start.name, None, None, True, "start", None, "")]
    for r in range(1, exp.refine_rounds + 1):
        stages.sample_space(exp, store, current, echo)
        train(current.name)
        prior = before.get((r, current.name))
        found, looks, tested_on = _refinement(exp, store, current, start.name, r, refused,
                                              tuple(prior.looks) if prior else (), pick)
        if found is None:
            chain.append(Step(r, None, current.name, None, False, "nothing supported", None,
                              f"no refinement of {current.name} is supported", None, looks,
                              tested_on))
            echo(f"refine round {r}: nothing supported for {current.name} ({tested_on}); "
                 "stopping")
            break
        new, constraint, what = found
        echo(f"refine round {r}: {current.name} → {new.name}: {what}")
        step = _try(exp, store, current, new, constraint, what, r, train, echo, pick)
        chain.append(replace(step, looks=looks or (prior.looks if prior else ()),
                             tested_on=tested_on or (prior.tested_on if prior else "")))
        _save(exp, store, chain)
        if step.verdict == "untrained":
            break
        if step.kept:
            current = new
        else:
            refused.append(constraint)
    _save(exp, store, chain)
    return chain


def _refinement(exp, store, current, start: str, r: int, refused: list, looks: tuple,
                pick=None):
    """The refined space of round r: the file written by an earlier run of this round, or the
    best supported candidate not refused before, written now; None when there is none. With
    the looks made before at `current` in this round; returns (found, looks, tested on)."""
    path = store.refine_dir(exp.name) / f"{start}-r{r}.yaml"
    if path.is_file():
        cfg = yaml.safe_load(path.read_text())
        constraint = {k: v for k, v in cfg.items() if k not in ("extends", "name", "title", "adds")}
        return (spaces.load(str(path)), constraint, str(cfg.get("adds", ""))), (), ""
    pop, looks, tested_on = _look(store, current, looks, pick)
    if pop is None:
        return None, looks, tested_on
    out = suggest.suggest(current, pop, alpha=exp.alpha, seed=exp.seed + r,
                          fits=store.fit_cache())
    best = next((c for c in out.candidates
                 if c.significant and c.constraint not in refused), None)
    if best is None:
        return None, looks, tested_on
    path.parent.mkdir(parents=True, exist_ok=True)
    found = suggest.write_space_file(current, best, path), best.constraint, best.what
    return found, looks, tested_on


def _look(store, current, looks: tuple, pick=None):
    """The models a new look of suggest at `current` may test: all of them at a first look;
    after earlier looks, only those sampled since the last one (a fresh confirmation
    sample). Returns (population or None, the looks with this one, what it tested)."""
    pop = stats.population(store.load([current.name], pick), current.name)
    sampled = len(store.read_models(current.name))
    if not looks:
        return pop, (sampled,), f"first look: all {len(pop)} models"
    last = looks[-1]
    fresh = pop[pop["sample_index"] >= last]
    if sampled <= last or len(fresh) < suggest.MIN_MODELS:
        return None, tuple(looks), (f"{len(fresh)} models sampled since the look at {last}; "
                                    f"a new look needs at least {suggest.MIN_MODELS} fresh "
                                    "ones (raise n)")
    return fresh, (*looks, sampled), (f"look {len(looks) + 1}: the {len(fresh)} models "
                                      f"sampled since the look at {last} (a fresh "
                                      "confirmation sample)")


def _try(exp, store, current, new, constraint, what, r, train, echo, pick=None) -> Step:
    """Sample and train the refined space; keep it when it is shown to be at least as good
    as the space it refines (non-inferiority within the experiment's margin)."""
    stages.sample_space(exp, store, new, echo)
    train(new.name)
    df = store.load([current.name, new.name], pick)
    if stats.counts(df, new.name)["finished"] == 0:
        return Step(r, new.name, current.name, constraint, False, "untrained", None, what)
    pops = {s: stats.population(df, s) for s in (current.name, new.name)}
    curves = {s: (p["error"].to_numpy(dtype=float), None) for s, p in pops.items()}
    claim = expect.Claim(f"{new.name} at least as good as {current.name}", "at_least",
                         Operand(new.name), Operand(current.name))
    v = expect.judge(claim, curves, pops, exp.alpha, seed=exp.seed, margin=exp.margin)
    if v.verdict == expect.UNTESTABLE:  # e.g. its models did not learn under this recipe
        echo(f"refine round {r}: {new.name} refused: untestable against {current.name} "
             f"({v.detail})")
        return Step(r, new.name, current.name, constraint, False, "refused: untestable", None,
                    what)
    kept = v.verdict == expect.HOLDS
    verdict = ("kept: at least as good" if kept else "refused: worse"
               if v.verdict == expect.AGAINST else "refused: not shown to be as good")
    echo(f"refine round {r}: {new.name} {verdict} as {current.name} (non-inferiority by "
         f"{exp.margin:g} points: p = {v.p:.3g}; worse by more: p = {v.p_against:.3g}; "
         f"{v.effect.text()})")
    return Step(r, new.name, current.name, constraint, kept, verdict, v.p, what, v.p_against)


def _save(exp, store, chain: list[Step]):
    text = json.dumps([asdict(s) for s in chain], indent=2)
    write_atomic(chain_path(exp, store), lambda p: Path(p).write_text(text + "\n"))
