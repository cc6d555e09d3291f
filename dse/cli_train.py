"""`dse train` and `dse status`: registered on the `dse` group (see dse.cli)."""
