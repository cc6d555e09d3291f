"""The population store: one directory per space holding Parquet tables (pure).

    <store>/<space>/models.parquet   one row per sampled model (MODELS_SCHEMA)
    <store>/<space>/space.yaml       the resolved space definition the models came from

Writes go to a temporary file in the same directory and are renamed into place, under an
exclusive lock, so a reader never sees a half-written table and a crash never loses rows.
The schema is documented in docs/store.md; columns are only ever added.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from dse import __version__
from dse.errors import DseError

DEFAULT_STORE = "runs"

_ints = pa.list_(pa.int64())
MODELS_SCHEMA = pa.schema([
    ("model_id", pa.string()),      # 16 hex of sha1(architecture + task)
    ("space", pa.string()),
    ("kind", pa.string()),          # anynet | regnet
    ("ds", _ints), ("ws", _ints), ("bs", _ints), ("gs", _ints),  # per stage, after rounding
    ("d", pa.int64()), ("w0", pa.int64()), ("wa", pa.float64()), ("wm", pa.float64()),
    ("group_w", pa.int64()), ("b", pa.int64()),  # RegNet parameters; null for AnyNet
    ("se_ratio", pa.float64()),
    ("stem_w", pa.int64()),
    ("flops", pa.int64()), ("params", pa.int64()), ("acts", pa.int64()),
    ("dataset", pa.string()), ("resolution", pa.int64()), ("stem", pa.string()),
    ("in_channels", pa.int64()), ("num_classes", pa.int64()),
    ("seed", pa.int64()),           # seed of the sampling run that drew the model
    ("sample_index", pa.int64()),   # position in the space's population, from 0
    ("sampled_at", pa.timestamp("ms", tz="UTC")),
    ("dse_version", pa.string()),
])


# What makes two definitions of a space the same population (titles may change freely).
DEFINITION_KEYS = ("kind", "stages", "se_ratio", "params", "shared", "non_decreasing")


def root(path: str | os.PathLike | None = None) -> Path:
    """The store directory: the given path, else $DSE_STORE, else ./runs."""
    return Path(path or os.environ.get("DSE_STORE") or DEFAULT_STORE)


def space_dir(store: Path, space: str) -> Path:
    return Path(store) / space


@contextlib.contextmanager
def locked(directory: Path):
    """An exclusive inter-process lock on a space directory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as e:
        raise DseError(f"cannot write to store {directory.parent}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Call write(tmp_path) then rename tmp onto path (same directory, so atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; store files are ordinary files
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_models(store: Path, space: str) -> pd.DataFrame:
    """The sampled models of a space (empty frame with the schema's columns if none)."""
    path = space_dir(store, space) / "models.parquet"
    if not path.exists():
        return MODELS_SCHEMA.empty_table().to_pandas()
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise DseError(f"{path} is not a readable Parquet table ({e}); it was not changed") \
            from None


def spaces_in(store: Path) -> list[str]:
    """Names of the spaces that have sampled models in the store."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if (p / "models.parquet").is_file())


def add_models(store: Path, space, dataset: str, task, rows, seed: int) -> pd.DataFrame:
    """Append sampled rows to <store>/<space>/models.parquet; returns the rows added.

    `rows` is a list of row dicts, or a function of the set of stored model ids returning
    one; the function runs under the space's lock, so concurrent samplers never collide.
    Rows whose model_id is already stored are skipped. The space's definition is recorded in
    space.yaml on first use; adding models drawn from a different definition of the same
    name, or for another dataset, is refused so that a population stays one population.
    """
    try:
        return _add_models(store, space, dataset, task, rows, seed)
    except OSError as e:
        raise DseError(f"cannot write to store {store}: {e.strerror or e}") from None


def _add_models(store, space, dataset, task, rows, seed):
    d = space_dir(store, space.name)
    with locked(d):
        spec_path = d / "space.yaml"
        config = {k: space.config.get(k) for k in DEFINITION_KEYS}
        if spec_path.exists():
            stored = yaml.safe_load(spec_path.read_text()) or {}
            if stored.get("definition") != config:
                raise DseError(f"{d} holds models of a different definition of space "
                               f"'{space.name}' ({spec_path}); use another --store or name")
            if stored.get("dataset") != dataset:
                raise DseError(f"{d} holds {stored.get('dataset')} models; sample {dataset} "
                               "models into another --store")
        old = read_models(store, space.name)
        have = set(old["model_id"])
        if callable(rows):
            rows = rows(frozenset(have))
        rows = [r for r in rows if r["model_id"] not in have]
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        new = pd.DataFrame([{
            **{f.name: None for f in MODELS_SCHEMA},
            **r, "space": space.name, "kind": space.kind, "dataset": dataset,
            "resolution": task.resolution, "stem": task.stem, "in_channels": task.in_channels,
            "num_classes": task.num_classes, "seed": seed, "sample_index": len(old) + i,
            "sampled_at": now, "dse_version": __version__} for i, r in enumerate(rows)],
            columns=MODELS_SCHEMA.names)
        table = pa.concat_tables([
            pa.Table.from_pandas(old, schema=MODELS_SCHEMA, preserve_index=False),
            pa.Table.from_pandas(new, schema=MODELS_SCHEMA, preserve_index=False)])
        if not spec_path.exists():
            text = yaml.safe_dump({"name": space.name, "dataset": dataset,
                                   "source": space.source, "definition": config},
                                  sort_keys=False)
            write_atomic(spec_path, lambda p: Path(p).write_text(text))
        write_atomic(d / "models.parquet", lambda p: pq.write_table(table, p))
        return new


# ---- training results: one Parquet file per trained model ---------------------------------
#     <store>/<space>/results/<model_id>.parquet   (RESULTS_SCHEMA, one row)

RESULTS_SCHEMA = pa.schema([
    ("model_id", pa.string()),
    ("space", pa.string()),
    ("status", pa.string()),            # done | diverged | failed
    ("error", pa.float64()),            # top-1 test error in percent; null unless done
    ("message", pa.string()),           # why it diverged or failed; empty when done
    ("epochs", pa.int64()),
    ("batch_size", pa.int64()),
    ("lr", pa.float64()),
    ("wd", pa.float64()),
    ("seed", pa.int64()),               # training seed
    ("dataset", pa.string()),
    ("train_subset", pa.int64()),       # training images used; null = the full train split
    ("train_seconds", pa.float64()),
    ("images_per_second", pa.float64()),
    ("train_loss", pa.float64()),       # mean loss of the final epoch
    ("device", pa.string()),
    ("torch_version", pa.string()),
    ("dse_version", pa.string()),
    ("finished_at", pa.timestamp("ms", tz="UTC")),
    # the rest of the recipe and how it ran (docs/training.md)
    ("momentum", pa.float64()),
    ("nesterov", pa.bool_()),
    ("warmup_epochs", pa.float64()),    # linear lr warm-up length; 0 = none (the paper)
    ("zero_init_final_gamma", pa.bool_()),  # each block's final BN γ started at 0 (paper: 1)
    ("augment", pa.bool_()),            # pad + random crop (+ flip on CIFAR-10)
    ("precision", pa.string()),         # bf16-autocast | fp32
    ("cuda_graph", pa.bool_()),         # training step replayed from a CUDA graph
    ("channels_last", pa.bool_()),      # NHWC memory format (CPU default)
    ("epochs_run", pa.int64()),         # epochs completed (fewer than epochs if diverged)
    ("host", pa.string()),
])

RESULT_STATUSES = ("done", "diverged", "failed")


def results_dir(store: Path, space: str) -> Path:
    return space_dir(store, space) / "results"


def write_result(store: Path, space: str, row: dict, schema: pa.Schema = RESULTS_SCHEMA) -> Path:
    """Write one model's result atomically to <store>/<space>/results/<model_id>.parquet.
    Columns of `schema` missing from `row` are stored as null."""
    d = results_dir(store, space)
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}], schema=schema)
    path = d / f"{row['model_id']}.parquet"
    write_atomic(path, lambda p: pq.write_table(table, p))
    return path


def read_results(store: Path, space: str) -> pd.DataFrame:
    """Every stored result of a space as one frame (empty with the schema's columns if none).
    Equivalent to pandas.read_parquet("<store>/<space>/results")."""
    d = results_dir(store, space)
    files = sorted(d.glob("*.parquet")) if d.is_dir() else []
    if not files:
        return RESULTS_SCHEMA.empty_table().to_pandas()
    try:
        tables = [pq.read_table(f) for f in files]
    except (pa.ArrowException, OSError) as e:
        raise DseError(f"a result file in {d} is not a readable Parquet table ({e})") from None
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def load(store: Path, spaces: list[str] | None = None) -> pd.DataFrame:
    """Models joined with their results (left join: untrained models have a null status),
    for the named spaces or every space in the store. The sampling seed stays `seed`; the
    training seed becomes `train_seed`."""
    store = Path(store)
    frames = []
    for name in dict.fromkeys(spaces or spaces_in(store)):
        res = read_results(store, name).drop(columns=["space", "dataset", "dse_version"])
        res = res.rename(columns={"seed": "train_seed"}).drop_duplicates("model_id", keep="last")
        frames.append(read_models(store, name).merge(res, on="model_id", how="left"))
    if not frames:
        return load(store, [""])
    return pd.concat(frames, ignore_index=True)
