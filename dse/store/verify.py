"""Checking a whole store (pure), as `dse verify` does: every file is read (every checksum of
the Parquet tables, dse.store.checksums; the JSON and YAML records parsed), the damaged ones
are listed with what could be salvaged of them, and per space the sampled models that hold no
readable result (what `dse train` would train). `repair` sets each damaged file aside in
<space>/damaged/ (or the store's damaged/) and rewrites what was salvaged: a damaged segment's
intact row groups go into a new segment, a damaged models table is rebuilt from its previous
generation and its own intact row groups.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import yaml

from dse.errors import DseError
from dse.files import write_atomic, writing
from dse.store import checksums, compaction, results
from dse.store.schema import MODELS_SCHEMA, add_missing, upgrade_models


@dataclass(frozen=True)
class Finding:
    """A damaged file: what it is, why, and what of it could be salvaged."""

    path: Path
    kind: str                        # result | segment | models | record | analysis
    space: str | None
    reason: str
    salvaged: int = 0                # rows still readable (Parquet tables)
    total: int | None = None         # rows it held (None: unknown, its footer is gone)

    @property
    def lost(self) -> int | None:
        return None if self.total is None else self.total - self.salvaged


@dataclass(frozen=True)
class SpaceCheck:
    """One space as a reader finds it."""

    space: str
    files: int                       # files read
    models: int                      # models readable (from the previous generation if need be)
    results: int                     # results readable
    pending: int                     # models without a readable result: `dse train` trains them


@dataclass(frozen=True)
class Report:
    """What `check` found in a store."""

    spaces: tuple[SpaceCheck, ...]
    damaged: tuple[Finding, ...]
    files: int                       # files read in all


def check(store) -> Report:
    """Read every file of `store` (a dse.store.core.Store) and report the damaged ones."""
    found: list[Finding] = []
    spaces, n = [], 0
    for space in _space_dirs(store):
        sc, fs = _check_space(store, space)
        spaces.append(sc)
        found += fs
        n += sc.files
    for path in _records(store.root, top=True):
        n += 1
        why = _record_damage(path)
        if why:
            found.append(Finding(path, "record", None, why))
    return Report(tuple(spaces), tuple(found), n)


def _space_dirs(store) -> list[str]:
    if not store.root.is_dir():
        return []
    return sorted(p.name for p in store.root.iterdir() if p.is_dir()
                  and ((p / "models.parquet").exists() or (p / "models.previous.parquet")
                       .exists() or (p / "results").is_dir()))


def _check_space(store, space: str) -> tuple[SpaceCheck, list[Finding]]:
    found, n = [], 0
    models = set()
    for path in (store.models_path(space), store.previous_models_path(space)):
        if path.exists():
            n += 1
            try:
                models |= set(checksums.read_table(path, ["model_id"]).column(0).to_pylist())
            except (checksums.Unreadable, OSError) as e:
                got = checksums.salvage(path, ["model_id"])
                if got.table is not None:
                    models |= set(got.table.column(0).to_pylist())
                found.append(Finding(path, "models", space, str(e), got.rows, got.total))
    if not store.models_path(space).exists() and store.previous_models_path(space).exists():
        found.append(Finding(store.models_path(space), "models", space, "the file is missing"))
    scan = results.scan(store, space, ())
    n += scan.files + len(scan.segments) + sum(x.path.parent == store.results_dir(space)
                                               for x in scan.damaged)
    noted = compaction.recorded_rows(store, space)
    present = {p.stem for _, p in results.segments(store, space)}
    if present <= set(noted):  # the note is current: a segment it lists and that is gone
        for stem in sorted(set(noted) - present):
            found.append(Finding(store.segments_dir(space) / f"{stem}.parquet", "segment",
                                 space, "the file is missing", 0, noted[stem]))
    for d in scan.damaged:
        kind = "segment" if d.path.parent == store.segments_dir(space) else "result"
        total = d.total if d.total is not None else (
            noted.get(d.path.stem) if kind == "segment" else 1)
        found.append(Finding(d.path, kind, space, d.reason, d.salvaged, total))
    trained = set(scan.table.column("model_id").to_pylist())
    for path in _records(store.space_dir(space)):
        n += 1
        why = _record_damage(path)
        if why:
            kind = "analysis" if path.parent.name == "analysis" else "record"
            found.append(Finding(path, kind, space, why))
    return SpaceCheck(space, n, len(models), scan.table.num_rows,
                      len(models - trained)), found


def _records(root: Path, top: bool = False):
    """The JSON, YAML and analysis files under `root` (a space, or the store's own when
    `top`), temporary and set-aside files left out."""
    if not root.is_dir():
        return
    skip = {"damaged", "results"}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if top and d == root:
            dirnames[:] = [x for x in dirnames if x in ("experiments", "jobs", "analysis")]
        dirnames[:] = sorted(x for x in dirnames if x not in skip)
        for name in sorted(filenames):
            p = d / name
            if name.startswith(".") or (not top and d == root and name.startswith("models")):
                continue
            if p.suffix in (".json", ".yaml", ".yml") or (p.suffix == ".parquet"
                                                          and d.name == "analysis"):
                yield p


def _record_damage(path: Path) -> str | None:
    """Why a record cannot be read (None: it can)."""
    try:
        if path.suffix == ".parquet":
            checksums.read_table(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            yaml.safe_load(path.read_text())
        return None
    except checksums.Unreadable as e:
        return str(e)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, yaml.YAMLError) as e:
        return " ".join(str(e).split())[:160] or type(e).__name__


# ---- repair ----------------------------------------------------------------------------------

def repair(store, report: Report) -> list[str]:
    """Set every damaged file of `report` aside and rewrite what was salvaged; returns one
    line per action."""
    done = []
    compact = sorted({f.space for f in report.damaged if f.kind == "segment"})
    for f in report.damaged:
        if f.kind == "result":
            with store.lock(f.space):
                if f.path.exists():
                    dst = results.set_aside(store, f.space, f.path, store.root)
                    done.append(f"moved {f.path} to {dst}; `dse train` trains its trial again")
        elif f.kind in ("record", "analysis"):
            if f.path.exists():
                dst = _aside(store, f.space, f.path)
                done.append(f"moved {f.path} to {dst}")
    for space in compact:
        c = store.compact(space)
        kept = (f"; what could be read of it is in {', '.join(str(x) for x in c.written)}"
                if c.written else "; nothing of it could be read")
        for p in c.set_aside:
            done.append(f"moved a damaged segment of {space} to {p}{kept}")
    for space in sorted({f.space for f in report.damaged if f.kind == "models"}):
        line = _repair_models(store, space)
        if line:
            done.append(line)
        prev = store.previous_models_path(space)
        if any(f.path == prev for f in report.damaged) and prev.exists():
            done.append(f"moved the damaged previous generation {prev} to "
                        f"{_aside(store, space, prev)}")
    return done


def _aside(store, space: str | None, path: Path) -> Path:
    """Move a damaged file into damaged/ (never deleting it); where it went."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = store.damaged_dir(space) if space else store.root / "damaged"
    rel = path.relative_to(store.space_dir(space) if space else store.root)
    dst = base / f"{'-'.join(rel.with_suffix('').parts)}.{stamp}{path.suffix}"
    with writing(dst, store.root):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dst)
    return dst


