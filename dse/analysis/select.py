"""The expression language that chooses models (pure): a condition over a model's columns,
as `--where EXPR`, a population `SPACE[EXPR]` and `--split EXPR` write it
(dse.analysis.population applies it).

An expression is Python-like and evaluated on the columns of `model_columns`, never by
`eval`: comparisons (chained too), `and`, `or`, `not`, `in [...]`, + − × / %, numbers with
K/M/G suffixes and quoted text, e.g. `g == 1 and flops < 2M`, `regime in ['2M', '4M']`.
"""

from __future__ import annotations

import ast
import functools
import operator
import re

import numpy as np
import pandas as pd

from dse.errors import ArgumentError, DseError
from dse.space import regimes
from dse.units import SI

TEXT = ("regime", "space", "status", "model_id", "kind", "block", "activation")
_SUFFIX = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?|\.\d+)([KMG])(?!\w)")
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")


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
        lambda m: repr(float(m.group(1)) * SI[m.group(2)]), p) for i, p in enumerate(parts))


def where(df: pd.DataFrame, expr: str, what: str = "where") -> np.ndarray:
    """The rows of df for which the expression holds (a boolean array). `what` names the
    expression in errors: an argument's name (an ArgumentError, the CLI names its flag) or
    the text that stated it."""
    known = column_names(df)
    try:
        tree = ast.parse(_with_units(expr).strip(), mode="eval")
    except SyntaxError:
        raise _error(what, f"{expr!r} is not an expression over a model's columns (e.g. "
                       f"\"g == 1 and flops < 2M\"); columns: {', '.join(known)}") from None
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    unknown = sorted(used - set(known))
    if unknown:
        raise _error(what, f"{expr!r}: unknown column {unknown[0]!r}; columns: "
                       f"{', '.join(known)}")
    out = _eval(tree.body, model_columns(df, sorted(used)), expr, what)
    if isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype == bool:
        out = np.full(len(df), bool(out))
    if not isinstance(out, np.ndarray) or out.dtype != bool:
        raise _error(what, f"{expr!r} is not a condition (write a comparison such as "
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
    raise _error(what, f"{expr!r}: {ast.unparse(node)!r} is not allowed; use comparisons, "
                   "and/or/not, in [...], + - * / % over the columns")


def _error(what: str, problem: str) -> DseError:
    """An error about an expression: of the argument `what`, or of the text `what` names."""
    return ArgumentError(what, problem) if what.isidentifier() else DseError(f"{what} {problem}")


def _is_text(v) -> bool:
    return isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object)


def _compare(op, left, right, expr: str, what: str) -> np.ndarray:
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, list):
            raise _error(what, f"{expr!r}: `in` needs a list, e.g. g in [1, 2]")
        hit = np.isin(np.asarray(left, dtype=object if _is_text(left) else float), right)
        return hit if isinstance(op, ast.In) else ~hit
    if type(op) not in _CMP:
        raise _error(what, f"{expr!r}: use ==, !=, <, <=, >, >= or in")
    if _is_text(left) != _is_text(right):
        raise _error(what, f"{expr!r}: compares text with a number; quote text values, "
                       "e.g. regime == '2M'")
    with np.errstate(invalid="ignore"):
        return np.asarray(_CMP[type(op)](left, right), dtype=bool)


def _truth(v, expr: str, what: str) -> np.ndarray:
    if not isinstance(v, np.ndarray) or v.dtype != bool:
        raise _error(what, f"{expr!r}: `and`, `or` and `not` join conditions such as g == 1")
    return v


def _number(v, expr: str, what: str):
    if _is_text(v) or isinstance(v, list):
        raise _error(what, f"{expr!r}: arithmetic needs numbers")
    return v


# ---- sub-populations of one space ------------------------------------------------------

def split(df: pd.DataFrame, space: str, exprs) -> tuple[pd.DataFrame, list[str]]:
    """Sub-populations of one space, one per expression (one expression: it and the rest),
    as a frame whose `space` is the label `space[expr]`; they must not share a model."""
    exprs = list(exprs)
    if len(exprs) == 1:
        exprs.append(f"not ({exprs[0]})")
    rows = df[df["space"] == space]
    masks = [where(rows, x, "splits") for x in exprs]
    shared = np.sum(masks, axis=0) > 1
    if shared.any():
        raise ArgumentError("splits", f"{', '.join(repr(x) for x in exprs)}: "
                            f"{int(shared.sum())} {space} models fall in more than one; "
                            "sub-populations must be disjoint")
    parts, labels = [], []
    for x, m in zip(exprs, masks):
        if not m.any():
            raise ArgumentError("splits", f"{x!r} keeps none of the {space} models; "
                                f"columns: {', '.join(column_names(rows))}")
        labels.append(f"{space}[{x}]")
        parts.append(rows[m].assign(space=labels[-1]))
    return pd.concat(parts, ignore_index=True), labels
