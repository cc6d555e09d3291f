"""The population store (pure): `paths.Layout` names every file under a store directory,
`core.Store` reads and writes them (models, results, leases, damaged files, analysis
outputs, experiment and cluster-job records), `schema` defines their columns."""

from dse.store.core import DAMAGED, DEFAULT_STORE, Store, needs_training

__all__ = ["DAMAGED", "DEFAULT_STORE", "Store", "needs_training"]
