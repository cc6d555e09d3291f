"""What `dse suggest` proposes from which choices matter (dse.analysis.importance): fix a
parameter whose share is negligible even alone, constrain one that matters. Pure.

- constrain P: P matters (its permutation test beyond the other parameters, Holm over the
  parameters); its good range (dse trends) says where to;
- fix P: the upper end of P's first-order share's interval lies below `margin`, so P explains
  next to nothing of the error even counting what it shares with the parameters it moves
  with; any value in its range does about as well, and fixing it shrinks the space;
- a parameter whose total share is negligible but whose first-order share is not is left
  alone: what it explains, the parameters it moves with explain too, and which to fix is a
  choice the data cannot make.
"""

from __future__ import annotations

from dataclasses import dataclass

MARGIN = 0.01  # a share of the error variance below which a parameter is negligible


@dataclass(frozen=True)
class Hint:
    """A proposal about one parameter (`action`: constrain | fix) and why, citing its
    shares."""

    param: str
    action: str
    why: str

    def to_json(self) -> dict:
        return dict(param=self.param, action=self.action, why=self.why)


def hints(imp, margin: float = MARGIN) -> list[Hint]:
    """The proposals from an Importance: constrain what matters (largest total share first),
    then fix what is negligible alone."""
    out = []
    for s in sorted(imp.shares, key=lambda s: -s.total.value):
        share = (f"total share {s.total.value:.3f} [{s.total.lo:.3f}, {s.total.hi:.3f}], "
                 f"first-order {s.first.value:.3f} [{s.first.lo:.3f}, {s.first.hi:.3f}]")
        if s.matters:
            out.append(Hint(s.param, "constrain", f"{s.param} matters (p = {s.p:.3g}, Holm; "
                            f"{share}); narrow it to its good range (dse trends --param "
                            f"{s.param})"))
        elif s.first.hi < margin:
            out.append(Hint(s.param, "fix", f"{s.param} explains under {margin:g} of the error "
                            f"variance even alone ({share}); fix it to any value in its range"))
    return out
