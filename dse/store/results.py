"""A space's results (pure: pyarrow): per-model files beside compacted segments, read against
the store's schema. dse.store.core.Store calls these under its paths (dse.store.paths).

    results/<trial>.parquet           one result, written by `dse train` the moment its model
                                      finishes (a per-trial file, named by
                                      dse.store.recipes.trial_id; <model_id>.parquet before
                                      trials)
    results/segments/<gen>.parquet    at most 1,024 results: what compaction folded together
                                      (dse.store.compaction)

Reading. Every byte is checked (dse.store.checksums). A file's columns are cast to
RESULTS_SCHEMA where the types are compatible (string and large_string, any integer width,
float32 and float64, any timestamp unit, all-null and dictionary columns, pandas' floats for
integers with gaps); a file that fails a checksum or cannot be cast, or with a row that lacks
its key or a valid status, is damaged, and the row groups of a damaged segment that still
match their checksums are salvaged. Readers list and read the per-model files first, then
every segment, and keep one row per RESULT_KEY (a per-model file over a segment, a newer
segment over an older one, the later finished among equals). A file that vanishes while it is
read was absorbed by a segment renamed into place before it was removed; the segments are
listed again: nothing is missed and nothing counted twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dse.errors import DamagedFileError, DseError, one_line
from dse.files import writing
from dse.store import checksums
from dse.store.paths import Layout
from dse.store.recipes import RECIPE_KEYS, parse_trial, trial_id, with_recipe
from dse.store.schema import RESULT_KEY, RESULT_STATUSES, RESULTS_SCHEMA

DAMAGED = "damaged"    # the status of a result file that cannot be read
COMPACT_AT = 256       # per-model files of a space that make a reader compact them first
_NEEDED = (*RESULT_KEY, "status", "finished_at")  # what every read takes, to deduplicate


@dataclass(frozen=True)
class Damaged:
    """A store file that cannot be read whole, why, and what of it was salvaged."""

    path: Path
    reason: str
    salvaged: int = 0                # rows read from its intact row groups
    total: int | None = None         # rows it held (None: its footer is gone, unknown)

    @property
    def lost(self) -> int | None:
        """Rows lost with it (None: unknown, its footer is gone)."""
        return None if self.total is None else self.total - self.salvaged


@dataclass(frozen=True)
class Scan:
    """What a reader found: one row per result key, and the files it could not read."""

    table: pa.Table                  # RESULTS_SCHEMA's columns first (or those asked for)
    damaged: tuple[Damaged, ...]
    files: int                       # per-model files read
    segments: tuple[Path, ...]       # the segments read (damaged ones included)


@dataclass(frozen=True)
class Compaction:
    """What one compaction of a space did."""

    space: str
    segment: Path | None             # the first segment written; None when nothing was to do
    results: int                     # results in the space's segments afterwards
    absorbed: int                    # per-model files folded in and removed
    set_aside: tuple[Path, ...]      # damaged segments moved to damaged/ (salvaged first)
    written: tuple[Path, ...] = ()   # every segment written
    merged: int = 0                  # segments folded into those and removed


# ---- one file against the schema -------------------------------------------------------------

def _family(t: pa.DataType) -> str:
    for name, test in (("text", pa.types.is_string), ("text", pa.types.is_large_string),
                       ("text", pa.types.is_string_view), ("int", pa.types.is_integer),
                       ("float", pa.types.is_floating), ("bool", pa.types.is_boolean),
                       ("time", pa.types.is_timestamp), ("null", pa.types.is_null)):
        if test(t):
            return name
    return str(t)


_COMPATIBLE = {("int", "float"), ("float", "int")}  # pandas stores integers with gaps as floats


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _cast(col: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """`col` as the schema's type, if the types are compatible; ValueError if not."""
    have, want = col.type, field.type
    if have == want:
        return col
    if pa.types.is_dictionary(have):
        return _cast(col.cast(have.value_type), field)
    if _is_list(have) and _is_list(want):  # per element (pandas writes [] as list<null>)
        a, b = _family(have.value_type), _family(want.value_type)
        if a in ("null", b) or (a, b) in _COMPATIBLE:
            try:
                return col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        raise ValueError(f"column {field.name} is {have}, not {want}")
    a, b = _family(have), _family(want)
    if a != "null" and a != b and (a, b) not in _COMPATIBLE:
        raise ValueError(f"column {field.name} is {have}, not {want}")
    if a == "float" and b == "int":
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, have), col)
    try:  # timestamps may lose sub-millisecond digits; every other cast must be exact
        return col.cast(want, safe=b != "time")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ValueError(f"column {field.name} holds {have} values that are not {want}") from None


