"""``python -m jobworker_pg.cli``: the same as the ``jobqueue`` command."""

from jobworker_pg.cli import main

main()
