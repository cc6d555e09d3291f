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
from pathlib import Path

import yaml

from dse.analysis import stats as analysis
from dse.files import writing
from dse.method import claims as expect
from dse.method import stages, suggest
from dse.method.experiment import Experiment
from dse.space import definition as spaces
from dse.store.core import Store, write_atomic


def chain_path(exp: Experiment, store: Store) -> Path:
    return store.refine_chain_path(exp.name)


def read_chain(exp: Experiment, store: Store) -> list[dict]:
    """The chain of a previous loop of this experiment on this store ([] before any)."""
    p = chain_path(exp, store)
    if not exp.refine_rounds or not p.is_file():
        return []
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return []


def loop(exp: Experiment, store: Store, train, echo=print) -> list[dict]:
    """Run the rounds; `train(space_name)` trains one space's pending models. Returns the
    chain: one entry per round with the space tried, its constraint, the test and whether
    it was kept."""
    d = store.refine_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    start = stages.load_space(exp, exp.spaces[0])
    current = start
    chain = [dict(round=0, space=start.name, refines=None, constraint=None, kept=True,
                  verdict="start", p=None, summary="")]
    refused: list = []
    for r in range(1, exp.refine_rounds + 1):
        stages.sample_space(exp, store, current, echo)
        train(current.name)
        pop = analysis.population(store.load([current.name]), current.name)
        path = d / f"{start.name}-r{r}.yaml"
        if path.is_file():
            cfg = yaml.safe_load(path.read_text())
            best = dict(constraint={k: v for k, v in cfg.items()
                                    if k not in ("extends", "name", "title", "adds")},
                        summary=str(cfg.get("adds", "")))
        else:
            out = suggest.suggest(current, pop, alpha=exp.alpha, seed=exp.seed + r)
            best = next((c for c in out["candidates"]
                         if c["significant"] and c["constraint"] not in refused), None)
            if best is None:
                chain.append(dict(round=r, space=None, refines=current.name, constraint=None,
                                  kept=False, verdict="nothing supported", p=None,
                                  summary=f"no refinement of {current.name} is supported"))
                echo(f"refine round {r}: nothing supported for {current.name}; stopping")
                break
            text = yaml.safe_dump(suggest.space_file(current, best, path.stem), sort_keys=False,
                                  allow_unicode=True)
            write_atomic(path, lambda p, t=text: Path(p).write_text(t))
        new = spaces.load(str(path))
        echo(f"refine round {r}: {current.name} → {new.name}: {best['summary']}")
        stages.sample_space(exp, store, new, echo)
        train(new.name)
        e_new = analysis.population(store.load([new.name]), new.name)["error"]
        if len(e_new) == 0:
            chain.append(dict(round=r, space=new.name, refines=current.name,
                              constraint=best["constraint"], kept=False, verdict="untrained",
                              p=None, summary=best["summary"]))
            break
        _, p_worse = expect.one_sided(pop["error"], e_new)
        kept = bool(p_worse >= exp.alpha)
        chain.append(dict(round=r, space=new.name, refines=current.name,
                          constraint=best["constraint"], kept=kept,
                          verdict="kept: not worse" if kept else "refused: worse",
                          p=float(p_worse), summary=best["summary"]))
        echo(f"refine round {r}: {new.name} {'kept' if kept else 'refused'} (one-sided KS "
             f"p = {p_worse:.3g} that it is worse than {current.name})")
        _save(exp, store, chain)
        if kept:
            current = new
        else:
            refused.append(best["constraint"])
    _save(exp, store, chain)
    return chain


def _save(exp, store, chain):
    text = json.dumps(chain, indent=2)
    write_atomic(chain_path(exp, store), lambda p: Path(p).write_text(text + "\n"))