def conform(table: pa.Table, schema: pa.Schema = RESULTS_SCHEMA) -> pa.Table:
    """`table` with `schema`'s columns first (cast where compatible, null where missing) and its
    other columns after; ValueError naming the first column that cannot be cast, or a row
    without its key or a valid status."""
    at = {n: i for i, n in enumerate(table.column_names)}
    if len(at) != table.num_columns:
        raise ValueError("two columns have the same name")
    if table.schema.equals(schema):  # as dse writes it
        out = table
    else:
        cols = [_cast(table.column(at[f.name]), f) if f.name in at
                else pa.chunked_array([pa.nulls(table.num_rows, f.type)], f.type)
                for f in schema]
        fields = list(schema) + [f for f in table.schema if f.name not in schema.names]
        cols += [table.column(at[f.name]) for f in fields[len(schema):]]
        out = pa.Table.from_arrays(cols, schema=pa.schema(fields))
    out = with_recipe(out)
    for k in RESULT_KEY:
        if k in out.column_names and out.column(k).null_count:
            raise ValueError(f"a row has no {k}")
    if "status" in out.column_names:
        bad = set(pc.unique(out.column("status")).to_pylist()) - set(RESULT_STATUSES)
        if bad:
            raise ValueError(f"status {sorted(bad, key=str)[0]!r} is none of "
                             f"{', '.join(RESULT_STATUSES)}")
    return out


def read_file(path: Path, columns: tuple[str, ...] | None = None) -> pa.Table:
    """A result file conformed to the schema (only `columns`, plus what deduplication needs,
    when given), every byte checked (dse.store.checksums); DamagedFileError if it cannot be
    read, checked or cast, FileNotFoundError if gone."""
    try:
        table = checksums.read_table(path, _wanted(columns))
    except checksums.Unreadable as e:
        raise DamagedFileError(path, str(e)) from None
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, FileNotFoundError) or getattr(e, "errno", None) == errno.ENOENT:
            raise FileNotFoundError(path) from None
        raise DamagedFileError(path, why(e)) from None
    return _conformed(path, table, columns)


def _wanted(columns: tuple[str, ...] | None):
    """What to read of a file with these column names (None: all of it)."""
    if columns is None:
        return None

    def pick(names: list[str]) -> list[str]:
        extra = RECIPE_KEYS if "recipe" not in names else ()  # written before trials
        return [c for c in dict.fromkeys((*_NEEDED, *columns, *extra)) if c in names]
    return pick


def _conformed(path: Path, table: pa.Table, columns: tuple[str, ...] | None) -> pa.Table:
    schema = RESULTS_SCHEMA if columns is None else pa.schema(
        [RESULTS_SCHEMA.field(c) for c in dict.fromkeys((*_NEEDED, *columns))])
    try:
        out = conform(table, schema)
        return out if columns is None else out.select(schema.names)
    except (ValueError, pa.ArrowException) as e:
        raise DamagedFileError(path, str(e) if isinstance(e, ValueError) else why(e)) from None


def salvage(path: Path, reason: str, columns: tuple[str, ...] | None = None
            ) -> tuple[pa.Table | None, Damaged]:
    """The intact row groups of a damaged result file or segment, conformed (None: none), and
    the file as damaged, with how many of its rows were salvaged."""
    try:
        got = checksums.salvage(path, _wanted(columns))
    except FileNotFoundError:
        return None, Damaged(path, reason)
    table = None
    if got.table is not None:
        try:
            table = _conformed(path, got.table, columns)
        except DamagedFileError:
            table = None
    return table, Damaged(path, reason, 0 if table is None else table.num_rows, got.total)


def why(e: Exception) -> str:
    """The first sentence of a reader's error, without the path it repeats."""
    msg = re.sub(r"^Could not open Parquet input source '[^']*':\s*", "", one_line(e))
    return msg.split(". ")[0].rstrip(".")[:160]


# ---- the files of a space ----------------------------------------------------------------------

def per_model_files(layout: Layout, space: str) -> list[Path]:
    """The per-model result files of a space, by name (temporary files left out)."""
    try:
        with os.scandir(layout.results_dir(space)) as it:
            return sorted(Path(e.path) for e in it if e.name.endswith(".parquet")
                          and not e.name.startswith(".") and e.is_file())
    except FileNotFoundError:
        return []


def segments(layout: Layout, space: str) -> list[tuple[int, Path]]:
    """(generation, path) of a space's segments, newest first."""
    try:
        names = os.listdir(layout.segments_dir(space))
    except FileNotFoundError:
        return []
    gens = [int(n[:-8]) for n in names if n.endswith(".parquet") and n[:-8].isdigit()]
    return [(g, layout.segment_path(space, g)) for g in sorted(gens, reverse=True)]


def read_segments(layout: Layout, space: str, columns=None
                  ) -> tuple[list[tuple[int, pa.Table]], list[Damaged], list[Path]]:
    """(generation, table) of every segment of a space, oldest first, with the intact row
    groups of damaged ones; the damaged ones; the paths read. Listed and read again when a
    compaction removes a segment being read."""
    for _ in range(20):
        parts, bad, paths = [], [], []
        for gen, path in reversed(segments(layout, space)):
            try:
                parts.append((gen, read_file(path, columns)))
            except FileNotFoundError:
                break
            except DamagedFileError as e:
                table, d = salvage(path, e.reason, columns)
                bad.append(d)
                if table is not None:
                    parts.append((gen, table))
            paths.append(path)
        else:
            return parts, bad, paths
    raise DseError(f"the results of {space} in {layout.root} kept changing while being read "
                   "(a compaction in a loop?); run the command again")


