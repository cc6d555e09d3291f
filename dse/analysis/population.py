"""Which rows an analysis reads: the one owner of populations (no torch).

A population is named by an `Operand` — a space of the home store, a space of another store,
either one narrowed to the models for which an expression holds:

    SPACE               regnetx, rx, spaces/mine.yaml       (the home store)
    SPACE@STORE         rx@runs/imagenet                    (a relative STORE: from `base`)
    SPACE[EXPR]         xc[g == 1]                          (dse.analysis.select.where)
    SPACE@STORE[EXPR]   xc@runs/imagenet[g == 1 and flops < 2M]

and read under a `Selection`: one flop regime, a condition over every population's models,
and the results to read (`Pick`: the recipe, how seeds combine, which epoch). The text is
parsed once — by `Operand.parse`, which the command line's parameter type and the
experiment loader both call — and `load` reads every analysis's rows: the command line's
analyses, the claims of an experiment, `dse report`, `dse suggest`, `dse transfer` and the
pipeline. Each population's rows carry its label (`Operand.label`) in the `space` column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dse.errors import ArgumentError, DseError
from dse.space import regimes
from dse.store.core import Store
from dse.store.recipes import Pick
from dse.store.status import Status

FORMS = "SPACE, SPACE@STORE, SPACE[EXPR] or SPACE@STORE[EXPR] (e.g. xc@runs/cifar[g == 1])"


@dataclass(frozen=True)
class Operand:
    """One population: `space` (a name, alias or YAML path), the `store` it lives in (None:
    the home store; a path as written) and the `expr` its models must satisfy (None: all)."""

    space: str
    store: str | None = None
    expr: str | None = None

    def __post_init__(self):
        if not self.space or not self.space.strip() or any(c in self.space for c in "@[]"):
            raise DseError(f"{self.space!r} is not a space name; a population is {FORMS}")
        if self.store is not None and not self.store.strip():
            raise DseError(f"{self.label!r}: the store after '@' is empty; a population is "
                           f"{FORMS}")
        if self.expr is not None and not self.expr.strip():
            raise DseError(f"{self.label!r}: write SPACE[EXPR] with a condition, e.g. "
                           "xc[g == 1]")

    @classmethod
    def parse(cls, text: str) -> Operand:
        """'xc@runs/cifar[g == 1]' → Operand('xc', 'runs/cifar', 'g == 1'); a DseError
        naming the forms otherwise."""
        text = str(text).strip()
        head, expr = text, None
        if text.endswith("]"):
            head, bracket, expr = text[:-1].partition("[")
            if not bracket:
                raise DseError(f"{text!r} is not a population; write {FORMS}")
            expr = expr.strip()
        elif "[" in text or "]" in text:
            raise DseError(f"{text!r} is not a population; write {FORMS}")
        space, at, store = head.strip().partition("@")
        if not space:
            raise DseError(f"{text!r} names no space; write {FORMS}")
        return cls(space.strip(), store.strip() if at else None, expr)

    @property
    def label(self) -> str:
        """The population's name in tables, figures and verdicts: the text it was given as
        (a space by its resolved name once `resolved`)."""
        out = self.space if self.store is None else f"{self.space}@{self.store}"
        return out if self.expr is None else f"{out}[{self.expr}]"

    def __str__(self) -> str:
        return self.label

    def resolved(self, name: str) -> Operand:
        """The same population with its space given by its store's name for it."""
        return Operand(name, self.store, self.expr)


def operands(texts) -> list[Operand]:
    """Operands of texts or Operands (each text parsed once, by Operand.parse)."""
    return [t if isinstance(t, Operand) else Operand.parse(t) for t in texts]


@dataclass(frozen=True)
class Selection:
    """What every population of an analysis keeps: one flop regime (None: every regime),
    the models for which `where` holds (None: all), and which results give their errors
    (`pick`: the recipe, how seeds combine, which epoch; dse.store.recipes.Pick)."""

    regime: str | None = None
    where: str | None = None
    pick: Pick = Pick()

    def to_json(self) -> dict:
        return dict(regime=self.regime, where=self.where, **self.pick.to_json())


@dataclass
class Population:
    """Populations as an analysis reads them: `frame` holds their selected models joined with
    one result row per model (`space` is each population's label), `labels` their names in the
    order given (a population named twice counts once), `notes` what the output should say
    about the selection, `home` the store figures go to."""

    frame: pd.DataFrame
    labels: list[str]
    notes: list[str]
    home: Store | None


