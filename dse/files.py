"""Atomic writes of files (pure): a temporary file in the same directory renamed into place,
so a reader never sees half a file and a crash never leaves one. dse.store.core uses them for
every file of a store; outputs (figures, the report) go through write_output. `jsonable`
makes values safe for the JSON files and the --json output."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

from dse.errors import DseError

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Call write(tmp_path) then rename tmp onto path (same directory, so atomic); the file
    gets the permissions of an ordinary file (umask applies)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # in case `write` replaced the file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_output(path, write) -> Path:
    """Write an output file (table, figure, report) atomically via write(tmp_path), creating
    its directory; a one-line error if it cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, write)
    except OSError as e:
        raise DseError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def jsonable(x):
    """numpy scalars as Python numbers, NaN and inf as null, tuples as lists, keys as text."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
