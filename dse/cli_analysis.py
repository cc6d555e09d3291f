"""Analysis commands (`dse edf`, `dse fit-linear`, ...): registered on the `dse` group."""
