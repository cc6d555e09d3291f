"""One trained model read from another tool's files (pure): what dse.store.nds and
dse.store.pycls make of a record and dse.store.imports stores.

A record carries the network as dse can build it (one or more candidate `AnyNetSpec`s, the
first whose complexity matches the file's being kept) or, where dse cannot build it (NAS
cells, stems and blocks dse has no equivalent of), as an opaque description: its JSON, from
which an opaque model's id is made. The recipe is two mappings: the settings dse knows
(dse.store.recipes.RECIPE_KEYS) and every other setting the source records, by the source's
own key; both enter the recipe's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task


@dataclass(frozen=True)
class Record:
    """One training of one network, as a source file recorded it."""

    index: int                           # position in its file (the source's own order)
    task: Task
    dataset: str
    specs: tuple[AnyNetSpec, ...] = ()   # candidate readings of the network; () = opaque
    opaque: str = ""                     # why dse cannot build it (empty when specs are given)
    net: str = ""                        # the network's description as JSON (sorted keys)
    file_cx: dict = field(default_factory=dict)  # flops, params, acts as the file gives them
    recipe: dict = field(default_factory=dict)   # RECIPE_KEYS settings
    extra: dict = field(default_factory=dict)    # every other setting, by the source's key
    # the source's settings that are dse's optional recipe settings (label_smoothing, ...),
    # stored in their columns; the fingerprint reads them from `extra`, as it always has
    settings: dict = field(default_factory=dict)
    seed: int = 0
    status: str = "done"                 # done | diverged | failed (unfinished: failed)
    error: float | None = None           # top-1 test error in percent at the last epoch
    message: str = ""
    history_error: tuple[float, ...] | None = None
    history_loss: tuple[float, ...] | None = None
    epochs_run: int | None = None
    train_seconds: float | None = None


def net_json(net) -> str:
    """A network's description as canonical JSON (sorted keys, no spaces)."""
    return json.dumps(net, sort_keys=True, separators=(",", ":"))


def opaque_id(net: str, task: Task) -> str:
    """The 16-hex id of a network dse cannot build: its description and task."""
    parts = ["opaque", net, task.resolution, task.stem, task.in_channels, task.num_classes]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def need(obj: dict, key: str, where: str):
    """obj[key], or a DseError naming the record and the missing key."""
    if not isinstance(obj, dict):
        raise DseError(f"{where} is not a JSON object")
    if key not in obj:
        raise DseError(f"{where} has no {key!r}")
    return obj[key]


def number(v, where: str) -> float:
    """A JSON number (NaN and infinities allowed: a diverged run); DseError otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DseError(f"{where} must be a number (got {v!r})")
    return float(v)


def ints(v, where: str) -> list[int]:
    """A list of integers (numbers truncated, as int() does)."""
    if not isinstance(v, list):
        raise DseError(f"{where} must be a list of numbers (got {type(v).__name__})")
    if set(map(type, v)) <= {int}:  # the usual case, checked at C speed
        return v
    return [int(number(x, f"{where}[{i}]")) for i, x in enumerate(v)]


def series(v, where: str) -> tuple[float, ...]:
    """A per-epoch list of numbers."""
    if not isinstance(v, list):
        raise DseError(f"{where} must be a list of numbers (got {type(v).__name__})")
    if set(map(type, v)) <= {float, int}:  # the usual case, checked at C speed
        return tuple(map(float, v))
    return tuple(number(x, f"{where}[{i}]") for i, x in enumerate(v))


def outcome(errors: tuple[float, ...], epochs: int | None) -> tuple[str, float | None, str]:
    """(status, error, message) of a per-epoch error series against the planned epochs: done
    with the last error when complete and finite, diverged when not finite, failed (with
    the epochs reached) when it stopped early."""
    if not errors:
        return "failed", None, "unfinished: no epoch evaluated"
    last = errors[-1]
    if not math.isfinite(math.fsum(errors)):  # a NaN or an infinity anywhere
        return "diverged", None, "test error not finite"
    if epochs is not None and len(errors) < epochs:
        return "failed", None, f"unfinished: {len(errors)} of {epochs} epochs evaluated"
    return "done", last, ""
