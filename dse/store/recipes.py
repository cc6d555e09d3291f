"""Trials: which recipe and seed a result was trained with (pure).

A result is identified by (model, recipe fingerprint, training seed). The fingerprint is a
short hash of the recipe's training settings, the seed left out (RECIPE_KEYS, and each of
OPTIONAL_KEYS that differs from its default: pycls's recipe, and `series` — a result of the
weight-EMA model is its own recipe, series=ema), so every seed of one recipe shares it; a
recipe whose lr or wd is drawn per model (a distribution) is fingerprinted by its
distribution, and each result records the value its model drew. A
result written before fingerprints were stored is the trial of the recipe it recorded: its
fingerprint is computed from its columns (a column it lacks stands for the default of the
time, RECIPE_DEFAULTS).

    trial_id("3f9a…", "c41d0e2b7a", 0) == "3f9a…-c41d0e2b7a-s0"   per-trial file and claim name
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from dse.errors import ArgumentError, DseError
from dse.store.status import Status

# The settings that make two trainings of a model the same experiment (the seed aside).
RECIPE_KEYS = ("epochs", "batch_size", "lr", "momentum", "nesterov", "wd", "warmup_epochs",
               "zero_init_final_gamma", "augment", "train_subset")
RECIPE_DEFAULTS = dict(momentum=0.9, nesterov=True, warmup_epochs=0.0,
                       zero_init_final_gamma=True, augment=True, train_subset=None)
# Settings added later (pycls's recipe, and which model's error a result holds: the trained
# model's, or its weight EMA's). Each enters a fingerprint only when it differs from its
# default, so every recipe written before keeps its fingerprint.
OPTIONAL_DEFAULTS = dict(label_smoothing=0.0, mixup_alpha=0.0, ema_alpha=0.0, ema_period=32,
                         bn_wd=None, warmup_factor=0.0, lr_policy="cos", lr_steps=(),
                         lr_mult=0.1, min_lr=0.0, series="test")
OPTIONAL_KEYS = tuple(OPTIONAL_DEFAULTS)
SETTINGS = RECIPE_KEYS + OPTIONAL_KEYS  # every key --recipe may name
SERIES = ("test", "ema")
_INTS = ("epochs", "batch_size", "train_subset", "ema_period")
_BOOLS = ("nesterov", "zero_init_final_gamma", "augment")
_TEXTS = ("lr_policy", "series")
_TRIAL = re.compile(r"^(?P<model>.+)-(?P<recipe>[0-9a-f]{10})-s(?P<seed>\d+)$")
SHOWN = ("epochs", "batch_size", "lr", "wd", "train_subset")  # what a recipe's label shows


def _canon(key: str, v):
    """One setting in canonical form: ints, bools, floats to 12 significant digits, None;
    a distribution (a mapping) as its sorted items."""
    if isinstance(v, Mapping):
        return {k: _canon("", x) for k, x in sorted(v.items())}
    if key == "lr_steps":  # a list of epochs (a tuple, a list, an array read back)
        return [] if v is None or isinstance(v, float) else [_canon("", x) for x in v]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        v = RECIPE_DEFAULTS.get(key, OPTIONAL_DEFAULTS.get(key))
        if v is None:
            return None
    if key in _TEXTS:
        return str(v)
    if key in _BOOLS:
        return bool(v)
    if key in _INTS:
        return int(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(f"{float(v):.12g}")
    return v


def canonical(values: Mapping) -> dict:
    """The recipe settings of `values` (a Recipe's dict, a result row) in canonical form:
    every RECIPE_KEYS setting, and each OPTIONAL_KEYS setting that differs from its default."""
    out = {k: _canon(k, values.get(k)) for k in RECIPE_KEYS}
    for k in OPTIONAL_KEYS:
        v = _canon(k, values.get(k))
        if v != _canon(k, OPTIONAL_DEFAULTS[k]):
            out[k] = v
    return out


def setting(values: Mapping, key: str):
    """One setting of `values` in canonical form (its default when absent)."""
    return _canon(key, values.get(key))


def fingerprint(values: Mapping) -> str:
    """Ten hex digits that name a recipe (its canonical settings; distributions as given)."""
    text = json.dumps(canonical(values), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def label(values: Mapping) -> str:
    """A recipe in words: 'epochs=2 batch_size=128 lr=0.1 wd=5e-05 train_subset=6000', then
    every optional setting that differs from its default ('... series=ema'); a drawn
    setting as dist(low..high); the settings not shown are in `dse status --json`."""
    out = []
    for k in SHOWN:
        v = _canon(k, values.get(k))
        if v is None:
            continue
        if isinstance(v, dict):
            v = f"{v.get('dist', 'drawn')}({v.get('low', '')}..{v.get('high', '')})"
        out.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    c = canonical(values)
    out += [f"{k}={settings_text({k: c[k]}).partition('=')[2]}" for k in OPTIONAL_KEYS
            if k in c]
    return " ".join(out)


def trial_id(model_id: str, recipe: str, seed: int) -> str:
    """The name of one trial: a per-trial result file and its claim."""
    return f"{model_id}-{recipe}-s{int(seed)}"


def parse_trial(name: str) -> tuple[str, str | None, int | None]:
    """(model_id, recipe, seed) of a trial name; a bare model id (a result file written
    before trials) gives (model_id, None, None)."""
    m = _TRIAL.match(name)
    if m is None:
        return name, None, None
    return m["model"], m["recipe"], int(m["seed"])


def with_recipe(table: pa.Table) -> pa.Table:
    """Rows written before trials, given the fingerprint of the recipe they recorded (and
    seed 0 where none was recorded); rows that have one are left as they are."""
    if "recipe" not in table.column_names or not table.column("recipe").null_count:
        return table
    keys = [k for k in RECIPE_KEYS if k in table.column_names]
    given = table.column("recipe").to_pandas()
    missing = given.isna().to_numpy()
    if keys:  # one fingerprint per distinct recorded recipe, not per row
        frame = table.select(keys).to_pandas()[missing]
        code = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        firsts = frame.assign(_code=code).drop_duplicates("_code")
        fp_of = {c: fingerprint(r) for c, r in zip(firsts["_code"], firsts[keys].to_dict(
            orient="records"))}
        fill = [fp_of[c] for c in code]
    else:
        fill = [fingerprint({})] * int(missing.sum())
    fps = given.to_numpy(dtype=object)
    fps[missing] = fill
    at = table.column_names.index("recipe")
    table = table.set_column(at, table.schema.field(at), pa.array(fps, pa.string()))
    if "seed" in table.column_names and table.column("seed").null_count:
        at = table.column_names.index("seed")
        table = table.set_column(at, table.schema.field(at),
                                 table.column("seed").fill_null(0))
    return table


# ---- choosing a recipe: --recipe KEY=VALUE,... ----------------------------------------------

def parse_recipe(text: str, what: str = "recipe") -> dict:
    """'epochs=8,lr=0.1' → {'epochs': 8, 'lr': 0.1}; a DseError naming the allowed keys."""
    out = {}
    for part in [p for p in re.split(r"[,\s]+", text.strip()) if p]:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in SETTINGS:
            raise DseError(f"{what} {text!r}: write KEY=VALUE,... with keys "
                           f"{', '.join(SETTINGS)} (e.g. epochs=8)")
        v = value.strip().lower()
        try:
            if key in _TEXTS:
                allowed = SERIES if key == "series" else ("cos", "lin", "steps")
                if v not in allowed:
                    raise DseError(f"{what} {text!r}: {key} must be "
                                   f"{' or '.join(allowed)} (got {value!r})")
                out[key] = v
            elif key == "lr_steps":  # epochs joined by ':' (commas separate the settings)
                out[key] = tuple(float(x) for x in v.split(":") if x)
            elif key == "bn_wd" and v in ("none", "wd", ""):
                out[key] = None
            elif key in _BOOLS:
                if v not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[key] = v in ("true", "1", "yes")
            elif key == "train_subset" and v in ("none", "all", ""):
                out[key] = None
            elif key in _INTS:
                f = float(v)
                if f != int(f):
                    raise ValueError
                out[key] = int(f)
            else:
                out[key] = float(v)
        except ValueError:
            kind = "true or false" if key in _BOOLS else "an integer" if key in _INTS \
                else "epochs joined by ':' (0:30:60)" if key == "lr_steps" else "a number"
            raise DseError(f"{what} {text!r}: {key} must be {kind} (got {value!r})") from None
    if not out:
        raise DseError(f"{what} is empty; write KEY=VALUE,... (e.g. epochs=8)")
    return out


def settings_text(wanted: Mapping) -> str:
    """{'epochs': 8, 'lr': 0.1} → 'epochs=8,lr=0.1' (as --recipe takes them)."""
    def text(v):
        return ":".join(f"{x:g}" for x in v) if isinstance(v, (tuple, list)) else v
    return ",".join(f"{k}={text(v)}" for k, v in wanted.items())


def matches(values: Mapping, wanted: Mapping) -> bool:
    """Whether a recipe's settings agree with every KEY=VALUE of `wanted`."""
    return all(setting(values, k) == _canon(k, v) for k, v in wanted.items())


# ---- reading one recipe's results, one row per model ----------------------------------------

AGGREGATES = ("mean", "first")
EPOCHS = ("last", "best")


@dataclass(frozen=True)
class Pick:
    """Which results an analysis reads: the recipe (KEY=VALUE settings it must match; None:
    the recipe with the most results), how a model's seeds become one error (mean of its
    finished seeds, or its first seed's), and which epoch's error (the last, or the best of
    its recorded history)."""

    recipe: Mapping | None = None
    aggregate: str = "mean"
    epoch: str = "last"
    flag: str = field(default="recipe", compare=False)  # what named the recipe, in errors

    def __post_init__(self):
        if self.aggregate not in AGGREGATES:
            raise ArgumentError("aggregate", f"{self.aggregate!r}: choose "
                                f"{' or '.join(AGGREGATES)}")
        if self.epoch not in EPOCHS:
            raise ArgumentError("epoch", f"{self.epoch!r}: choose {' or '.join(EPOCHS)}")

    def to_json(self) -> dict:
        return dict(recipe=dict(self.recipe) if self.recipe else None,
                    aggregate=self.aggregate, epoch=self.epoch)


def recipes(results: pd.DataFrame) -> pd.DataFrame:
    """One row per recipe of `results`: recipe, label, results, models, seeds (most results
    first; of as many, a weight-EMA series after the model's own)."""
    if not len(results):
        return pd.DataFrame(columns=["recipe", "label", "results", "models", "seeds"])
    g = results.groupby("recipe", sort=False)
    out = pd.DataFrame({"results": g.size(), "models": g["model_id"].nunique(),
                        "seeds": g["seed"].nunique()})
    firsts = results.drop_duplicates("recipe").set_index("recipe")
    out["label"] = [label(_settings(firsts.loc[fp])) for fp in out.index]
    out["ema"] = [setting(_settings(firsts.loc[fp]), "series") == "ema" for fp in out.index]
    out = out.reset_index().sort_values(["results", "ema", "recipe"],
                                        ascending=[False, True, True])
    return out[["recipe", "label", "results", "models", "seeds"]].reset_index(drop=True)


def _settings(row) -> dict:
    """A result row's recipe settings (a drawn lr or wd shows as the row's own value)."""
    return {k: row.get(k) for k in SETTINGS}


def choose(results: pd.DataFrame, pick: Pick, where: str = "") -> str | None:
    """The fingerprint of the recipe `pick` names among `results` (None when there are no
    results at all); a DseError when the named settings match none or several recipes (of
    a recipe and its weight-EMA series, the model's own unless `series` is named)."""
    table = recipes(results)
    if not len(table):
        return None
    if not pick.recipe:
        return table["recipe"].iloc[0]
    firsts = results.drop_duplicates("recipe").set_index("recipe")
    hit = [fp for fp in table["recipe"] if matches(_settings(firsts.loc[fp]), pick.recipe)]
    if len(hit) > 1 and "series" not in pick.recipe:  # a recipe and its weight-EMA twin:
        own = [fp for fp in hit                       # the model's own series
               if setting(_settings(firsts.loc[fp]), "series") != "ema"]
        hit = own if len(own) == 1 else hit
    wanted = settings_text(pick.recipe)
    held = "; ".join(f"{r.label} ({r.results} results)" for r in table.itertuples())
    if not hit:
        raise DseError(f"{pick.flag} {wanted}: no results{where} were trained with it; the "
                       f"recipes held: {held}")
    if len(hit) > 1:
        raise DseError(f"{pick.flag} {wanted} matches {len(hit)} recipes{where} ({held}); name "
                       "more settings")
    return hit[0]


def collapse(results: pd.DataFrame, fp: str | None, pick: Pick) -> pd.DataFrame:
    """The results of recipe `fp`, one row per model: the first seed's row with `error` the
    mean of its finished seeds (pick.aggregate == 'mean') or the first seed's own; `n_seeds`
    (finished seeds counted), `error_sd` (their standard deviation; NaN under two) and
    `recipe_label`. Status is done when any seed finished."""
    rows = results[results["recipe"] == fp] if fp is not None else results.iloc[:0]
    rows = rows.sort_values(["model_id", "seed"], kind="stable")
    err = rows["error"].astype(float)
    if pick.epoch == "best" and "history_error" in rows:
        best = rows["history_error"].map(
            lambda h: min(h) if h is not None and len(h) else np.nan).astype(float)
        err = best.where(best.notna(), err)
    rows = rows.assign(error=err)
    first = rows.drop_duplicates("model_id", keep="first").set_index("model_id")
    done = rows[rows["status"] == Status.DONE]
    if pick.aggregate == "first":
        done = done.drop_duplicates("model_id", keep="first")
    g = done.groupby("model_id")["error"]
    out = first.assign(error=g.mean(), n_seeds=g.size(), error_sd=g.std(ddof=1))
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out.loc[out["n_seeds"] > 0, "status"] = Status.DONE.value
    lbl = label(_settings(first.iloc[0])) if len(first) else ""
    return out.assign(recipe_label=lbl).reset_index()


def join(models: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Models ⟕ one row of results per model (dse.store.recipes.collapse)."""
    res = results.drop(columns=["space", "dataset", "dse_version"], errors="ignore")
    res = res.rename(columns={"seed": "train_seed"})
    out = models.merge(res, on="model_id", how="left")
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    return out