def load(names, selection: Selection = Selection(), home: Store | None = None,
         base=None, every_regime: bool = False) -> Population:
    """The populations `names` (texts or Operands; None: every space of `home`) under the
    selection. A STORE is read from `base` when relative (default: the working directory).
    A DseError when a population's store or space does not exist, when populations of
    several stores were trained under different recipes and no recipe is named, when a
    population has no model of the chosen regime (with `every_regime`: such a space is left
    out instead, unless none has it) or keeps no model under `where` or its expression."""
    pick = selection.pick
    if names is None:
        if home is None:
            raise DseError("no population named and no store to read every space of")
        whole = home.load(None, pick)
        ops = [Operand(s) for s in dict.fromkeys(whole["space"])]
        frames = {None: whole}
    else:
        ops = operands(names)
        if not ops:
            raise DseError(f"name at least one population: {FORMS}")
        ops, frames = _read(ops, home, base, pick)
    whole = _labelled(ops, frames)
    labels = list(dict.fromkeys(op.label for op in ops))
    if every_regime and selection.regime is not None:
        labels = _with_regime(whole, labels, selection.regime)
        whole = whole[whole["space"].isin(labels)]
    notes = _notes(whole, selection, labels)
    frame = _select(whole, selection, labels)
    return Population(frame, labels, notes, home)


def _read(ops: list[Operand], home: Store | None, base, pick: Pick):
    """The operands with their spaces resolved, and each store's frame (models ⟕ results
    of the spaces named in it, read together under one recipe), keyed by STORE (None: home)."""
    stores: dict[str | None, Store] = {}
    for op in ops:
        if op.store is None and home is None:
            raise DseError(f"{op.label!r} names no store; write SPACE@STORE")
        if op.store not in stores:
            stores[op.store] = home if op.store is None else Store.existing(near(base, op.store))
    ops = [op.resolved(stores[op.store].resolve(op.space)) for op in ops]
    frames = {}
    for at, store in stores.items():
        names = list(dict.fromkeys(op.space for op in ops if op.store == at))
        frames[at] = store.load(names, pick)
    _same_recipe(frames, pick)
    return ops, frames


def _labelled(ops: list[Operand], frames: dict) -> pd.DataFrame:
    """Each population's rows, its label in `space` (an expression's models only)."""
    from dse.analysis.select import where

    parts, seen = [], set()
    for op in ops:
        if op.label in seen:
            continue
        seen.add(op.label)
        df = frames[op.store]
        rows = df[df["space"] == op.space]
        if op.expr is not None:
            keep = where(rows, op.expr, f"population {op.label!r}:")
            if len(rows) and not keep.any():
                raise DseError(f"population {op.label!r}: {op.expr!r} keeps none of the "
                               f"{len(rows)} {op.space} models")
            rows = rows[keep]
        parts.append(rows.assign(space=op.label))
    return pd.concat(parts, ignore_index=True)


def _with_regime(df: pd.DataFrame, labels: list[str], regime: str) -> list[str]:
    """The populations that hold `regime`; a DseError when none does."""
    held = [s for s in labels if regime in set(regimes.labels(df[df["space"] == s]))]
    if not held:
        raise DseError(f"no space of the store has a regime {regime!r}")
    return held


def _select(df: pd.DataFrame, selection: Selection, labels) -> pd.DataFrame:
    """The rows the selection keeps; a DseError when a population has no such regime or
    keeps no model."""
    from dse.analysis.select import column_names, where

    out = df
    if selection.regime is not None:
        label = regimes.labels(out)
        for s in labels:
            held = list(dict.fromkeys(label[(out["space"] == s).to_numpy()]))
            if selection.regime not in held:
                raise ArgumentError("regime", f"{selection.regime!r} does not exist in {s}; "
                                    f"its regimes: {', '.join(held) or 'none'}")
        out = out[label == selection.regime]
    if selection.where:
        out = out[where(out, selection.where)]
        for s in labels:
            if not (out["space"] == s).any():
                raise ArgumentError("where", f"{selection.where!r} keeps none of the {s} "
                                    f"models; columns: {', '.join(column_names(df))}")
    return out


def _notes(df: pd.DataFrame, selection: Selection, labels) -> list[str]:
    """The spaces whose several regimes are read together, the condition in force, the
    recipe read and the seed noise."""
    out = []
    if selection.regime is None:
        label = regimes.labels(df)
        for s in labels:
            held = list(dict.fromkeys(label[(df["space"] == s).to_numpy()]))
            if len(held) > 1:
                out.append(f"{s}: {len(held)} regimes ({', '.join(held)}) read together; "
                           "--regime NAME reads one")
    else:
        out.append(f"regime {selection.regime}")
    if selection.where:
        out.append(f"models where {selection.where}")
    return out + recipe_notes(df, selection.pick)


