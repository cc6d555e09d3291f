"""The store's cache of quantized linear fits (pure: pyarrow): analysis/fit_linear_cache.parquet
holds one row per architecture fitted in this store (a 16-byte key of its per-block widths,
w0, wa, wm, e_fit), with the version of the search that computed them in the file's
metadata. A fit depends on a model's widths only, so `dse report`, `dse fit-linear`, `dse
suggest` and experiment summaries fit each architecture once; the fits of 10,000 models take
seconds. The file is derived data: one that is missing, damaged, of another version or cannot
be written is ignored (the fits are computed again), and deleting it loses nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import pyarrow as pa

from dse.errors import DseError
from dse.files import write_atomic
from dse.store import checksums

VERSION_KEY = b"dse.fit_version"
SCHEMA = pa.schema([("key", pa.binary(16)), ("w0", pa.float64()),
                    ("wa", pa.float64()), ("wm", pa.float64()), ("e_fit", pa.float64())])


class FitCache:
    """The fits cached in `path` (see the module doc); `store` guards writes as the store's
    other writes are guarded (a full disk refuses them). Used as a context manager, it saves
    what was added when the block ends without an error (a command that fails leaves the
    store as it was); otherwise each write is saved at once."""

    def __init__(self, path: Path, store=None):
        self.path, self.store = Path(path), store
        self._held: tuple[str, pd.DataFrame] | None = None  # (version, fits) read or added
        self._deferred = self._unsaved = False

    def __enter__(self) -> FitCache:
        self._deferred = True
        return self

    def __exit__(self, kind, value, tb) -> None:
        self._deferred = False
        if kind is None:
            self.save()

    def read(self, version: str) -> pd.DataFrame:
        """The cached fits of `version` (empty when there are none)."""
        if self._held is None or self._held[0] != version:
            self._held = (version, self._load(version))
        return self._held[1]

    def write(self, version: str, frame: pd.DataFrame) -> None:
        """Replace the cache with `frame`'s fits of `version` (saved now, or at the end of
        the `with` block)."""
        self._held, self._unsaved = (version, frame), True
        if not self._deferred:
            self.save()

    def save(self) -> None:
        """Write what was added; a write that fails is skipped (the cache is derived)."""
        if not self._unsaved or self._held is None:
            return
        version, frame = self._held
        table = pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({VERSION_KEY: version.encode()})
        with contextlib.suppress(OSError, DseError):
            write_atomic(self.path, lambda p: checksums.write_table(table, p, 4096), self.store)
        self._unsaved = False

    def _load(self, version: str) -> pd.DataFrame:
        try:
            table = checksums.read_table(self.path)
            ok = (table.schema.metadata or {}).get(VERSION_KEY) == version.encode()
            ok = ok and table.schema.remove_metadata().equals(SCHEMA)
        except (FileNotFoundError, checksums.Unreadable, OSError):
            ok = False
        return table.to_pandas() if ok else SCHEMA.empty_table().to_pandas()
