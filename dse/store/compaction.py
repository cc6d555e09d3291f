"""Compaction of a space's results (pure: pyarrow), under the space's lock (which
dse.store.core.Store.write_result also takes); the files it reads and writes are those of
dse.store.results.

A segment holds at most SEGMENT_ROWS results, so a damaged one costs at most that many (and
with ROW_GROUP results per row group, often only some of them: dse.store.checksums salvages
the row groups that still match their checksums). One compaction:

1. reads every readable per-model file and every segment (the intact row groups of damaged
   ones);
2. picks what to rewrite: the per-model files, segments holding fewer than SEGMENT_ROWS / 2
   results (or more than SEGMENT_ROWS: a store of an earlier release), damaged segments, and
   segments that hold a result another file holds too (a newer result, or what a killed
   compaction left twice); settled segments are left as they are, so a large space is never
   rewritten whole;
3. writes those results, one row per key, as new segments of at most SEGMENT_ROWS (the
   generations after the newest), each a temporary file read back and checked against what
   was written, flushed to the disk and renamed into place;
4. only then moves damaged segments to damaged/, removes the segments it rewrote and the
   per-model files it absorbed (each only if unchanged since it read it), and notes the
   results of each segment in segments/_rows.json (for `dse verify`).

A kill -9 at any point leaves the old files, or new segments beside files whose results they
already hold; readers keep one row per key (the newest generation), and the next compaction
rewrites what is held twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dse.errors import DamagedFileError, DseError
from dse.files import write_atomic
from dse.store import checksums
from dse.store.paths import Layout
from dse.store.results import (
    LOOSE,
    Compaction,
    latest,
    per_model_files,
    read_file,
    read_segments,
    segments,
    set_aside,
)
from dse.store.schema import RESULT_KEY, RESULTS_SCHEMA

SEGMENT_ROWS = 1024    # results in one segment at most: what one damaged segment can cost
ROW_GROUP = 128        # results per row group of a segment: what salvage can tell apart
ROWS_NOTE = "_rows.json"  # what each segment held when written (a name Parquet readers skip)
STALE_TMP_S = 600.0    # a temporary file this old belongs to a writer that died


def compact(layout: Layout, space: str, store=None) -> Compaction:
    """Fold a space's readable per-model files, its small (or oversized) segments and any
    segment that shares a result with another file into new segments of at most SEGMENT_ROWS
    results, each read back and checked before anything it absorbs is removed (the caller
    holds the space's lock). Damaged per-model files stay where they are; a damaged segment's
    intact row groups are folded in and the segment goes to damaged/."""
    loose = []
    for f in per_model_files(layout, space):
        with contextlib.suppress(FileNotFoundError, DamagedFileError):
            st = os.stat(f)
            loose.append((f, (st.st_ino, st.st_mtime_ns, st.st_size), read_file(f)))
    listed = segments(layout, space)
    parts, bad, _ = read_segments(layout, space, None)
    _remove_stale_tmp(layout, space)
    bad_paths = {d.path for d in bad}
    shared = _sharing([(g, t) for g, t in parts] + [(LOOSE, t) for _, _, t in loose])
    redo = [(g, t) for g, t in parts if g in shared or layout.segment_path(space, g) in bad_paths
            or not SEGMENT_ROWS // 2 <= t.num_rows <= SEGMENT_ROWS]
    kept = sum(t.num_rows for g, t in parts if g not in {r for r, _ in redo})
    small = [t for _, t in redo if t.num_rows < SEGMENT_ROWS // 2]
    if not loose and not bad and len(redo) == len(small) <= 1:
        if set(recorded_rows(layout, space)) != {f"{g:06d}" for g, _ in parts}:
            _record_rows(layout, space, {g: t.num_rows for g, t in parts}, store)
        return Compaction(space, None, kept + sum(t.num_rows for t in small), 0, ())
    todo = redo + [(LOOSE, t) for _, _, t in loose]
    merged = latest(todo, compacting=True) if todo else RESULTS_SCHEMA.empty_table()
    written = write_segments(layout, space, merged, listed[0][0] if listed else 0, store)
    aside = [set_aside(layout, space, p, store) for p in sorted(bad_paths) if p.exists()]
    for g, _ in redo:
        p = layout.segment_path(space, g)
        if p in bad_paths:
            continue
        if _readable(p):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        else:
            aside.append(set_aside(layout, space, p, store))
    absorbed = 0
    for f, ident, _ in loose:
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(f)
            if (st.st_ino, st.st_mtime_ns, st.st_size) == ident:  # not rewritten meanwhile
                os.unlink(f)
                absorbed += 1
    rows = {g: t.num_rows for g, t in parts if g not in {r for r, _ in redo}}
    rows.update({int(p.stem): min(SEGMENT_ROWS, merged.num_rows - i * SEGMENT_ROWS)
                 for i, p in enumerate(written)})
    _record_rows(layout, space, rows, store)
    return Compaction(space, written[0] if written else None, kept + merged.num_rows,
                      absorbed, tuple(aside), tuple(written),
                      sum(1 for g, _ in redo if layout.segment_path(space, g) not in bad_paths))


def _record_rows(layout: Layout, space: str, rows: dict[int, int], store) -> None:
    """Note how many results each segment holds (segments/_rows.json), so that a segment
    damaged past reading still counts what it cost; a note that cannot be written is
    left out (nothing reads it but `dse verify`)."""
    text = json.dumps({f"{g:06d}": n for g, n in sorted(rows.items())}, indent=0)
    with contextlib.suppress(OSError, DseError):
        write_atomic(layout.segments_dir(space) / ROWS_NOTE,
                     lambda p: Path(p).write_text(text), store=store)


def recorded_rows(layout: Layout, space: str) -> dict[str, int]:
    """Segment name (stem) → results it held when written, as compaction noted them."""
    try:
        rec = json.loads((layout.segments_dir(space) / ROWS_NOTE).read_text())
        return {str(k): int(v) for k, v in rec.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _sharing(parts: list[tuple[int, pa.Table]]) -> set[int]:
    """The ranks of the parts that hold a result key another part holds too."""
    if not parts:
        return set()
    keys = pa.concat_tables([t.select(list(RESULT_KEY)).append_column(
        "_part", pa.array(np.full(t.num_rows, r, dtype=np.int64))) for r, t in parts],
        promote_options="permissive")
    per = keys.group_by(list(RESULT_KEY)).aggregate([("_part", "count_distinct")])
    twice = per.filter(pc.greater(per.column("_part_count_distinct"), 1)).select(
        list(RESULT_KEY))
    if not twice.num_rows:
        return set()
    hit = keys.join(twice, list(RESULT_KEY), join_type="inner")
    return set(pc.unique(hit.column("_part")).to_pylist())


def write_segments(layout, space: str, table: pa.Table, after: int, store=None) -> list[Path]:
    """Write `table`, sorted by the result key, as segments of at most SEGMENT_ROWS results
    numbered from generation after + 1, each atomically and read back (write_segment);
    returns their paths."""
    table = table.sort_by([(k, "ascending") for k in RESULT_KEY])
    written = []
    for gen, start in enumerate(range(0, table.num_rows, SEGMENT_ROWS), after + 1):
        path = layout.segment_path(space, gen)
        chunk = table.slice(start, SEGMENT_ROWS)
        write_atomic(path, lambda p, c=chunk: write_segment(c, Path(p)), store=store, durable=True)
        written.append(path)
    return written


def write_segment(table: pa.Table, path) -> None:
    """Write a segment and read it back: it must hold exactly `table`, every checksum
    matching, before anything it absorbs may be removed."""
    checksums.write_verified(table, path, ROW_GROUP, name=f"a new segment of {path.parent}")


def _readable(path: Path) -> bool:
    """Whether a file reads whole, every checksum matching."""
    try:
        checksums.read_table(path)
        return True
    except (checksums.Unreadable, pa.ArrowException, OSError):
        return False


def _remove_stale_tmp(layout: Layout, space: str) -> None:
    """Remove temporary files that writers killed mid-write left behind (a live writer renames
    its file within seconds, so ten minutes old is dead)."""
    now = time.time()
    for d in (layout.results_dir(space), layout.segments_dir(space)):
        with contextlib.suppress(FileNotFoundError), os.scandir(d) as it:
            for e in it:
                if e.name.startswith(".") and e.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        if now - e.stat().st_mtime > STALE_TMP_S:
                            os.unlink(e.path)