def recipe_notes(df: pd.DataFrame, pick: Pick) -> list[str]:
    """Which recipe's results the frame holds and how seeds and epochs were read."""
    if "recipe" not in df or not df["recipe"].notna().any():
        return []
    fps = list(dict.fromkeys(df["recipe"].dropna()))
    labels = list(dict.fromkeys(df["recipe_label"].dropna())) if "recipe_label" in df else []
    how = "named by --recipe" if pick.recipe else "the one with the most results"
    line = f"recipe {', '.join(labels) or '?'} [{', '.join(fps)}], {how}"
    n = df.loc[df["n_seeds"] > 0, "n_seeds"] if "n_seeds" in df else pd.Series(dtype=int)
    if len(n) and n.max() > 1:
        seeds = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}"
        line += (f"; error = mean of {seeds} seeds per model" if pick.aggregate == "mean"
                 else "; error = the first seed's of each model")
    if pick.epoch == "best":
        line += "; the best epoch's error where a history was recorded (else the last)"
    return [line] + noise_note(df)


def seed_noise(df: pd.DataFrame) -> tuple[float, int, int] | None:
    """The seed noise of the frame's models with reruns: σ of one run in points (pooled from
    each model's seed standard deviation), how many models have reruns, and their median
    number of seeds; None without reruns."""
    if "error_sd" not in df or "n_seeds" not in df:
        return None
    rr = df[(df["n_seeds"] >= 2) & df["error_sd"].notna()]
    if not len(rr):
        return None
    dof = (rr["n_seeds"] - 1).to_numpy(float)
    sigma = float(np.sqrt((dof * rr["error_sd"].to_numpy(float) ** 2).sum() / dof.sum()))
    return sigma, len(rr), int(rr["n_seeds"].median())


def noise_note(df: pd.DataFrame) -> list[str]:
    """The seed noise of the frame's models with reruns, to read differences against: σ of
    one run and of a model's mean."""
    found = seed_noise(df)
    if found is None:
        return []
    sigma, models, n = found
    return [f"seed noise σ = {sigma:.2f} points per run ({models} models with reruns), "
            f"σ/√{n} = {sigma / np.sqrt(n):.2f} on a model's mean of {n} seeds; dse noise "
            "SPACE has more"]


def _same_recipe(frames: dict, pick: Pick) -> None:
    """Populations of several stores read under different recipes (each store's most
    trained) would mix them: a DseError asking for a recipe."""
    if pick.recipe or len(frames) < 2:
        return
    seen = {}
    for at, f in frames.items():
        if "recipe" in f and f["recipe"].notna().any():
            seen[at or "the home store"] = (f["recipe"].dropna().iloc[0],
                                             f["recipe_label"].dropna().iloc[0])
    if len({fp for fp, _ in seen.values()}) > 1:
        held = "; ".join(f"{k}: {lbl}" for k, (_, lbl) in seen.items())
        raise DseError(f"the populations were trained under different recipes ({held}); "
                       f"name the one to compare with {pick.flag} KEY=VALUE,...")


def near(base, path: str) -> str:
    """A store's path as written, relative to `base` (None: the working directory)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or base is None else Path(base) / p)


def paired(operand, picks, home: Store | None = None,
           base=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One population read under two picks (a proxy recipe and a target), and its models
    finished under both, side by side (columns _x of the first, _y of the second)."""
    a, b = (load([operand], Selection(pick=p), home, base).frame for p in picks)
    both = a[a["status"] == Status.DONE].merge(b[b["status"] == Status.DONE], on="model_id")
    return a, b, both


def promoted(store: Store, space: str, pick: Pick, both: pd.DataFrame,
             top: int | None = None) -> tuple[np.ndarray, int, str]:
    """Which of the paired models (`both`, from `paired`) were promoted by selection, as the
    proxy's best (`dse train --top K`), rather than at random (`--sample`): the first `top`
    of the proxy's ranking by its first seed's errors (the ranking --top read before any
    reruns), or, when `top` is None, the longest run of that ranking's best that was
    promoted whole (inferred; 0 when every model was promoted). Returns (mask over `both`,
    K, 'given' | 'inferred')."""
    proxy = store.load([space], Pick(pick.recipe, "first", flag=pick.flag))
    ranked = proxy[proxy["status"] == Status.DONE].sort_values(["error", "model_id"])["model_id"]
    ids, how = set(both["model_id"]), "given"
    if top is None:
        how, top = "inferred", 0
        if len(ids) < len(ranked):
            while top < len(ranked) and ranked.iloc[top] in ids:
                top += 1
    chosen = set(ranked.head(top))
    return both["model_id"].isin(chosen).to_numpy(), int(top), how


_WORDS = (("==", "eq"), ("!=", "ne"), (">=", "ge"), ("<=", "le"), (">", "gt"), ("<", "lt"))


def file_label(label: str) -> str:
    """A population label as part of a file name: 'regnetx@runs/cifar' → 'regnetx@runs-cifar',
    'regnetx[g == 1]' → 'regnetx-g-eq-1'."""
    for op, word in _WORDS:
        label = label.replace(op, f" {word} ")
    return re.sub(r"[^\w.@]+", "-", label).strip("-")
