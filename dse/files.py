"""Writes of files (pure): atomic writes (a temporary file in the same directory renamed into
place, so a reader never sees half a file and a crash never leaves one), and the one place
where a write the file system refuses (full disk, quota, read-only) becomes a one-line error
naming the store and its free space. dse.store.core uses them for every file of a store;
outputs (figures, the report) go through write_output. `jsonable` makes values safe for the
JSON files and the --json output."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from dse.errors import DseError, WriteRefusedError
from dse.units import nbytes

_UMASK = os.umask(0)
os.umask(_UMASK)

# What the file system says when a store cannot take a write, in the words of the message.
REFUSED = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "read-only file system"}
_ADVICE = {errno.ENOSPC: "free some space and run the command again",
           errno.EDQUOT: "free some space (or raise the quota) and run the command again",
           errno.EROFS: "run it on a writable copy of the store"}


def free_space(path) -> int | None:
    """Bytes free to this user on the file system holding `path` (its nearest existing
    folder); None if that cannot be told."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def refusal(e: OSError, path, store=None) -> WriteRefusedError:
    """The one-line error of a write the file system refused (ENOSPC, EDQUOT or EROFS),
    naming the store when `path` lies in it."""
    if store is not None and not Path(path).absolute().is_relative_to(Path(store).absolute()):
        store = None  # an output elsewhere (--out): its own file system's free space
    free = free_space(store if store is not None else path)
    room = "free space unknown" if free is None else f"{nbytes(free)} free"
    where = f"store {store}: {room}" if store is not None else f"{room} there"
    return WriteRefusedError(f"cannot write {path}: {REFUSED[e.errno]} ({where}); nothing "
                             f"stored was lost; {_ADVICE[e.errno]}", e.errno)


@contextlib.contextmanager
def writing(path, store=None):
    """Writes to `path` inside this block that the file system refuses (full disk, quota,
    read-only) raise one WriteRefusedError naming the store (or the path) and its free
    space; other OSErrors pass through."""
    try:
        yield
    except OSError as e:
        if e.errno in REFUSED:
            raise refusal(e, path, store) from None
        raise


def write_atomic(path: Path, write, store=None, durable: bool = False) -> None:
    """Call write(tmp_path) then rename tmp onto path (same directory, so atomic), creating
    the directory; the file gets the permissions of an ordinary file (umask applies).
    `durable` also flushes the file and its directory to the disk (for data whose other
    copies are removed next). A refused write raises WriteRefusedError (see `writing`)."""
    path = Path(path)
    with writing(path, store):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
            write(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # in case `write` replaced the file
            if durable:
                _fsync(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync(path.parent)


def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_output(path, write, store=None) -> Path:
    """Write an output file (table, figure, report) atomically via write(tmp_path), creating
    its directory; a one-line error if it cannot be written."""
    path = Path(path)
    try:
        write_atomic(path, write, store)
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


def write_json(path, obj, store=None) -> None:
    """Write `obj` (jsonable) as indented JSON with a final newline, atomically."""
    text = json.dumps(jsonable(obj), indent=2)
    write_atomic(Path(path), lambda p: Path(p).write_text(text + "\n", encoding="utf-8"), store)
