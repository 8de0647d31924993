"""The ``jobqueue`` command: migrate the schema, run workers, look at and change jobs.

The database is ``--database-url``, else $JOBQUEUE_DATABASE_URL, else
$DATABASE_URL, else an embedded PostgreSQL kept in the user's data directory
(started on first use, schema installed automatically)::

    jobqueue demo                          # a few thousand jobs through real workers
    jobqueue worker myapp.jobs --threads 8 # run the handlers myapp.jobs registers
    jobqueue status                        # counts by type and state
    jobqueue jobs --errors                 # what failed, and why
    jobqueue queues list                   # queues, their limits and jobs
    jobqueue retry JOB_ID
    jobqueue periodic list                 # schedules, last and next tick (--json)
    jobqueue dashboard                     # the web dashboard on http://127.0.0.1:8000/

Errors are one line on stderr (passwords masked) and exit code 1.
"""

from __future__ import annotations

import click

from jobworker_pg.cli._admin import COMMANDS
from jobworker_pg.cli._context import LOG_LEVELS, Group, State, configure_logging
from jobworker_pg.cli._dashboard import dashboard
from jobworker_pg.cli._demo import demo
from jobworker_pg.cli._embedded_cmd import embedded
from jobworker_pg.cli._periodic import periodic
from jobworker_pg.cli._queues_cmd import queues
from jobworker_pg.cli._retention import prune
from jobworker_pg.cli._worker import worker

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL, e.g. postgresql://user:password@host/db. Default: $JOBQUEUE_DATABASE_URL, "
    "else $DATABASE_URL, else the embedded PostgreSQL in the user's data directory.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    show_default=True,
    help="Level of the log records printed on stderr.",
)
@click.version_option(package_name="pg-jobqueue")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, log_level: str) -> None:
    """pg-jobqueue: durable background jobs on PostgreSQL."""
    configure_logging(log_level)
    state = State(database_url)
    ctx.obj = state
    ctx.call_on_close(state.close)


for _command in (*COMMANDS, periodic, prune, worker, queues, demo, embedded, dashboard):
    cli.add_command(_command)


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="jobqueue")
