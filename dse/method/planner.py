"""`dse plan EXPERIMENT.yaml`: how many models per space each claim needs to be decided at a
stated power, what the file's n gives, and what the difference costs.

For each claim with a power model (dse.analysis.power):

- "A better than B", "A at least as good as B", "A same as B": the claim's own test
  simulated on populations whose errors scatter as a pilot's do (the two populations'
  errors, each centred on its median, pooled and resampled with a kernel) or, without a
  pilot, as a normal law of `--sd` points, A's shifted from B's by the planned effect: the
  difference in the claim's favour in points (default: the experiment's margin for "better
  than", none for "at least as good" and "same as", which must then be shown within their
  margin). Where the pilot's errors are means of seed reruns, the spread is split into the
  models' own variance and σ_seed², and the plan is for one run per model, as `dse run`
  trains: more seeds never decide a population claim with fewer runs (n·S·(σ_b² + σ_s²/S)
  grows with S), so they are not proposed.
- "A ranks alike at P and T above R": Spearman ρ's bootstrap interval simulated for the ρ
  the pilot measured between the two recipes (or `--effect K=ρ`), n being the models
  trained under both.

Claims enter Holm's correction, so each is planned at α/m (m claims with a p): the strictest
level Holm may hold it to, which errs toward more models. The cost of the n each space needs
(the largest over the claims that read it) comes from dse.method.stages.plan, at this
store's measured speed (or the pilot's). No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from dse.analysis import population, power, stats
from dse.analysis.population import Operand, Selection
from dse.errors import DseError
from dse.method import analyze, stages
from dse.method.experiment import NOT_IN_ROUNDS, Experiment
from dse.runner.plan import EVAL_SLOWDOWN, measured_rate, rate_of
from dse.store.core import Store

MIN_PILOT = 5   # fewer finished models in a pilot population: no spread read from it


@dataclass(frozen=True)
class ClaimPlan:
    """One claim's plan: the effect planned for (points in the claim's favour, or ρ) and
    where it comes from, the spread (standard deviation of one model's error, points), the
    level, the power at the file's n, and the n per space for the target power (None: none
    up to power.MAX_N, or no power model: `note` says why)."""

    claim: str
    kind: str
    test: str
    populations: tuple
    effect: float | None = None
    effect_from: str = ""
    spread: float | None = None
    spread_from: str = ""
    level: float | None = None
    n_now: int = 0
    power_now: float | None = None
    n: int | None = None
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Planning:
    """Every claim's plan, and per space the n it needs with the models to add, their cost
    and ETA (None where unknown)."""

    experiment: str
    target: float
    claims: list
    spaces: list
    rate: float | None
    rate_from: str

    def to_json(self) -> dict:
        return dict(experiment=self.experiment, power=self.target,
                    claims=[c.to_json() for c in self.claims], spaces=self.spaces,
                    rate=self.rate, rate_from=self.rate_from)


def parse_effect(text: str) -> tuple[int | None, str]:
    """`--effect` as (claim number or None for every claim, value text): '0.5', '3=1.5',
    '2=0.4sd'."""
    key, _, value = text.rpartition("=")
    if not key:
        return None, value
    try:
        k = int(key)
    except ValueError:
        raise DseError(f"--effect {text!r}: write VALUE or K=VALUE with K a claim's number "
                       "in expect: (1 for the first)") from None
    return k, value


def plan(exp: Experiment, store: Store, pilot: Store | None = None, target: float = 0.8,
         effects: dict | None = None, sd: float | None = None, reps: int = 2000,
         seed: int = 0) -> Planning:
    """The plan of every claim of `exp` (effects: claim number (1-based) or None → value
    text, in points, 'Xsd' or ρ), read from `pilot` (default: the experiment's own store
    where it exists) or the `sd` given."""
    effects = effects or {}
    for k in effects:
        if k is not None and not 1 <= k <= len(exp.claims):
            raise DseError(f"--effect {k}=...: the experiment has {len(exp.claims)} claims "
                           f"(1 to {len(exp.claims)})")
    home = pilot or (store if store.root.is_dir() else None)
    family = sum(c.kind not in NOT_IN_ROUNDS for c in exp.claims)
    level = exp.alpha / family if exp.correction != "none" and family else exp.alpha
    fid = analyze.fidelities(exp, home) if home is not None and any(
        c.kind == "ranks" for c in exp.claims) else {}
    plans = []
    for i, c in enumerate(exp.claims, 1):
        given = effects.get(i, effects.get(None))
        if c.kind in power.PAIR_KINDS:
            plans.append(_pair(exp, c, home, given, sd, level, target, reps, seed))
        elif c.kind == "ranks":
            plans.append(_ranks(exp, c, fid.get(c.text), given, target, min(reps, 400),
                                seed))
        else:
            plans.append(ClaimPlan(c.text, c.kind, "", tuple(op.label for op in c.operands),
                                   note="no power model for this form yet: more models "
                                   "narrow its interval, dse plan cannot say how many"))
    stored = stages.held(exp, store)  # read once: its trainings give the store's speed too
    rate, rate_from = _rate(stored[3], pilot)
    return Planning(exp.name, target, plans, _spaces(exp, store, plans, home, rate, stored),
                    rate, rate_from)


def _pair(exp: Experiment, c, home, given, sd, level, target, reps, seed) -> ClaimPlan:
    margin = c.margin or exp.margin
    test = {"better": "one-sided KS", "at_least": f"non-inferiority within {margin:g} "
            "(one-sided Mann–Whitney)", "same": f"equivalence within ±{margin:g} (two "
            "one-sided Mann–Whitney)"}[c.kind]
    base = dict(claim=c.text, kind=c.kind, test=test,
                populations=tuple(op.label for op in c.operands), level=level, n_now=exp.n)
    spread, noise, why = _spread(exp, c, home, sd)
    if spread is None:
        return ClaimPlan(**base, note=why)
    default = exp.margin if c.kind == "better" else 0.0
    if given is None:
        effect, effect_from = default, ("the experiment's margin" if c.kind == "better" else
                                        "no true difference")
    else:
        effect, effect_from = _value(given, spread.sd_now, c.text), "--effect"
    run = lambda s, n=None: (power.power(c.kind, n, n, -effect, s, level, margin, reps, seed)  # noqa: E731
                             if n else power.n_for_power(c.kind, target, -effect, s, level,
                                                         margin, reps, seed))
    one = spread if noise is None else noise(1)  # one run per model, as `dse run` trains
    n = run(one)
    note = "" if n is not None else (f"not reached by {power.MAX_N} models per space: the "
                                     "effect is too small for this test")
    return ClaimPlan(**base, effect=effect, effect_from=effect_from, spread=one.sd_now,
                     spread_from=one.source, power_now=run(one, exp.n), n=n, note=note)


def _spread(exp: Experiment, c, home, sd):
    """The spread of the pilot's errors for a pair claim, a function of seeds per model
    giving it where seed noise is known (else None), and why there is none."""
    if home is not None:
        try:
            read = population.load(c.operands, Selection(), home=home, base=exp.path.parent)
            errors = [stats.population(read.frame, op.label)["error"].to_numpy(float)
                      for op in c.operands]
        except DseError as e:
            errors, why = None, f"pilot: {e}"
        if errors is not None and min(map(len, errors)) >= MIN_PILOT:
            s = power.Spread.pilot(errors, f"pilot {home.root.name}: "
                                   f"{' and '.join(str(len(e)) for e in errors)} models")
            return s, _seeded(s, read.frame), ""
        if errors is not None:
            why = (f"the pilot has {min(map(len, errors))} finished models of a population "
                   f"(at least {MIN_PILOT} give a spread)")
    else:
        why = "no pilot store (give --pilot STORE, or train some models first)"
    if sd is not None:
        return power.Spread.normal(sd, f"--sd {sd:g}"), None, ""
    return None, None, why + "; or give the spread with --sd POINTS"


def _seeded(spread: power.Spread, frame):
    """spread at S seeds per model, where the pilot has reruns: the models' own variance
    plus σ_seed²/S."""
    found = population.seed_noise(frame)
    if found is None:
        return None
    sigma = found[0]
    seeds = frame["n_seeds"].fillna(1).clip(lower=1).to_numpy(float) \
        if "n_seeds" in frame else np.ones(len(frame))
    own = max(spread.sd ** 2 - sigma ** 2 * float(np.mean(1 / seeds)), 0.05 * spread.sd ** 2)
    return lambda s: spread.scaled(np.sqrt((own + sigma ** 2 / s) / spread.sd ** 2),
                                   f"{spread.source}, σ_seed {sigma:.2f}, {s} seed"
                                   f"{'s' * (s > 1)} per model")


def _ranks(exp: Experiment, c, fid, given, target, reps, seed) -> ClaimPlan:
    base = dict(claim=c.text, kind=c.kind, test=f"Spearman ρ's {1 - exp.alpha:.0%} bootstrap "
                f"interval above {c.value:g}", populations=(c.a.label,), level=exp.alpha,
                n_now=exp.n)
    if given is not None:
        rho, where = _value(given, None, c.text), "--effect"
    elif fid is not None and not isinstance(fid, str):
        rho, where = fid.spearman.value, f"the pilot's ρ over {fid.pairs} models"
    else:
        return ClaimPlan(**base, note=f"no ρ to plan for ({fid or 'no pilot'}); give "
                         "--effect K=ρ")
    if not -1 < rho < 1:
        raise DseError(f"--effect for {c.text!r} is a rank correlation, between -1 and 1 "
                       f"(got {rho:g})")
    n = power.rank_n(rho, c.value, target, exp.alpha, reps, seed)
    return ClaimPlan(**base, effect=rho, effect_from=where,
                     power_now=power.rank_power(rho, c.value, exp.n, exp.alpha, reps,
                                                seed=seed), n=n,
                     note="" if n else f"ρ = {rho:g} does not exceed the threshold "
                     f"{c.value:g}: no n decides it")


def _value(text: str, sd: float | None, claim: str) -> float:
    t = str(text).strip().lower()
    try:
        if t.endswith("sd"):
            if sd is None:
                raise DseError(f"--effect {text!r} for {claim!r}: an effect in SD needs a "
                               "spread (points)")
            return float(t[:-2]) * sd
        return float(t)
    except ValueError:
        raise DseError(f"--effect {text!r}: a number of points (e.g. 1.5), of standard "
                       "deviations (0.5sd) or, for 'ranks alike', a rank correlation") from None


def _rate(trained: tuple, pilot: Store | None) -> tuple[float | None, str]:
    """The speed of this store's trainings (`trained`: measured's), else of the pilot's."""
    if r := rate_of(*trained):
        return r, "measured on this store's trained models"
    if pilot is not None and pilot.root.is_dir() and (r := measured_rate(pilot)):
        return r, "measured on the pilot's trained models"
    return None, "no trained model to measure a speed on"


