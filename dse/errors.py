"""What a user can get wrong, as exceptions and warnings the CLI prints as one line.

The library names its own arguments (`train_subset`); the CLI turns an `ArgumentError` into
the flag that set it (`--train-subset`). Warnings of `DseWarning` are printed by the CLI as
one `Warning:` line on stderr and are ordinary Python warnings in a notebook.
"""

from __future__ import annotations

import math


def one_line(text: str, limit: int | None = None) -> str:
    """A message as one line (its whitespace runs, newlines included, as single spaces), cut
    to `limit` characters: the form of every `Error:` and `Warning:` line and stored
    message."""
    out = " ".join(str(text).split())
    return out if limit is None else out[:limit]


def described(e: BaseException, limit: int | None = None) -> str:
    """'TypeName: message' of an exception, as one line (one_line)."""
    return one_line(f"{type(e).__name__}: {e}", limit)


class DseError(Exception):
    """A user-facing error: bad option, unknown space, malformed file, impossible budget."""


class ArgumentError(DseError):
    """A bad value of the library argument `param`: the message is "<param> <problem>"."""

    def __init__(self, param: str, problem: str):
        self.param, self.problem = param, problem
        super().__init__(f"{param} {problem}")


class DamagedFileError(DseError):
    """A store file that cannot be read (truncated, not Parquet); it is never changed."""

    def __init__(self, path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is damaged: not a readable Parquet table ({reason}); dse "
                         "left it unchanged; restore it from a copy")


class WriteRefusedError(DseError):
    """A write the file system refused: no space left, quota exceeded or read-only (ENOSPC,
    EDQUOT, EROFS). The file written is unchanged (writes are atomic); the message names the
    store and its free space."""

    def __init__(self, message: str, errno: int):
        self.errno = errno
        super().__init__(message)


class DseWarning(UserWarning):
    """Something a user should know that does not stop the command (a damaged file skipped)."""


def out_of_bounds(v, lo=None, hi=None, *, integer: bool = False, lo_open: bool = False,
                  hi_open: bool = False, unit: str = "") -> str | None:
    """Why `v` is not a finite number (an int with integer=True) within lo..hi (either end
    open, or absent), as the end of an error message ("must be an integer ≥ 1 (got 0)");
    None when it is."""
    kind = "an integer" if integer else "a number" + (f" of {unit}" if unit else "")
    ok = (isinstance(v, int) if integer else isinstance(v, (int, float))) \
        and not isinstance(v, bool) and math.isfinite(v)
    if lo is not None and hi is not None:
        need = f"{kind} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        need = f"{kind} {'>' if lo_open else '≥'} {lo}"
    elif hi is not None:
        need = f"{kind} {'<' if hi_open else '≤'} {hi}"
    else:
        need = kind
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    return None if ok else f"must be {need} (got {v!r})"
