"""What there is to train in a store (pure): the models of a space without a usable result as
jobs, the spaces a run may train, and the counts `dse status` shows."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from dse.data import datasets
from dse.data.datasets import DataRef
from dse.errors import DamagedFileError, DseError, DseWarning
from dse.runner import leases
from dse.runner.jobs import Job
from dse.runner.options import CLAIM_TIMEOUT, TrainOptions
from dse.space.spec import from_row
from dse.store import selections
from dse.store.core import DAMAGED, Store, needs_training
from dse.store.recipes import fingerprint, label, parse_trial, trial_id
from dse.store.schema import RESULT_STATUSES
from dse.store.status import Status
from dse.system import stamp
from dse.train.recipe import draw, spec_of


def jobs_of(store: Store, space: str, retry_failed: bool = False,
            data_dir: str | None = None, options: TrainOptions | None = None,
            keep: bool = True) -> list[Job]:
    """The trials of a space that have no readable result (or a failed one, with
    retry_failed), each with the data it trains on (read from data_dir, else where the store
    recorded it, else the default data directory). A trial is a model (all, or those
    options.top / options.sample choose), the recipe (options.recipe with options.draws drawn
    for the model) and a seed (options.recipe.seed, or 0..options.seeds−1). A new selection of
    top / sample is stored unless `keep` is False (a dry run)."""
    options = options or TrainOptions(retry_failed=retry_failed, data_dir=data_dir)
    models = store.read_models(space)
    chosen = chosen_models(store, space, options, keep)
    if chosen is not None:
        models = models[models["model_id"].isin(chosen)]
    stored = store.trial_statuses(space)
    seeds = [options.recipe.seed] if options.seeds is None else range(options.seeds)
    fp = fingerprint(spec_of(options.recipe, options.draws))
    root = data_dir if data_dir is not None else store.data_record(space).get("dir")
    out = []
    for r in models.to_dict(orient="records"):
        spec = task = None
        mine = draw(options.recipe, options.draws, r["model_id"]) if options.draws \
            else options.recipe
        for seed in seeds:
            trial = trial_id(r["model_id"], fp, seed)
            if not needs_training(stored.get(trial, stored.get(r["model_id"])), retry_failed):
                continue
            if spec is None:
                spec, task = from_row(r)
                data = DataRef(r["dataset"], None if root is None else str(root),
                               _data_resolution(r, task))
            out.append(Job(space, r["model_id"], data, spec, task, int(r["flops"]),
                           replace(mine, seed=int(seed)), fp))
    return out


def chosen_models(store: Store, space: str, options: TrainOptions,
                  keep: bool = True) -> list[str] | None:
    """The model ids options.top and options.sample choose (None: every model), from the
    space's stored selection of these options (dse.store.selections), made and stored first
    when there is none (`keep` False: made, not stored, as a dry run plans)."""
    if options.top is None and options.sample is None:
        return None
    return selection(store, space, options, keep).models


def selection(store: Store, space: str, options: TrainOptions,
              keep: bool = True) -> selections.Selection:
    """The stored selection of options.top / options.sample for the recipe options train,
    else a new one (stored when `keep`): the `top` lowest errors under the space's recipe
    with the most results (mean over seeds), then `sample` drawn at random (seeded) from the
    rest of the space."""
    fp = fingerprint(spec_of(options.recipe, options.draws))
    name = selections.name(fp, options.top, options.sample, options.sample_seed)
    have = selections.read(store, space, name)
    if have is not None:
        return have
    made = _choose(store, space, options, fp, store.selection_path(space, name))
    return selections.keep(store, space, made) if keep else made


def _choose(store: Store, space: str, options: TrainOptions, fp: str,
            path) -> selections.Selection:
    """A new selection of options.top / options.sample from what the store holds now, for
    the recipe `fp` (to be stored at `path`)."""
    ids: list[str] = []
    ranked = dict(ranked_by=None, ranked_label="")
    if options.top is not None:
        df = store.load([space])
        done = df[df["status"] == Status.DONE].sort_values(["error", "model_id"])
        if not len(done):
            raise DseError(f"--top {options.top}: no {space} model has a finished result to "
                           "rank by; train the space first (dse train)")
        ids = done["model_id"].head(options.top).tolist()
        ranked = dict(ranked_by=str(done["recipe"].iloc[0]),
                      ranked_label=str(done["recipe_label"].iloc[0]))
        if (untrained := int(df["status"].isna().sum())):  # partial: say so, it is kept
            warnings.warn(f"--top {options.top}: {untrained} of the {len(df)} {space} models "
                          f"have no result under {ranked['ranked_label']} yet; the top "
                          f"{len(ids)} of the others are chosen once and for all (delete "
                          f"{path} to rank again once they are trained)", DseWarning,
                          stacklevel=2)
    drawn: list[str] = []
    if options.sample is not None:
        rest = sorted(set(store.read_models(space, ["model_id"])["model_id"]) - set(ids))
        rng = np.random.default_rng([options.sample_seed, *space.encode()])
        k = min(options.sample, len(rest))
        drawn = sorted(rng.choice(rest, size=k, replace=False).tolist()) if k else []
    return selections.Selection(
        fp, label(spec_of(options.recipe, options.draws)), options.top, options.sample,
        options.sample_seed, tuple(ids), tuple(drawn), **ranked, made_at=stamp())


def _data_resolution(row: dict, task) -> int:
    """The side of the images a model's data is loaded at: the dataset's, resized to the
    model's own resolution on the device (dse.data.device); a streamed dataset is decoded
    at the model's resolution directly."""
    if datasets.get(row["dataset"]).stream:
        return task.resolution
    side = row.get("data_resolution")
    return task.resolution if side is None or side != side else int(side)


