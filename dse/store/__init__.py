"""The population store (pure): `paths.Layout` names every file under a store directory,
`core.Store` reads and writes them (models, results, leases, damaged files, analysis
outputs, experiment and cluster-job records), `results` reads a space's results (per-model
files and bounded segments) against the schema, `compaction` folds them into segments,
`checksums` writes and checks every Parquet file, `generations` keeps the models table's
previous generation, `verify` checks a whole store (`dse verify`), `schema` defines the
columns."""

from dse.store.core import DAMAGED, DEFAULT_STORE, Store, needs_training

__all__ = ["DAMAGED", "DEFAULT_STORE", "Store", "needs_training"]
