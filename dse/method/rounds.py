"""An experiment in rounds (`rounds: {size: K, max_n: N}`, `dse run --until-decided`): the
first look at the experiment's n models per space, then K more per round, each round sampled
and trained and then judged, until every claim is decided or N is reached.

Each look judges every claim on the first n_k models of each space in sampling order
(dse.method.analyze.evidence), turns each claim's p (and the p of its opposite) into a
sequential p (dse.analysis.sequential: O'Brien–Fleming-shaped alpha spending over the
planned looks, combined by the union bound), and applies the experiment's correction
(Holm by default) over all of its claims. A claim is decided once its corrected sequential
p falls below α (holds) or its opposite's does (contradicted); it keeps that verdict. A
space stops growing once every claim that reads it is decided.

Everything a look found is written to <store>/experiments/<name>/rounds.json (atomically)
before the next round starts, so a run killed with `kill -9` resumes at the round it was in:
the models already sampled are the same draw, those already trained are not trained again,
and a look already written is not taken again. The schedule is fixed at the first look; a
rerun that states another is refused, as the looks taken would not be valid under it.
No torch here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dse.analysis import effects
from dse.analysis.sequential import Schedule, holm_boundaries, sequential_p
from dse.method import analyze, stages
from dse.method.claims import AGAINST, HOLDS, UNTESTABLE
from dse.method.experiment import Experiment
from dse.method.looks import BOTH, OPEN, decided, read_state, schedule, write_state
from dse.store.core import Store
from dse.system import stamp

# ---- the loop ----------------------------------------------------------------------------

def open_spaces(exp: Experiment, state: dict | None) -> list[str]:
    """The spaces that still grow: those read by a claim not yet decided (at the first look,
    every space of the experiment)."""
    rows = decided(state)
    if not rows:
        return list(exp.spaces)
    undecided = [c for c in exp.claims if rows[c.text]["status"] in (OPEN, UNTESTABLE)]
    read = {op.space for c in undecided for op in c.operands if op.store is None}
    return [s for s in exp.spaces if s in read]


def run(exp: Experiment, store: Store, train, echo=print, pick=None) -> dict:
    """Take the experiment's remaining looks: sample the open spaces up to the next look's n,
    `train(spaces)` them, judge, write the state; stop when every claim is decided or the
    last look is taken. Returns the state."""
    plan = schedule(exp)
    state = read_state(exp, store) or dict(
        schedule=plan.to_json(), claims=[c.text for c in exp.claims], looks=[],
        stopped=None)
    if state["stopped"]:
        echo(f"rounds: stopped after look {len(state['looks'])} ({state['stopped']}); "
             "nothing to train")
        return state
    for k in range(len(state["looks"]), len(plan.looks)):
        n = plan.looks[k]
        grow = open_spaces(exp, state)
        echo(f"round {k + 1} of at most {len(plan.looks)}: {n} models per space in "
             f"{', '.join(grow)}")
        at = replace(exp, n=n)
        for s in grow:
            stages.sample_space(at, store, stages.load_space(exp, s), echo)
        train(grow)
        state["looks"].append(look(exp, Store.existing(store), plan, state, k, grow, pick))
        left = [c for c in state["looks"][-1]["claims"] if c["status"] in (OPEN, UNTESTABLE)]
        if not left:
            state["stopped"] = "every claim decided"
        elif k == len(plan.looks) - 1:
            state["stopped"] = f"budget spent: {n} models per space"
        state["finished_at"] = stamp()
        write_state(exp, store, state)
        echo(_look_line(state["looks"][-1]))
        if state["stopped"]:
            echo(f"rounds: stopped ({state['stopped']})")
            break
    return state


def replay(exp: Experiment, store: Store, plan: Schedule, pick=None) -> dict:
    """The looks a finished run would have taken under `plan`, its models taken in the order
    they finished (finished_at); nothing is trained or written. Returns the state."""
    state = dict(schedule=plan.to_json(), claims=[c.text for c in exp.claims], looks=[],
                 stopped=None)
    for k in range(len(plan.looks)):
        state["looks"].append(look(exp, store, plan, state, k, open_spaces(exp, state), pick,
                                   order="finished_at"))
        if not any(c["status"] in (OPEN, UNTESTABLE) for c in state["looks"][-1]["claims"]):
            state["stopped"] = "every claim decided"
            break
    return state


def look(exp: Experiment, store: Store, plan: Schedule, state: dict, k: int, grow: list,
         pick=None, order: str = "sample_index") -> dict:
    """Look k (0-based): each claim's own test on the first n_k models of each space, its
    sequential p and the correction's verdict."""
    before = decided(state)
    n = plan.looks[k]
    settled = {t for t, old in before.items() if old["status"] not in (OPEN, UNTESTABLE)}
    judged = [c for c in exp.claims if c.text not in settled]  # decided ones are kept
    found = {v.claim: v for v in (analyze.evidence(exp, store, n, pick, order=order,
                                                   claims=judged) if judged else ())}
    history = state["looks"]
    rows, p_seq, vs_seq = [], [], []
    for c in exp.claims:
        if c.text in settled:
            old = before[c.text]
            rows.append(dict(old, look_decided=old["look_decided"]))  # kept as decided
            p_seq.append(old["p_seq"])
            vs_seq.append(old["p_against_seq"])
            continue
        v = found[c.text]
        ps = [h["claims"][i]["p"] for h in history for i in [_index(exp, c.text)]] + [v.p]
        pv = [h["claims"][i]["p_against"] for h in history
              for i in [_index(exp, c.text)]] + [v.p_against]
        p_seq.append(float(sequential_p(_nums(ps), plan.shares)[-1]))
        vs_seq.append(float(sequential_p(_nums(pv), plan.shares)[-1]))
        rows.append(dict(claim=c.text, kind=c.kind, p=_num(v.p), p_against=_num(v.p_against),
                         statistic=v.statistic, test=v.test,
                         effect=None if v.effect is None else v.effect.estimate,
                         untestable=v.detail if v.verdict == UNTESTABLE else None))
    adj = effects.adjust(p_seq, exp.correction)
    adj_vs = effects.adjust(vs_seq, exp.correction)
    bound = holm_boundaries(p_seq, exp.alpha) if exp.correction == "holm" else \
        np.full(len(p_seq), exp.alpha)
    for i, row in enumerate(rows):
        if "look_decided" in row:
            continue
        holds, against = adj[i] < exp.alpha, adj_vs[i] < exp.alpha
        status = BOTH if holds and against else HOLDS if holds else AGAINST if against else \
            UNTESTABLE if row["untestable"] else OPEN
        row.update(p_seq=p_seq[i], p_against_seq=vs_seq[i], p_adjusted=float(adj[i]),
                   p_against_adjusted=float(adj_vs[i]),
                   boundary=float(bound[i] * plan.shares[k]), status=status,
                   look_decided=None if status in (OPEN, UNTESTABLE) else k + 1)
    return dict(look=k + 1, n=n, spaces=list(grow), share=plan.shares[k],
                level=plan.level(k), claims=rows, at=stamp())


def _index(exp: Experiment, text: str) -> int:
    return [c.text for c in exp.claims].index(text)


def _num(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def _nums(ps) -> np.ndarray:
    return np.array([np.nan if p is None else p for p in ps], dtype=float)


def _look_line(lk: dict) -> str:
    got = [f"{c['status']}: {c['claim']}" for c in lk["claims"]
           if c["look_decided"] == lk["look"]]
    left = sum(c["status"] in (OPEN, UNTESTABLE) for c in lk["claims"])
    return (f"look {lk['look']} at {lk['n']} models per space (α spent here "
            f"{lk['level']:.2g}): " + ("; ".join(got) if got else "nothing decided")
            + f"; {left} claim{'s' * (left != 1)} open")
