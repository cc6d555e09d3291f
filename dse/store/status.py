"""How a training ended: the `status` of a result (no dependencies, so that every stage and
the command line can name a status without loading the store's libraries)."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """How a training ended, as a result's `status` column stores it (the text itself, so a
    Status equals its value and files stay as they are)."""

    DONE = "done"            # trained; `error` is its test error
    DIVERGED = "diverged"    # the training loss became NaN or infinite
    FAILED = "failed"        # an error stopped it (out of memory, a fault); `message` says

    def __str__(self) -> str:
        return self.value

    __format__ = lambda self, spec: format(self.value, spec)  # noqa: E731
