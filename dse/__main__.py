"""`python -m dse`: the dse command line."""

from dse.cli import main

main()
