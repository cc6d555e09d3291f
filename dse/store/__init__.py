"""The population store (pure): `paths.Layout` names every file under a store directory,
`core.Store` reads and writes them (models, results, leases, damaged files, analysis
outputs, experiment and cluster-job records), `results` reads a space's results (per-model
files and bounded segments) against the schema, `compaction` folds them into segments,
`checksums` writes and checks every Parquet file, `generations` keeps the models table's
previous generation, `verify` checks a whole store (`dse verify`), `schema` defines the
columns, `status` how a training ended, `selections` keeps the models a `dse train
--top/--sample` chose. Importing the package loads none of them: its names are read from
`core` when first used, so `dse.store.status` stays free of pandas."""

__all__ = ["DAMAGED", "DEFAULT_STORE", "Store", "needs_training"]


def __getattr__(name: str):
    if name in __all__:
        from dse.store import core

        return getattr(core, name)
    raise AttributeError(f"module 'dse.store' has no attribute {name!r}")
