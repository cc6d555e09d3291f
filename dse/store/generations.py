"""The models table and its previous generation (pure). `dse sample` rewrites a space's
models.parquet: the new table is read back and checked before it is renamed into place, and
then the table it replaced is kept as models.previous.parquet (a hard link, else a copy).
When models.parquet is damaged or gone, readers take the previous generation, with a warning:
every model but those sampled since. `dse verify --repair` (dse.store.verify) rebuilds the
table from it and the damaged table's intact row groups."""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import pyarrow as pa

from dse.errors import DamagedFileError, DseWarning
from dse.files import REFUSED, writing
from dse.store import checksums
from dse.store.paths import Layout


def read_models(layout: Layout, space: str, previous: bool = True) -> pa.Table:
    """A space's models table as stored; its previous generation (with a warning) when it is
    damaged or gone and `previous`; DamagedFileError when neither can be read."""
    path, prev = layout.models_path(space), layout.previous_models_path(space)
    try:
        if not path.exists():
            raise DamagedFileError(path, "the file is missing")
        return read_table(path)
    except DamagedFileError as e:
        if not previous or not prev.exists():
            raise
        try:
            table = read_table(prev)
        except DamagedFileError:
            raise e from None
        warnings.warn(f"{path} is damaged ({e.reason}); read its previous generation "
                      f"{prev.name} ({table.num_rows} models: those sampled since are missing); "
                      f"`dse verify --repair --store {layout.root}` restores it",
                      DseWarning, stacklevel=4)
        return table


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A table of the store, every checksum checked; DamagedFileError if it fails."""
    try:
        return checksums.read_table(path, columns)
    except checksums.Unreadable as e:
        raise DamagedFileError(path, str(e)) from None
    except (pa.ArrowException, OSError) as e:
        raise DamagedFileError(path, checksums.why(e)) from None


@contextlib.contextmanager
def keeping_previous(layout: Layout, space: str):
    """Around the write of a new models table (the caller holds the space's lock): the table it
    replaces becomes the previous generation once the block ends without an error (a hard
    link, else a copy, made first); on an error nothing is left behind."""
    cur, prev = layout.models_path(space), layout.previous_models_path(space)
    tmp = prev.with_name(f".{prev.name}.{os.getpid()}.tmp") if cur.exists() else None
    try:
        if tmp is not None:
            with writing(prev, layout.root):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                try:
                    os.link(cur, tmp)
                except OSError as e:
                    if e.errno in REFUSED:
                        raise
                    shutil.copyfile(cur, tmp)
        yield
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    if tmp is not None:
        with writing(prev, layout.root):
            os.replace(tmp, prev)