# ---- reading ----------------------------------------------------------------------------------

LOOSE = 1 << 62  # the rank of a per-model file: over every segment


def latest(parts: list[tuple[int, pa.Table]], compacting: bool = False) -> pa.Table:
    """The rows of (rank, table) parts, one per result key: the highest rank (per-model files
    LOOSE, a segment its generation), then the latest finished_at, then the last."""
    table = _concat([t for _, t in parts], compacting)
    key = list(RESULT_KEY)
    if table.group_by(key).aggregate([]).num_rows == table.num_rows:
        return table
    rank = np.concatenate([np.full(t.num_rows, r, dtype=np.int64) for r, t in parts])
    t = table.column("finished_at").cast(pa.int64()).fill_null(np.iinfo(np.int64).min)
    order = np.lexsort((np.arange(table.num_rows), t.to_numpy(), rank))
    keys = table.select(key).take(order).to_pandas()
    return table.take(np.sort(order[~keys.duplicated(keep="last").to_numpy()]))


def _concat(tables: list[pa.Table], compacting: bool) -> pa.Table:
    """The tables as one; columns outside the schema that disagree in type are left out of a
    read, and stop a compaction (which would remove the files that hold them)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        if compacting:
            raise DseError(f"cannot fold the result files together: columns that the store's "
                           f"schema does not name disagree in type ({why(e)}); move the file "
                           "that differs out of results/ and compact again") from None
        return pa.concat_tables([t.select([n for n in t.column_names
                                           if n in RESULTS_SCHEMA.names]) for t in tables],
                                promote_options="permissive")


def scan(layout: Layout, space: str, columns: tuple[str, ...] | None = None) -> Scan:
    """Every readable result of a space, once each (only `columns` and the key, status and
    finished_at, when given), and the files that cannot be read whole."""
    parts, damaged = [], []
    for f in per_model_files(layout, space):  # before the segments: see the module's doc
        try:
            t = read_file(f)
        except FileNotFoundError:
            continue
        except DamagedFileError as e:
            damaged.append(Damaged(f, e.reason))
            continue
        parts.append((LOOSE, t if columns is None else t.select(
            list(dict.fromkeys((*_NEEDED, *columns))))))
    files = len(parts)
    segs, bad, paths = read_segments(layout, space, columns)
    parts = segs + parts
    if not parts:
        empty = RESULTS_SCHEMA.empty_table()
        table = empty if columns is None else empty.select(list(dict.fromkeys((*_NEEDED,
                                                                                *columns))))
    else:
        table = latest(parts)
    return Scan(table, tuple(bad + damaged), files, tuple(paths))


def status_of(layout: Layout, space: str, trial: str, seen: dict) -> str | None:
    """The status of a trial's result (None without one, DAMAGED if its file is unreadable):
    its per-trial file (or the model's file written before trials), else the space's segments
    (their statuses kept in `seen` until a segment changes). A bare model id asks for any
    result of the model."""
    model_id, recipe, seed = parse_trial(trial)
    names = [trial, model_id] if recipe is not None else [trial] + sorted(
        p.stem for p in layout.results_dir(space).glob(f"{trial}-*-s*.parquet"))
    for name in names:
        try:
            t = read_file(layout.result_path(space, name))
        except FileNotFoundError:
            continue  # none, or absorbed by a segment that is in place already
        except DamagedFileError:
            if name == trial or recipe is None:
                return DAMAGED
            continue
        own = [trial_id(*k) for k in zip(*(t.column(c).to_pylist() for c in RESULT_KEY))]
        hit = [st for k, st, m in zip(own, t.column("status").to_pylist(),
                                      t.column("model_id").to_pylist())
               if k == trial or (recipe is None and m == trial)]
        if hit:
            return hit[-1]
    ident = []
    for _gen, path in segments(layout, space):
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(path)
            ident.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    if seen.get(space, (None,))[0] != ident:
        parts = read_segments(layout, space, ())[0]
        by_trial, by_model = {}, {}
        for _gen, t in parts:  # oldest first: a newer segment's row wins
            cols = [t.column(c).to_pylist() for c in (*RESULT_KEY, "status")]
            by_trial.update((trial_id(m, r, sd), x) for m, r, sd, x in zip(*cols))
            by_model.update(zip(cols[0], cols[3]))
        seen[space] = (ident, by_trial, by_model)
    return seen[space][1 if recipe is not None else 2].get(trial)


# ---- damaged files ---------------------------------------------------------------------------

def _readable_result(path: Path) -> bool:
    """Whether a result file can be read against the schema (a vanished one counts as
    readable: there is nothing to set aside)."""
    try:
        read_file(path)
        return True
    except FileNotFoundError:
        return True
    except DamagedFileError:
        return False


def set_aside(layout: Layout, space: str, path: Path, store=None) -> Path:
    """Move an unreadable result file or segment to <space>/damaged/ (never deleting it);
    returns where it went."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    name = (f"segment-{path.stem}" if path.parent == layout.segments_dir(space) else path.stem)
    dst = layout.damaged_dir(space) / f"{name}.{stamp}.parquet"
    with writing(dst, store):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dst)
    return dst