def _spaces(exp: Experiment, store: Store, plans: list, home, rate, stored: tuple
            ) -> list[dict]:
    """Per space of the experiment: the n its claims need (the largest), the models to add
    beyond those it holds, and their cost and ETA (dse.method.stages.plan)."""
    need: dict[str, int | None] = {}
    for c, p in zip(exp.claims, plans):
        if p.n is None and p.note:
            continue
        for op in c.operands:
            if op.store is not None or op.space not in exp.spaces:
                continue
            n = p.n if op.expr is None else _whole(exp, op, p.n, home)
            if n is None:
                need[op.space] = None
            elif need.get(op.space, 0) is not None:
                need[op.space] = max(n, need.get(op.space) or 0)
    rows = []
    for s, n in need.items():
        row = dict(space=s, n=n, to_train=None, cost=None, eta_s=None)
        if n is not None:
            i = exp.spaces.index(s)
            one = replace(exp, n=max(n, exp.n), spaces=(s,), space_args=(exp.space_args[i],))
            r = stages.plan(one, store, stored).rows[0]
            row.update(to_train=r["to_train"], cost=r["cost"],
                       eta_s=((r["cost"] + EVAL_SLOWDOWN * r["tests"]) / (  # test passes too
                           rate * exp.options.jobs) if rate and r["cost"] is not None else None))
        rows.append(row)
    return rows


def _whole(exp: Experiment, op: Operand, n: int | None, home) -> int | None:
    """Models of the space that give n models of SPACE[EXPR] (from the share of the pilot's
    models where EXPR holds; n itself without a pilot)."""
    if n is None or home is None:
        return n
    try:
        read = population.load([op, Operand(op.space)], Selection(), home=home,
                               base=exp.path.parent)
        part = (read.frame["space"] == op.label).sum()
        whole = (read.frame["space"] == op.space).sum()
    except DseError:
        return n
    return int(np.ceil(n * whole / part)) if part else None
