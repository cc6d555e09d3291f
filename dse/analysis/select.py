"""Which models an analysis reads (pure): a `Selection` of a population by flop regime and by
an expression over a model's columns, and populations named across stores (SPACE@STORE).

Every analysis command takes the same selection (`--regime NAME`, `--where EXPR`; the CLI
bundle is dse.cli.common.selection_options) and applies it with `select`, so a further way
to choose models (a training recipe) joins here once.

An expression is Python-like and evaluated on the columns of `model_columns`, never by
`eval`: comparisons (chained too), `and`, `or`, `not`, `in [...]`, + − × / %, numbers with
K/M/G suffixes and quoted text, e.g. `g == 1 and flops < 2M`, `regime in ['2M', '4M']`.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dse.errors import DseError
from dse.space import regimes
from dse.store.core import Store
from dse.store.trials import Pick

TEXT = ("regime", "space", "status", "model_id", "kind", "block", "activation")
_SUFFIX = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?|\.\d+)([KMG])(?!\w)")
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")
_SCALE = {"K": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class Selection:
    """The models an analysis reads: one flop regime (None: every regime), those for which
    `where` holds (None: all), and which results give their errors (`pick`: the recipe,
    how seeds combine, which epoch; dse.store.trials.Pick)."""

    regime: str | None = None
    where: str | None = None
    pick: Pick = Pick()

    def to_json(self) -> dict:
        return dict(regime=self.regime, where=self.where, **self.pick.to_json())


# ---- the columns an expression reads ---------------------------------------------------------

def _stage(df: pd.DataFrame, col: str, i: int) -> np.ndarray:
    return np.array([v[i] if v is not None and len(v) > i else np.nan for v in df[col]],
                    dtype=float)


def _agg(df: pd.DataFrame, col: str, fn) -> np.ndarray:
    return np.array([fn(v) if v is not None and len(v) else np.nan for v in df[col]],
                    dtype=float)


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _g(df: pd.DataFrame) -> np.ndarray:
    g = _num(df, "group_w")
    return np.where(np.isfinite(g), g, _agg(df, "gs", max))


def _text(df: pd.DataFrame, col: str) -> np.ndarray:
    return df[col].to_numpy(dtype=object)


_COLUMNS = {  # in the order an error message lists them; per-stage columns go after `wm`
    **{c: functools.partial(_num, col=c) for c in ("flops", "params", "acts", "error")},
    "d": functools.partial(_agg, col="ds", fn=sum), "w": functools.partial(_agg, col="ws", fn=max),
    "b": functools.partial(_agg, col="bs", fn=max), "g": _g,
    **{c: functools.partial(_num, col=c) for c in ("w0", "wa", "wm", "lr", "wd", "n_seeds")},
    "regime": lambda df: regimes.labels(df).astype(object),
    **{c: functools.partial(_text, col=c) for c in TEXT[1:]},
}


def column_names(df: pd.DataFrame) -> list[str]:
    """The columns an expression may use: flops, params, acts, error, d (total depth), w (the
    widest stage), b, g (RegNet: as sampled; AnyNet: the largest stage's), w0, wa, wm
    (RegNet), lr, wd (the recipe's, drawn per model or not), n_seeds, per stage d1.. w1..
    b1.. g1..; regime, space, status, model_id, kind, block, activation."""
    stages = int(df["ds"].map(lambda v: 0 if v is None else len(v)).max()) if len(df) else 4
    per_stage = [f"{sym}{i + 1}" for sym in "dwbg" for i in range(stages)]
    return [*list(_COLUMNS)[:14], *per_stage, *list(_COLUMNS)[14:]]


def model_columns(df: pd.DataFrame, names=None) -> dict[str, np.ndarray]:
    """name → values over the models of the named columns (default: all of column_names)."""
    out = {}
    for name in names or column_names(df):
        if name in _COLUMNS:
            out[name] = _COLUMNS[name](df)
        else:
            col = {"d": "ds", "w": "ws", "b": "bs", "g": "gs"}[name[0]]
            out[name] = _stage(df, col, int(name[1:]) - 1)
    return out


# ---- expressions -----------------------------------------------------------------------------

_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.Mod: operator.mod}


def _with_units(expr: str) -> str:
    """'flops < 2M' → 'flops < 2000000.0', leaving quoted text alone."""
    parts = _QUOTED.split(expr)
    return "".join(p if i % 2 else _SUFFIX.sub(
        lambda m: repr(float(m.group(1)) * _SCALE[m.group(2)]), p) for i, p in enumerate(parts))


def where(df: pd.DataFrame, expr: str, what: str = "--where") -> np.ndarray:
    """The rows of df for which the expression holds (a boolean array)."""
    known = column_names(df)
    try:
        tree = ast.parse(_with_units(expr).strip(), mode="eval")
    except SyntaxError:
        raise DseError(f"{what} {expr!r} is not an expression over a model's columns (e.g. "
                       f"\"g == 1 and flops < 2M\"); columns: {', '.join(known)}") from None
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    unknown = sorted(used - set(known))
    if unknown:
        raise DseError(f"{what} {expr!r}: unknown column {unknown[0]!r}; columns: "
                       f"{', '.join(known)}")
    out = _eval(tree.body, model_columns(df, sorted(used)), expr, what)
    if isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype == bool:
        out = np.full(len(df), bool(out))
    if not isinstance(out, np.ndarray) or out.dtype != bool:
        raise DseError(f"{what} {expr!r} is not a condition (write a comparison such as "
                       "g == 1)")
    return out


def _eval(node, cols: dict, expr: str, what: str):
    """The value of one node: an array over the models, or a constant."""
    ev = lambda n: _eval(n, cols, expr, what)  # noqa: E731
    if isinstance(node, ast.BoolOp):
        vals = [_truth(ev(v), expr, what) for v in node.values]
        fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return fn.reduce(vals)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_truth(ev(node.operand), expr, what)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -ev(node.operand)
    if isinstance(node, ast.Compare):
        left, out = ev(node.left), None
        for op, right_node in zip(node.ops, node.comparators):
            right = ev(right_node)
            r = _compare(op, left, right, expr, what)
            out = r if out is None else out & r
            left = right
        return out
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return _ARITH[type(node.op)](_number(ev(node.left), expr, what),
                                     _number(ev(node.right), expr, what))
    if isinstance(node, ast.Name):
        return cols[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [ev(e) for e in node.elts]
    raise DseError(f"{what} {expr!r}: {ast.unparse(node)!r} is not allowed; use comparisons, "
                   "and/or/not, in [...], + - * / % over the columns")


def _is_text(v) -> bool:
    return isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object)


def _compare(op, left, right, expr: str, what: str) -> np.ndarray:
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, list):
            raise DseError(f"{what} {expr!r}: `in` needs a list, e.g. g in [1, 2]")
        hit = np.isin(np.asarray(left, dtype=object if _is_text(left) else float), right)
        return hit if isinstance(op, ast.In) else ~hit
    if type(op) not in _CMP:
        raise DseError(f"{what} {expr!r}: use ==, !=, <, <=, >, >= or in")
    if _is_text(left) != _is_text(right):
        raise DseError(f"{what} {expr!r}: compares text with a number; quote text values, "
                       "e.g. regime == '2M'")
    with np.errstate(invalid="ignore"):
        return np.asarray(_CMP[type(op)](left, right), dtype=bool)


def _truth(v, expr: str, what: str) -> np.ndarray:
    if not isinstance(v, np.ndarray) or v.dtype != bool:
        raise DseError(f"{what} {expr!r}: `and`, `or` and `not` join conditions such as g == 1")
    return v


def _number(v, expr: str, what: str):
    if _is_text(v) or isinstance(v, list):
        raise DseError(f"{what} {expr!r}: arithmetic needs numbers")
    return v


# ---- applying a selection --------------------------------------------------------------------

def select(df: pd.DataFrame, selection: Selection, spaces) -> pd.DataFrame:
    """The rows of the named spaces that the selection keeps; a DseError when a space has no
    such regime or keeps no model."""
    out = df
    if selection.regime is not None:
        label = regimes.labels(out)
        for s in spaces:
            held = list(dict.fromkeys(label[(out["space"] == s).to_numpy()]))
            if selection.regime not in held:
                raise DseError(f"regime {selection.regime!r} does not exist in {s}; its "
                               f"regimes: {', '.join(held) or 'none'}")
        out = out[label == selection.regime]
    if selection.where:
        out = out[where(out, selection.where)]
        for s in spaces:
            if not (out["space"] == s).any():
                raise DseError(f"--where {selection.where!r} keeps none of the {s} models; "
                               f"columns: {', '.join(column_names(df))}")
    return out


def notes(df: pd.DataFrame, selection: Selection, spaces) -> list[str]:
    """What the output should say about the selection: the spaces whose several regimes are
    read together, and the --where in force."""
    out = []
    if selection.regime is None:
        label = regimes.labels(df)
        for s in spaces:
            held = list(dict.fromkeys(label[(df["space"] == s).to_numpy()]))
            if len(held) > 1:
                out.append(f"{s}: {len(held)} regimes ({', '.join(held)}) read together; "
                           "--regime NAME reads one")
    else:
        out.append(f"regime {selection.regime}")
    if selection.where:
        out.append(f"models where {selection.where}")
    out += recipe_notes(df, selection.pick)
    return out


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


def noise_note(df: pd.DataFrame) -> list[str]:
    """The seed noise of the frame's models with reruns (pooled from each model's seed
    standard deviation), to read differences against: σ of one run and of a model's mean."""
    if "error_sd" not in df or "n_seeds" not in df:
        return []
    rr = df[(df["n_seeds"] >= 2) & df["error_sd"].notna()]
    if not len(rr):
        return []
    dof = (rr["n_seeds"] - 1).to_numpy(float)
    sigma = float(np.sqrt((dof * rr["error_sd"].to_numpy(float) ** 2).sum() / dof.sum()))
    n = int(rr["n_seeds"].median())
    return [f"seed noise σ = {sigma:.2f} points per run ({len(rr)} models with reruns), "
            f"σ/√{n} = {sigma / np.sqrt(n):.2f} on a model's mean of {n} seeds; dse noise "
            "SPACE has more"]


def split(df: pd.DataFrame, space: str, exprs) -> tuple[pd.DataFrame, list[str]]:
    """Sub-populations of one space, one per expression (one expression: it and the rest),
    as a frame whose `space` is the label `space[expr]`; they must not share a model."""
    exprs = list(exprs)
    if len(exprs) == 1:
        exprs.append(f"not ({exprs[0]})")
    rows = df[df["space"] == space]
    masks = [where(rows, x, "--split") for x in exprs]
    shared = np.sum(masks, axis=0) > 1
    if shared.any():
        raise DseError(f"--split: {int(shared.sum())} {space} models fall in more than one of "
                       f"{', '.join(repr(x) for x in exprs)}; sub-populations must be disjoint")
    parts, labels = [], []
    for x, m in zip(exprs, masks):
        if not m.any():
            raise DseError(f"--split {x!r} keeps none of the {space} models; columns: "
                           f"{', '.join(column_names(rows))}")
        labels.append(f"{space}[{x}]")
        parts.append(rows[m].assign(space=labels[-1]))
    return pd.concat(parts, ignore_index=True), labels


# ---- spaces across stores --------------------------------------------------------------------

def parse_named(text: str) -> tuple[str, str | None]:
    """'rx@runs/cifar' → ('rx', 'runs/cifar'); 'rx' → ('rx', None)."""
    space, at, store = text.partition("@")
    if at and not (space and store):
        raise DseError(f"{text!r} is not SPACE or SPACE@STORE (e.g. rx@runs/cifar)")
    return space, (store if at else None)


def load_named(home: Store | None, names, base=None,
               pick: Pick | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Models ⟕ results of the spaces named SPACE (in `home`) or SPACE@STORE; a space of
    another store is labelled `space@STORE` in the frame's `space` column. A relative STORE
    is read from `base` (default: the working directory). Returns the frame and the labels
    in order (a population named twice counts once)."""
    frames, labels = [], []
    for text in names:
        space, at = parse_named(text)
        if at is None and home is None:
            raise DseError(f"{text!r} names no store; write SPACE@STORE")
        store = home if at is None else Store.existing(at if base is None else _near(base, at))
        name = store.resolve(space)
        label = name if at is None else f"{name}@{at}"
        if label not in labels:
            frames.append(store.load([name], pick).assign(space=label))
            labels.append(label)
    out = pd.concat(frames, ignore_index=True)
    _same_recipe(frames, labels, pick)
    return out, labels


def paired(store: Store, space: str, picks) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A space read under two picks (a proxy recipe and a target), and its models finished
    under both, side by side (columns _x of the first, _y of the second)."""
    a, b = (store.load([space], p) for p in picks)
    both = a[a["status"] == "done"].merge(b[b["status"] == "done"], on="model_id")
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
    ranked = proxy[proxy["status"] == "done"].sort_values(["error", "model_id"])["model_id"]
    ids, how = set(both["model_id"]), "given"
    if top is None:
        how, top = "inferred", 0
        if len(ids) < len(ranked):
            while top < len(ranked) and ranked.iloc[top] in ids:
                top += 1
    chosen = set(ranked.head(top))
    return both["model_id"].isin(chosen).to_numpy(), int(top), how


def _same_recipe(frames, labels, pick: Pick | None) -> None:
    """Populations of several stores read under different recipes (each store's most
    trained) would mix them: a DseError asking for --recipe."""
    if pick is not None and pick.recipe:
        return
    seen = {}
    for f, label in zip(frames, labels):
        fps = set(f["recipe"].dropna()) if "recipe" in f else set()
        if fps:
            seen[label] = (next(iter(fps)), f["recipe_label"].dropna().iloc[0])
    if len({fp for fp, _ in seen.values()}) > 1:
        held = "; ".join(f"{k}: {lbl}" for k, (_, lbl) in seen.items())
        raise DseError(f"the populations were trained under different recipes ({held}); "
                       "name the one to compare with --recipe KEY=VALUE,...")


def _near(base, path: str) -> str:
    from pathlib import Path

    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(base) / p)


_WORDS = (("==", "eq"), ("!=", "ne"), (">=", "ge"), ("<=", "le"), (">", "gt"), ("<", "lt"))


def file_label(label: str) -> str:
    """A population label as part of a file name: 'regnetx@runs/cifar' → 'regnetx@runs-cifar',
    'regnetx[g == 1]' → 'regnetx-g-eq-1'."""
    for op, word in _WORDS:
        label = label.replace(op, f" {word} ")
    return re.sub(r"[^\w.@]+", "-", label).strip("-")
