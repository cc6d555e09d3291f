"""The population store (pure): `paths.Layout` names every file under a store directory,
`core.Store` reads and writes them (models, results, leases, damaged files, analysis
outputs, experiment and cluster-job records), `results` reads a space's results (per-model
files and compacted segments) against the schema and compacts them, `schema` defines their
columns, `selections` keeps the models a `dse train --top/--sample` chose."""

from dse.store.core import DAMAGED, DEFAULT_STORE, Store, needs_training

__all__ = ["DAMAGED", "DEFAULT_STORE", "Store", "needs_training"]