def select_spaces(store: Store, names=(), data_dir: str | None = None) -> list[str]:
    """The spaces to train, checked to be trainable: the named ones (names or aliases), else
    every space of the store whose models.parquet can be read (the others with a warning).
    A folder space's images must still have the classes its models were sampled for."""
    if not store.spaces():
        raise DseError(f"store {store.root} holds no sampled models; run dse sample first")
    chosen = list(dict.fromkeys(store.resolve(n) for n in names))
    models = {}
    for s in chosen or store.spaces():
        try:
            models[s] = store.read_models(s)
        except DamagedFileError as e:
            if chosen:
                raise
            warnings.warn(f"left out space {s}: {e}", DseWarning, stacklevel=2)
    for s, m in models.items():
        ds = m["dataset"].iloc[0] if len(m) else None
        if ds not in datasets.DATASETS:
            raise DseError(f"space {s!r} holds models for unknown dataset {ds!r}")
        if not datasets.get(ds).trainable:
            others = [o for o in models if o != s]
            raise DseError(f"space {s!r} holds {ds} models, which dse train cannot train yet "
                           f"(supported: {', '.join(datasets.trainable())})"
                           + (f"; name the others to train ({', '.join(others)})"
                              if others else ""))
        if datasets.get(ds).task is None:
            _check_folder(store, s, data_dir)
            continue
        r, task = m.iloc[0], datasets.task(ds)
        side = r.resolution if r.data_resolution is None or r.data_resolution != \
            r.data_resolution else r.data_resolution
        if (int(side), r.stem, int(r.in_channels), int(r.num_classes)) != \
                (task.resolution, task.stem, task.in_channels, task.num_classes):
            raise DseError(f"space {s!r}: its models' task does not match {ds}")
    return list(models)


def _check_folder(store: Store, space: str, data_dir: str | None) -> None:
    """The image tree a folder space trains on has the classes recorded at sampling."""
    from dse.data import folders

    rec = store.data_record(space)
    tree = folders.scan(datasets.data_dir(data_dir if data_dir is not None else rec.get("dir")))
    if list(tree.classes) != rec.get("classes"):
        raise DseError(f"the classes of {tree.root} ({len(tree.classes)}) are not those the "
                       f"{space} models were sampled for ({len(rec.get('classes') or [])}, "
                       f"from {rec.get('dir')}); name the right tree with --data-dir")


def status(store: Store | str, timeout: float = CLAIM_TIMEOUT) -> list[dict]:
    """Per space: sampled / done / diverged / failed / pending, how many of the pending are
    in flight (live claims) or held by stale claims, the damaged files (a damaged result
    counts as pending; a space whose models.parquet is damaged has `error` set), the results
    per recipe and the selections of `dse train --top/--sample`."""
    store = Store.existing(store)
    rows = []
    for space in store.spaces():
        try:
            models = store.read_models(space, ["model_id", "dataset"])
        except DamagedFileError as e:
            rows.append(dict(space=space, dataset="", sampled=0,
                             **{s: 0 for s in RESULT_STATUSES}, pending=0, in_flight=0,
                             stale_claims=0, damaged=1, damaged_files=[str(e.path)],
                             error=str(e)))
            continue
        trials, damaged = store.status_scan(space)
        stored = store.statuses(space)
        ids = set(models["model_id"])
        counts = {s: sum(1 for m, st in stored.items() if m in ids and st == s)
                  for s in RESULT_STATUSES}
        pending = [m for m in models["model_id"] if stored.get(m) in (None, DAMAGED)]
        live, stale = leases.held(store, space, None, timeout)
        rows.append(dict(space=space, dataset=models["dataset"].iloc[0] if len(models) else "",
                         sampled=len(models), **counts, pending=len(pending), in_flight=live,
                         stale_claims=stale, damaged=len(damaged),
                         damaged_files=[str(x.path) for x in damaged], error=None,
                         recipes=_per_recipe(trials, ids),
                         selections=_selections(store, space, trials)))
    return rows


def _selections(store: Store, space: str, trials: dict) -> list[dict]:
    """The space's stored selections (dse.store.selections), each with `done`: how many of
    its models have a finished result under its recipe; one that cannot be read has `error`."""
    held, bad = selections.held(store, space)
    done = {parse_trial(t)[:2] for t, st in trials.items() if st == "done"}
    out = [dict(s.to_json(), models=s.models, error=None,
                done=sum((m, s.recipe) in done for m in s.models)) for s in held]
    return out + [dict(name=p.stem, models=[], done=0, error=why) for p, why in bad]


def _per_recipe(trials: dict, ids: set) -> list[dict]:
    """Per recipe fingerprint: results by status, models and seeds (most results first)."""
    per: dict = {}
    for name, st in trials.items():
        m, fp, seed = parse_trial(name)
        if fp is None or m not in ids:
            continue
        r = per.setdefault(fp, dict(recipe=fp, results=0, **{s: 0 for s in RESULT_STATUSES},
                                    models=set(), seeds=set()))
        r["results"] += 1
        r[st] = r.get(st, 0) + 1
        r["models"].add(m)
        r["seeds"].add(seed)
    out = [dict(r, models=len(r["models"]), seeds=len(r["seeds"])) for r in per.values()]
    return sorted(out, key=lambda r: (-r["results"], r["recipe"]))


# ---- the run ------------------------------------------------------------------------------------

