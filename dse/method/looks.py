"""The record of an experiment in rounds (dse.method.rounds takes the looks): its schedule,
<store>/experiments/<name>/rounds.json with every look taken (each claim's p, sequential p,
corrected p, boundary and status), written atomically, and the verdicts it gives the
summary. No torch here."""

from __future__ import annotations

import json

from dse.analysis.sequential import Schedule
from dse.errors import DseError
from dse.files import write_json, writing
from dse.method.claims import AGAINST, HOLDS, UNSURE, UNTESTABLE
from dse.method.experiment import Experiment
from dse.store.core import Store

OPEN, BOTH = "open", "both directions"


def schedule(exp: Experiment) -> Schedule:
    """The looks the experiment's `rounds:` plan."""
    size, max_n = exp.rounds
    return Schedule.of(exp.n, size, max_n, exp.alpha)


# ---- the state ---------------------------------------------------------------------------

def read_state(exp: Experiment, store: Store) -> dict | None:
    """The looks taken so far (None before the first); a DseError when the file is damaged
    or the experiment now states another schedule or other claims."""
    p = store.rounds_path(exp.name)
    if not p.is_file():
        return None
    try:
        state = json.loads(p.read_text(encoding="utf-8"))
        planned = state["schedule"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DseError(f"{p} cannot be read ({e}); it is left as it is: move it away to "
                       "start the rounds again") from None
    now = schedule(exp)
    if list(planned["looks"]) != list(now.looks) or planned["alpha"] != now.alpha or \
            state["claims"] != [c.text for c in exp.claims]:
        raise DseError(f"{exp.name} was started in rounds with looks at "
                       f"{', '.join(map(str, planned['looks']))} models per space and its "
                       f"claims as then stated; changing them after {len(state['looks'])} "
                       "look(s) would make the looks invalid (keep the schedule, or run the "
                       "experiment under another name or store)")
    return state


def write_state(exp: Experiment, store: Store, state: dict) -> None:
    d = store.experiment_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    write_json(store.rounds_path(exp.name), state)


def decided(state: dict | None) -> dict:
    """claim text → its last look's row (status holds, contradicted, both directions, open
    or untestable)."""
    if not state or not state["looks"]:
        return {}
    return {c["claim"]: c for c in state["looks"][-1]["claims"]}


# ---- the verdicts ------------------------------------------------------------------------

def verdicts(claims: list[dict], state: dict | None) -> list[dict]:
    """The summary's claims with the rounds' verdicts: holds or contradicted as decided at
    their look, inconclusive when still open (untestable stays so), the fixed-n evidence
    kept in the detail; the p_adjusted fields become the corrected sequential p."""
    rows = decided(state)
    if not rows:
        return claims
    out = []
    for c in claims:
        r = rows.get(c["claim"])
        if r is None:
            out.append(c)
            continue
        status = r["status"]
        verdict = {HOLDS: HOLDS, AGAINST: AGAINST}.get(status, UNTESTABLE if
                                                       c["verdict"] == UNTESTABLE else UNSURE)
        when = (f"decided at look {r['look_decided']}" if r["look_decided"] else
                f"not decided after {len(state['looks'])} look(s)")
        head = (f"rounds: {when} (sequential p {_fmt(r.get('p_seq'))}, corrected "
                f"{_fmt(r.get('p_adjusted'))}; against {_fmt(r.get('p_against_adjusted'))})"
                + ("; both directions significant" if status == BOTH else ""))
        out.append(dict(c, verdict=verdict, p_adjusted=r.get("p_adjusted"),
                        p_against_adjusted=r.get("p_against_adjusted"),
                        detail=f"{head}; at the last look: {c['detail']}"))
    return out


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3g}"
