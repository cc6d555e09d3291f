"""The population store: a directory laid out by this module alone (pure).

The layout of its files is dse.store.paths.Layout; `Store` adds every read and write; a
space's results (per-model files and bounded segments) are read by dse.store.results and
compacted by dse.store.compaction; every Parquet file is checksummed (dse.store.checksums).

Writes go to a temporary file in the same directory and are renamed into place, under the
space's lock, so a reader never sees a half-written table and a crash never loses rows; a write
the file system refuses (full, quota, read-only) is one line naming the store and its free
space (dse.files.writing). A damaged file (truncated, a checksum that fails, columns that
cannot be cast) is never changed or deleted: an unreadable result is skipped with a warning
and its model counts as untrained; an unreadable models.parquet is read from its previous
generation (dse.store.generations), else stops what needs that space. Schemas: docs/store.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import yaml

from dse import __version__
from dse.errors import DamagedFileError, DseError, DseWarning
from dse.files import REFUSED, refusal, write_atomic, write_output
from dse.space import regimes
from dse.space.regimes import Regime
from dse.store import checksums, compaction, generations, results
from dse.store.paths import Layout
from dse.store.recipes import Pick, choose, collapse, fingerprint, join, parse_trial, trial_id
from dse.store.results import DAMAGED, Compaction, Damaged
from dse.store.schema import MODELS_SCHEMA, RESULTS_SCHEMA, add_missing, definition, upgrade_models
from dse.store.status import Status

__all__ = ["DAMAGED", "DEFAULT_STORE", "Compaction", "Damaged", "Store", "needs_training",
           "write_atomic", "write_output"]
DEFAULT_STORE = "runs"


def needs_training(status: str | None, retry_failed: bool = False) -> bool:
    """Whether a model with this stored result status is to be trained (again)."""
    return status is None or status == DAMAGED or (retry_failed and status == Status.FAILED)


class Store(Layout):
    """A population store rooted at a directory (a path, another Store, or None for
    $DSE_STORE or ./runs): every path under it comes from here."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.root = Path(path or os.environ.get("DSE_STORE") or DEFAULT_STORE)
        self._seen: dict = {}  # space → the newest segment's statuses (result_status)

    @classmethod
    def existing(cls, path: str | os.PathLike | None = None) -> Store:
        """The store at `path` ($DSE_STORE, ./runs), which must exist."""
        store = cls(path)
        if not store.root.is_dir():
            raise DseError(f"store {store.root} does not exist; sample models into it first "
                           f"(dse sample --store {store.root}), or name another store")
        return store

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    def __fspath__(self) -> str:  # a Store is also its directory: Path(store), Store(store)
        return str(self.root)

    @contextlib.contextmanager
    def lock(self, space: str):
        """An exclusive inter-process lock on a space's directory."""
        d = self.space_dir(space)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            if e.errno in REFUSED:
                raise refusal(e, d / ".lock", self.root) from None
            raise DseError(f"cannot write to store {self.root}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---- spaces and models -----------------------------------------------------------------

    def spaces(self) -> list[str]:
        """Names of the spaces that have sampled models in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if (p / "models.parquet").is_file()
                      or (p / "models.previous.parquet").is_file())

    def read_models(self, space: str, columns: list[str] | None = None,
                    previous: bool = True) -> pd.DataFrame:
        """The sampled models of a space, all columns or only `columns` (empty frame with the
        schema's columns if none); a damaged models.parquet: dse.store.generations."""
        if not self.models_path(space).exists() and not (
                previous and self.previous_models_path(space).exists()):
            return MODELS_SCHEMA.empty_table().to_pandas()[columns or MODELS_SCHEMA.names]
        table = generations.read_models(self, space, previous)
        table = add_missing(upgrade_models(table), MODELS_SCHEMA)
        return (table.select(columns) if columns else table).to_pandas()

    def resolve(self, name: str) -> str:
        """The store's name of a space given by name, alias or YAML path."""
        have = self.spaces()
        if name in have:
            return name
        from dse.space import definition as spaces

        held = ", ".join(have) or "no spaces"
        try:
            resolved = spaces.load(name).name
        except DseError:
            raise DseError(f"unknown space {name!r}: not in store {self.root} (which holds "
                           f"{held}) and not a built-in space "
                           f"({', '.join(spaces.valid_names())})") from None
        if resolved not in have:
            raise DseError(f"no {resolved} models in store {self.root} (it holds {held}); "
                           f"run `dse sample --space {resolved}` first")
        return resolved

    def space_record(self, space: str) -> dict:
        """The space's record (space.yaml): name, dataset, source, definition, task, data;
        {} when there is none."""
        path = self.definition_path(space)
        if not path.is_file():
            return {}
        try:
            rec = yaml.safe_load(path.read_text()) or {}
            if not isinstance(rec, dict):
                raise AttributeError("not a mapping")
            return rec
        except (yaml.YAMLError, OSError, AttributeError) as e:
            raise DseError(f"{path} is not a readable space record ({e}); restore it from a "
                           "copy") from None

    def data_record(self, space: str) -> dict:
        """What space.yaml records about the space's data: {} for the built-in datasets;
        for folder the directory, classes and image counts at sampling (dse.data.folders)."""
        return self.space_record(space).get("data") or {}

    def add_models(self, space, dataset: str, task, rows, seed: int,
                   data: dict | None = None, regime: Regime | None = None) -> pd.DataFrame:
        """Append sampled rows to the space's models.parquet; returns the rows added.

        `rows` is a list of row dicts, or a function of the set of stored model ids returning
        one; the function runs under the space's lock, so concurrent samplers never collide.
        Rows whose model_id is already stored are skipped. The space's definition, dataset,
        task and `data` (where a folder dataset lives, its classes) are recorded in
        space.yaml on first use; adding models drawn from a different definition of the same
        name, for another dataset, task or data, is refused so a population stays one.
        Every row is labelled with its flop `regime` (dse.space.regimes.resolve: the stored
        regime of that name or window, else a new one that overlaps none; None: no label,
        as models sampled before regimes were recorded)."""
        try:
            return self._add_models(space, dataset, task, rows, seed, data or {}, regime)
        except OSError as e:
            raise DseError(f"cannot write to store {self.root}: {e.strerror or e}") from None

    def _add_models(self, space, dataset, task, rows, seed, data, regime):
        d, spec_path = self.space_dir(space.name), self.definition_path(space.name)
        with self.lock(space.name):
            config = definition(space.config)
            task_rec = {k: getattr(task, k) for k in ("resolution", "stem", "in_channels",
                                                      "num_classes")}
            if spec_path.exists():
                stored = yaml.safe_load(spec_path.read_text()) or {}
                if stored.get("definition") != config:
                    raise DseError(f"{d} holds models of a different definition of space "
                                   f"'{space.name}' ({spec_path}); use another store or name")
                if stored.get("dataset") != dataset:
                    raise DseError(f"{d} holds {stored.get('dataset')} models; sample "
                                   f"{dataset} models into another store")
                if stored.get("task", task_rec) != task_rec:
                    raise DseError(f"{d} holds models for {_task_text(stored['task'])}, not "
                                   f"{_task_text(task_rec)}; sample these into another store")
                old_classes = (stored.get("data") or {}).get("classes")
                if old_classes is not None and old_classes != data.get("classes"):
                    raise DseError(f"{d} holds models for the classes of "
                                   f"{stored['data'].get('dir')}, which differ from those of "
                                   f"{data.get('dir')}; sample into another store")
            old = self.read_models(space.name, previous=False)
            if regime is not None:
                regime = regimes.resolve(regime, regimes.stored(old), space.name)
            have = set(old["model_id"])
            if callable(rows):
                rows = rows(frozenset(have))
            rows = [r for r in rows if r["model_id"] not in have]
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            new = pd.DataFrame([{
                **{f.name: None for f in MODELS_SCHEMA},
                **r, "space": space.name, "kind": space.kind, "dataset": dataset,
                "resolution": r.get("resolution", task.resolution), "stem": task.stem,
                "in_channels": task.in_channels, "num_classes": task.num_classes,
                "seed": seed, "sample_index": len(old) + i, "sampled_at": now,
                "dse_version": __version__, **_regime_columns(regime)}
                for i, r in enumerate(rows)],
                columns=MODELS_SCHEMA.names)
            table = pa.concat_tables([
                pa.Table.from_pandas(old, schema=MODELS_SCHEMA, preserve_index=False),
                pa.Table.from_pandas(new, schema=MODELS_SCHEMA, preserve_index=False)])
            if not spec_path.exists():
                text = yaml.safe_dump({"name": space.name, "dataset": dataset,
                                       "source": space.source, "definition": config,
                                       "task": task_rec, **({"data": data} if data else {})},
                                      sort_keys=False)
                write_atomic(spec_path, lambda p: Path(p).write_text(text), self.root)
            dst = self.models_path(space.name)
            with generations.keeping_previous(self, space.name):
                write_atomic(dst, lambda p: checksums.write_verified(table, p, name=dst),
                             self.root, durable=True)
            return new

    # ---- results ---------------------------------------------------------------------------

    def write_result(self, space: str, row: dict, schema: pa.Schema = RESULTS_SCHEMA) -> Path:
        """Write one trial's result atomically as its per-trial file (named by model, recipe
        fingerprint and seed; the fingerprint is computed from the row's recipe when it has
        none); columns of `schema` missing from `row` are stored as null."""
        row = {**row, "recipe": row.get("recipe") or fingerprint(row),
               "seed": int(row.get("seed") or 0)}
        table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}], schema=schema)
        path = self.result_path(space, trial_id(row["model_id"], row["recipe"], row["seed"]))
        with self.lock(space):  # so a compaction never removes a file rewritten meanwhile
            write_atomic(path, lambda p: checksums.write_table(table, p), self.root)
        return path

    def scan_results(self, space: str) -> tuple[pd.DataFrame, list[Damaged]]:
        """Every readable result of a space as one frame, one row per result (empty with the
        schema's columns if none), and the result files that cannot be read."""
        s = self._scan(space)
        return s.table.to_pandas(), list(s.damaged)

    def read_results(self, space: str) -> pd.DataFrame:
        """Every readable result of a space, from its segments and per-model files; a damaged
        file is skipped with a warning (its intact row groups read). At rest, the same as
        pandas.read_parquet("<store>/<space>/results")."""
        frame, damaged = self.scan_results(space)
        for x in damaged:
            kept = f"; read the {x.salvaged} results of its intact row groups" * bool(x.salvaged)
            warnings.warn(f"skipped damaged result file {x.path} ({x.reason}{kept}); `dse "
                          "train` trains what it lost again", DseWarning, stacklevel=2)
        return frame

    def statuses(self, space: str) -> dict[str, str]:
        """model_id → the status of the model's results, any recipe or seed: done when one
        finished, else the latest (diverged, failed, or damaged when unreadable)."""
        out: dict[str, str] = {}
        for trial, st in self.status_scan(space)[0].items():
            m = parse_trial(trial)[0]
            if out.get(m) != Status.DONE and (st != DAMAGED or m not in out):
                out[m] = st
        return out

    def trial_statuses(self, space: str) -> dict[str, str]:
        """trial id (dse.store.recipes.trial_id) → stored status; a damaged file written before
        trials appears under its bare model id (any trial of the model)."""
        return self.status_scan(space)[0]

    def status_scan(self, space: str) -> tuple[dict[str, str], list[Damaged]]:
        """trial_statuses(space), read from the key and status columns only, and the damaged
        result files (a damaged per-trial file marks its trial damaged, whatever a segment
        says)."""
        s = self._scan(space, ())
        cols = [s.table.column(c).to_pylist() for c in ("model_id", "recipe", "seed", "status")]
        out = {trial_id(m, r, sd): st for m, r, sd, st in zip(*cols)}
        out.update({x.path.stem: DAMAGED for x in s.damaged
                    if x.path.parent == self.results_dir(space)})
        return out, list(s.damaged)

    def result_status(self, space: str, trial: str) -> str | None:
        """The status of a trial's stored result (a bare model id: of any result of the
        model); None if it has none; DAMAGED if unreadable."""
        return results.status_of(self, space, trial, self._seen)

    def _scan(self, space: str, columns: tuple[str, ...] | None = None) -> results.Scan:
        self.compact_if_many(space)
        return results.scan(self, space, columns)

    def compact(self, space: str) -> Compaction:
        """Fold a space's per-model result files into one segment (dse.store.results)."""
        with self.lock(space):
            return compaction.compact(self, space, self.root)

    def compact_if_many(self, space: str, at: int | None = None) -> Compaction | None:
        """Compact a space with `at` (default results.COMPACT_AT) or more per-model result
        files; a store that cannot take the write stays as it is (readable, only slower),
        with a warning."""
        n = len(results.per_model_files(self, space))
        if n == 0 or n < (results.COMPACT_AT if at is None else at):
            return None
        try:
            return self.compact(space)
        except DseError as e:
            warnings.warn(f"{n} results of {space} stay in per-model files, which are slow to "
                          f"read ({e})", DseWarning, stacklevel=3)
            return None

    def set_aside(self, space: str, trial: str) -> Path | None:
        """Move a trial's unreadable result file (and its model's unreadable file written
        before trials) to <space>/damaged/ (never deleting it) so the trial can be trained
        again; returns where the first went (None if nothing was unreadable)."""
        model_id = parse_trial(trial)[0]
        moved = []
        with self.lock(space):
            for name in dict.fromkeys((trial, model_id)):
                path = self.result_path(space, name)
                if path.exists() and not results._readable_result(path):
                    moved.append(results.set_aside(self, space, path, self.root))
        return moved[0] if moved else None

    def load(self, spaces: list[str] | None = None, pick: Pick | None = None) -> pd.DataFrame:
        """Models joined with the results of one recipe, one row per model (left join:
        untrained models have a null status), for the named spaces (names, aliases or YAML
        paths) or every space in the store. `pick` (dse.store.recipes.Pick) names the recipe
        (default: the one with the most results over these spaces), how seeds are combined
        (default: their mean; `n_seeds` counts them, `error_sd` is their spread) and which
        epoch's error. The sampling seed stays `seed`; the training seed becomes
        `train_seed` (the first). With no names a space whose models.parquet is damaged is
        left out with a warning."""
        pick = pick or Pick()
        if spaces:
            names = list(dict.fromkeys(self.resolve(s) for s in spaces))
            models = {s: self.read_models(s) for s in names}
        else:
            models = {}
            for s in self.spaces():
                try:
                    models[s] = self.read_models(s)
                except DamagedFileError as e:
                    warnings.warn(f"left out space {s}: {e}", DseWarning, stacklevel=2)
            if not models and not self.spaces():
                raise DseError(f"store {self.root} holds no sampled models; run "
                               f"`dse sample --store {self.root}`")
        res = {s: self.read_results(s) for s in models}
        every = pd.concat(list(res.values()), ignore_index=True) if res else None
        fp = None if every is None else choose(every, pick, f" in {', '.join(res)}")
        frames = [join(m, collapse(res[s], fp, pick)) for s, m in models.items()]
        if not frames:
            frames = [join(MODELS_SCHEMA.empty_table().to_pandas(),
                           collapse(RESULTS_SCHEMA.empty_table().to_pandas(), None, pick))]
        out = pd.concat(frames, ignore_index=True)
        out["regime"] = regimes.labels(out)  # unlabelled (older stores): UNLABELLED
        return out

    # ---- cluster jobs ----------------------------------------------------------------------

    def write_job(self, name: str, record: dict, task: int | None = None) -> Path:
        """Write a submission's record (job.json), or a task's own (tasks/<task>.json)."""
        path = self.job_record_path(name) if task is None else self.task_record_path(name, task)
        return self._write_record(path, record)

    def write_run(self, name: str, record: dict) -> Path:
        """Write a training run's record (dse.runner.runs)."""
        return self._write_record(self.run_record_path(name), record)

    def _write_record(self, path: Path, record: dict) -> Path:
        return write_output(path, lambda p: Path(p).write_text(json.dumps(record, indent=1)),
                            self.root)

    def read_runs(self) -> list[dict]:
        """Every training run's record, oldest first; an unreadable one is skipped."""
        recs = [_read_json(f) for f in sorted(self.runs_dir.glob("*.json"))]
        return sorted((r for r in recs if r is not None), key=lambda r: r.get("started_at", ""))

    def read_jobs(self) -> list[dict]:
        """Every submission, oldest first, with `task_records` (task index → the task's own
        record); an unreadable record is skipped with a warning."""
        jobs = [(f, _read_json(f)) for f in sorted(self.jobs_dir.glob("*/job.json"))]
        for f, rec in (j for j in jobs if j[1] is not None):
            tasks = sorted((int(t.stem), _read_json(t)) for t in f.parent.glob("tasks/*.json"))
            rec["task_records"] = {k: r for k, r in tasks if r is not None}
        return [rec for _, rec in jobs if rec is not None]

    # ---- analysis outputs ------------------------------------------------------------------

    def fit_cache(self):
        """The cache of this store's quantized linear fits (dse.store.fitcache)."""
        from dse.store.fitcache import FitCache

        return FitCache(self.fit_cache_path, self)

    def save_table(self, space: str, name: str, df: pd.DataFrame) -> Path:
        """Write an analysis table atomically to <space>/analysis/<name>.parquet."""
        path = self.analysis_dir(space) / f"{name}.parquet"
        table = pa.Table.from_pandas(df, preserve_index=False)
        return write_output(path, lambda p: checksums.write_table(table, p), self.root)


def _task_text(t: dict) -> str:
    return (f"{t.get('resolution')}×{t.get('resolution')}×{t.get('in_channels')} inputs, "
            f"{t.get('num_classes')} classes")


def _regime_columns(regime: Regime | None) -> dict:
    if regime is None:
        return {}
    return dict(regime=regime.name, regime_lo=regime.flops.lo, regime_hi=regime.flops.hi)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"skipped unreadable job record {path} ({e})", DseWarning, stacklevel=3)