def _repair_models(store, space: str) -> str | None:
    """A damaged models.parquet rebuilt from its previous generation and its own intact row
    groups (one row per model, in sampling order); the damaged one set aside."""
    cur, prev = store.models_path(space), store.previous_models_path(space)
    with store.lock(space):
        parts = []
        if cur.exists():
            try:
                checksums.read_table(cur)
                return None  # readable after all (repaired meanwhile)
            except checksums.Unreadable:
                got = checksums.salvage(cur)
                if got.table is not None:
                    parts.append(got.table)
        try:
            if prev.exists():
                parts.append(checksums.read_table(prev))
        except checksums.Unreadable:
            pass
        if not parts:
            return (f"could not rebuild {cur}: nothing of it and no previous generation can be "
                    "read; restore it from a copy")
        tables = [add_missing(upgrade_models(t), MODELS_SCHEMA).select(MODELS_SCHEMA.names)
                  .cast(MODELS_SCHEMA) for t in parts]
        merged = pa.concat_tables(tables).to_pandas()
        merged = merged.drop_duplicates("model_id").sort_values("sample_index", kind="stable")
        table = pa.Table.from_pandas(merged, schema=MODELS_SCHEMA, preserve_index=False)
        moved = _aside(store, space, cur) if cur.exists() else None
        write_atomic(cur, lambda p: checksums.write_verified(table, p, name=cur), store.root,
                     durable=True)
    src = "its previous generation" + (" and its intact row groups" if len(parts) > 1 else "")
    return (f"rebuilt {cur} from {src}: {table.num_rows} models"
            + (f"; the damaged one is at {moved}" if moved else ""))


def summary_error(store, report: Report) -> DseError:
    """The one-line error of a store with damaged files."""
    n = len(report.damaged)
    lost = sum(f.lost or 0 for f in report.damaged if f.kind in ("result", "segment"))
    unknown = any(f.lost is None for f in report.damaged if f.kind in ("result", "segment"))
    what = f"{lost:,}{' or more' if unknown else ''} results lost"
    return DseError(f"{n} damaged file{'s' * (n != 1)} in store {store.root} ({what}); "
                    f"`dse verify --repair --store {store.root}` sets them aside and rewrites "
                    "what was salvaged; `dse train` then trains the lost trials again")
