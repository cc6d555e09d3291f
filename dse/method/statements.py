"""Claims in words (dse.method.claims judges them): the forms an experiment's `expect:` may
state, and `parse_claim`, which reads one into a Claim or says which forms there are. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dse.analysis.population import Operand
from dse.errors import DseError

FORMS = ("A better than B", "A worse than B", "A same as B [within M]",
         "A at least as good as B [within M]", "A good PARAM contains|above|below VALUE",
         "A good PARAM stable across regimes [within T]",
         "A good PARAM increases|decreases with flops",
         "A ranks alike at KEY=V,... and KEY=V,... [above R]", "A: P matters",
         "A: P does not matter within S", "A: P and Q interact")
_OPERAND = r"(\S+?\[[^\]]*\]|\S+)"  # SPACE[@STORE][[EXPR]]: dse.analysis.population.Operand
_PAIR = re.compile(rf"^\s*{_OPERAND}\s+(better than|worse than|same as|at least as good as)"
                   rf"\s+{_OPERAND}(?:\s+within\s+(\S+))?\s*$", re.I)
_RANKS = re.compile(rf"^\s*{_OPERAND}\s+ranks\s+alike\s+at\s+(\S+)\s+and\s+(\S+)"
                    r"(?:\s+above\s+(\S+))?\s*$", re.I)
RANKS_ABOVE = 0.5   # default threshold of "ranks alike": ρ's interval must clear it
_RANGE = re.compile(rf"^\s*{_OPERAND}\s+good\s+(\S+)\s+(contains|above|below)\s+(\S+)\s*$", re.I)
_TREND = re.compile(rf"^\s*{_OPERAND}\s+good\s+(\S+)\s+(stable across regimes|increases with flops|"
                    r"decreases with flops)(?:\s+within\s+(\S+))?\s*$", re.I)
TRENDS = ("stable", "increases", "decreases")
_IMPORTANCE = re.compile(rf"^\s*{_OPERAND}:\s+(\S+)\s+(?:(matters)|(does not matter)\s+within"
                         r"\s+(\S+)|and\s+(\S+)\s+(interact))\s*$", re.I)
IMPORTANCE = ("matters", "negligible", "interact")  # dse.method.importanceclaims


@dataclass(frozen=True)
class Claim:
    """A claim as stated: its kind, its populations (`a`, and `b` for a comparison; each an
    Operand, parsed once), a parameter and value, a margin, and for "ranks alike" the
    proxy's and the target's settings."""

    text: str
    kind: str          # better | same | at_least | contains | above | below | stable | increases
    #                    | decreases | ranks | matters | negligible | interact
    a: Operand
    b: Operand | None = None
    param: str | None = None
    value: float | None = None
    margin: float | None = None  # points; None: the experiment's margin
    recipes: tuple = ()          # ranks: the proxy's and the target's settings ({KEY: V})
    params: tuple = ()           # matters, negligible (P), interact (P, Q): parameters

    @property
    def operands(self) -> list[Operand]:
        """The populations the claim reads."""
        return [self.a] if self.b is None else [self.a, self.b]


def _operand(s: str, text: str) -> Operand:
    try:
        return Operand.parse(s)
    except DseError as e:
        raise DseError(f"claim {text!r}: {e}") from None


def parse_claim(text: str) -> Claim:
    """The Claim a sentence states; a DseError listing the forms otherwise."""
    m = _RANKS.match(text)
    if m:
        from dse.store.recipes import parse_recipe

        recipes = tuple(parse_recipe(r, f"claim {text!r}: recipe")
                        for r in (m.group(2), m.group(3)))
        above = RANKS_ABOVE if m.group(4) is None else _number(m.group(4), text)
        if not -1 <= above < 1:
            raise DseError(f"claim {text!r}: the threshold after 'above' must lie in [-1, 1)")
        return Claim(text, "ranks", _operand(m.group(1), text), value=above, recipes=recipes)
    m = _IMPORTANCE.match(text)
    if m:
        return _importance(m, text)
    m = _PAIR.match(text)
    if m:
        a, rel, b = _operand(m.group(1), text), m.group(2).lower(), _operand(m.group(3), text)
        within = m.group(4)
        margin = None
        if within is not None:
            if rel not in ("same as", "at least as good as"):
                raise DseError(f"{text!r}: a margin ('within M') goes with 'same as' and 'at "
                               "least as good as' only")
            margin = _number(within, text)
            if not margin > 0:
                raise DseError(f"{text!r}: the margin must be a positive number of points")
        if rel == "worse than":
            return Claim(text, "better", b, a)
        kind = {"better than": "better", "same as": "same", "at least as good as": "at_least"}
        return Claim(text, kind[rel], a, b, margin=margin)
    m = _TREND.match(text)
    if m:
        tol = None
        if m.group(4) is not None:
            try:
                tol = float(m.group(4))
            except ValueError:
                raise DseError(f"claim {text!r}: the tolerance after 'within' must be a "
                               f"number (got {m.group(4)!r})") from None
        return Claim(text, m.group(3).split()[0].lower(), _operand(m.group(1), text),
                     param=m.group(2), margin=tol)
    m = _RANGE.match(text)
    if m:
        return Claim(text, m.group(3).lower(), _operand(m.group(1), text), param=m.group(2),
                     value=_number(m.group(4), text))
    raise DseError(f"cannot read the claim {text!r}; the forms are: {'; '.join(FORMS)}")


def _importance(m, text: str) -> Claim:
    """'A: P matters', 'A: P does not matter within S' (S a share in (0, 1)), 'A: P and Q
    interact'."""
    a, p = _operand(m.group(1), text), m.group(2)
    if m.group(3):
        return Claim(text, "matters", a, params=(p,))
    if m.group(7):
        if m.group(6) == p:
            raise DseError(f"claim {text!r}: a parameter does not interact with itself")
        return Claim(text, "interact", a, params=(p, m.group(6)))
    share = _number(m.group(5), text)
    if not 0 < share < 1:
        raise DseError(f"claim {text!r}: the margin after 'within' is a share of the error "
                       "variance, between 0 and 1 (e.g. 0.02)")
    return Claim(text, "negligible", a, value=share, params=(p,))


def _number(s: str, text: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise DseError(f"{s!r} in {text!r} is not a number") from None
    if not np.isfinite(v):
        raise DseError(f"{s!r} in {text!r} is not a finite number")
    return v
