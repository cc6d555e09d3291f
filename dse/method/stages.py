"""The stages of an experiment (dse.method.experiment) on a store, and its plan:

- sample: each space gets models until it holds `n` (the same seed draws the same models,
  so a space sampled before by `dse sample` with that seed is left as it is);
- train: every model of the experiment's spaces without a result (dse.runner.loop.run:
  leases, resumable; an interrupted run continues and trains nothing twice).

`plan` says what a run would do, without creating anything. The analysis is
dse.method.analyze; the whole sequence, with the refine loop, dse.method.pipeline. No torch
here: training is imported when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dse.data import datasets
from dse.files import write_atomic, writing
from dse.method.experiment import Experiment
from dse.runner.plan import (
    EVAL_SLOWDOWN,
    WORKER_START_S,
    Plan,
    expected_epochs,
    measured,
    rate_of,
    test_mult_adds,
    training_mult_adds,
)
from dse.space import definition as spaces
from dse.space import regimes, sampling
from dse.store.core import Store, needs_training
from dse.store.recipes import fingerprint, trial_id
from dse.system import stamp
from dse.train.recipe import spec_of


def load_space(exp: Experiment, name: str):
    """The space of the experiment named `name`, loaded from the file or built-in name given."""
    return spaces.load(exp.space_args[exp.spaces.index(name)])


@dataclass(frozen=True)
class ExperimentPlan:
    """What `dse run` would do now: per space (`rows`) the models it holds, those to sample
    and to train, their image-epochs, cost and ETA; and its training as the run plan
    `dse train` makes (dse.runner.plan.Plan: cost, speed, ETA, warning and levers), None
    while the cost is unknown (an open flops window with models still to sample)."""

    experiment: str
    store: str
    rows: list
    training: Plan | None
    rate: float | None       # multiply-adds per second per trainer, measured on this store
    workers: int
    images: int | None       # training images per epoch
    epochs: int
    mean_flops: float | None = None  # of the experiment's sampled models (promote stages' cost)

    @property
    def total(self) -> dict:
        """The rows summed (None where a row's value is unknown)."""
        return {k: (None if any(r[k] is None for r in self.rows) else sum(r[k] for r in self.rows))
                for k in ("to_sample", "to_train", "image_epochs", "cost", "eta_s")}

    def to_json(self) -> dict:
        return dict(experiment=self.experiment, store=self.store, rows=self.rows,
                    total=self.total, rate=self.rate, workers=self.workers, images=self.images,
                    epochs=self.epochs)

    def trials_s(self, options, trials: int, dataset: str) -> float | None:
        """Seconds of `trials` trainings with `options` (a promote stage's) at this store's
        speed on models of the experiment's mean flops, their test passes included; None
        while the speed or the models are unknown."""
        if not self.rate or self.mean_flops is None:
            return None
        ds = datasets.get(dataset)
        r = options.recipe
        images = r.train_subset or ds.train_size
        if not images:
            return None
        work = training_mult_adds(self.mean_flops, images, r.epochs) + EVAL_SLOWDOWN * \
            test_mult_adds(self.mean_flops, ds.test_size or 0, r.epochs, options.curves)
        return trials * work / (self.rate * options.jobs)


def plan(exp: Experiment, store: Store, stored: tuple | None = None) -> ExperimentPlan:
    """What `dse run` would do now: per space the models to sample and to train, the
    training cost, and an ETA when models of this store have trained already. `stored`:
    held(exp, store), when read already."""
    have, pending, pending_flops, (work, secs) = stored or held(exp, store)
    rate = rate_of(work, secs)
    workers = exp.options.jobs
    rows = plan_rows(exp, have, pending, pending_flops, rate, workers)
    images = train_images(exp)
    cost = [r["cost"] for r in rows]
    n = sum(r["to_train"] for r in rows)
    test = datasets.get(exp.dataset).test_size or 0
    training = None if any(c is None for c in cost) else Plan(
        n, exp.recipe.epochs, ((exp.dataset, images),), float(sum(cost)), rate,
        f"measured: {len(work)} training{'s' * (len(work) != 1)} this store ran" if rate
        else "no model of this store has trained", (exp.options.device,) * workers,
        exp.options, tests=sum(r["tests"] for r in rows),
        start_s=WORKER_START_S if workers > 1 and n else 0.0,
        test_images=((exp.dataset, test),), passes=n if test else 0)
    flops = [f for m in have.values() for f in m["flops"]]
    return ExperimentPlan(exp.name, str(store), rows, training, rate, workers, images,
                          exp.recipe.epochs, float(np.mean(flops)) if flops else None)


def held(exp: Experiment, store: Store) -> tuple:
    """What the store holds of the experiment's spaces: {space: its models}, {space: models
    to train: without a result of the train stage's recipe}, {space: their flops}, and the
    multiply-adds and seconds of the store's trainings (dse.runner.plan.measured)."""
    have, pending, pending_flops = {}, {}, {}
    fp = fingerprint(spec_of(exp.recipe, exp.options.draws))  # the train stage's trials
    if Path(store).is_dir():
        present = set(store.spaces())
        for s in exp.spaces:
            if s not in present:
                continue
            models = store.read_models(s)
            stored = store.trial_statuses(s)
            todo = [needs_training(stored.get(trial_id(m, fp, exp.recipe.seed), stored.get(m)),
                                   exp.options.retry_failed) for m in models["model_id"]]
            have[s] = models
            pending[s] = int(sum(todo))
            pending_flops[s] = float(models["flops"].to_numpy()[np.array(todo, bool)].sum()) \
                if len(models) else 0.0
    trained = measured(store) if Path(store).is_dir() else (np.array([]), np.array([]))
    return have, pending, pending_flops, trained


# ---- stages ----------------------------------------------------------------------------------

def record(exp: Experiment, store: Store) -> Path:
    """Write the experiment as run (after --set) to <store>/experiments/<name>/."""
    d = store.experiment_dir(exp.name)
    with writing(d, store.root):  # full or read-only: one line
        d.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({**exp.config, "_source": str(exp.path),
                           "_run_at": stamp()}, sort_keys=False, allow_unicode=True)
    write_atomic(store.experiment_file(exp.name),
                 lambda p: Path(p).write_text(text, encoding="utf-8"))
    return d


def sample(exp: Experiment, store: Store, echo=print) -> dict:
    """Top each space up to n models; returns {space: models added}."""
    return {name: sample_space(exp, store, load_space(exp, name), echo) for name in exp.spaces}


def sample_space(exp: Experiment, store: Store, space, echo=print) -> int:
    """Top one space up to the experiment's n models in each regime; returns how many were
    added."""
    models = store.read_models(space.name) if space.name in store.spaces() else None
    added, task, data = 0, None, None
    for want in exp.regime_list:
        regime, have = regime_count(models, want, space.name)
        if have >= exp.n:
            continue
        if task is None:
            task, data = datasets.task_and_record(exp.dataset, exp.data_dir, exp.resolution)
        draw = lambda ids, k=exp.n - have, w=want.flops, t=task: sampling.sample(  # noqa: E731
            space, k, t, w, exp.params, exp.acts, exp.seed, exclude=ids)
        new = store.add_models(space, exp.dataset, task, draw, exp.seed, data, regime)
        models = store.read_models(space.name)
        where = f" in regime {regime.label}" if exp.regimes else ""
        echo(f"sampled {len(new)} {space.name} models{where} ({have + len(new)} in it, "
             f"{len(models)} in the space)" if exp.regimes else
             f"sampled {len(new)} {space.name} models ({have + len(new)} in all)")
        added += len(new)
    return added


def regime_count(models, want: regimes.Regime, space: str) -> tuple[regimes.Regime, int]:
    """The regime that models drawn for `want` join in a space's stored models (None: none
    yet), and how many models it holds."""
    if models is None or len(models) == 0:
        return want, 0
    regime = regimes.resolve(want, regimes.stored(models), space)
    return regime, int((regimes.labels(models) == regime.name).sum())


def train(exp: Experiment, store: Store, report=None):
    from dse.runner import loop as runner

    return runner.run(store, list(exp.spaces), exp.options, report=report)


# ---- the plan --------------------------------------------------------------------------------

def train_images(exp: Experiment) -> int | None:
    """Images each model trains on per epoch (train_subset, or the dataset's known size)."""
    return exp.recipe.train_subset or datasets.get(exp.dataset).train_size


def plan_rows(exp: Experiment, have: dict, pending: dict, pending_flops: dict,
              rate: float | None, workers: int) -> list[dict]:
    """Per space: models to sample (up to n in each regime) and to train, and the training
    cost in multiply-adds (3 × flops × images × epochs: forward and backward) and that of
    their test passes (flops × test images), with an ETA of both when `rate` (multiply-adds
    per second per worker, measured on this store) is known.
    `have` maps a space to its stored models."""
    images = train_images(exp)
    rows = []
    for s in exp.spaces:
        models = have.get(s)
        to_sample, new_flops, known = 0, 0.0, bool(images)
        for want in exp.regime_list:
            k = max(0, exp.n - regime_count(models, want, s)[1])
            to_sample += k
            if k and not want.centre:
                known = False  # an open window: the flops of unsampled models are unknown
            new_flops += k * (want.centre or 0.0)
        flops = pending_flops.get(s, 0.0) + new_flops
        epochs = expected_epochs(exp.options)  # drawn per model: their mean
        cost = training_mult_adds(flops, images, epochs) if known else None
        tests = test_mult_adds(flops, datasets.get(exp.dataset).test_size or 0, 1, False) \
            if known else None
        to_train = pending.get(s, 0) + to_sample
        rows.append(dict(space=s, sampled=0 if models is None else len(models),
                         to_sample=to_sample, to_train=to_train,
                         image_epochs=round(to_train * images * epochs) if images else None,
                         cost=cost, tests=tests,
                         eta_s=(cost + EVAL_SLOWDOWN * tests) / (rate * workers)
                         if cost is not None and rate else None))
    return rows
