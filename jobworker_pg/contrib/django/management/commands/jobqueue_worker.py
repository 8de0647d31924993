"""``manage.py jobqueue_worker``: run this project's tasks (the options of ``jobqueue worker``).

The database is ``--database-url``, else $JOBQUEUE_DATABASE_URL, else the backend's
OPTIONS ``DATABASE_URL``, else Django's database of the backend (OPTIONS ``DATABASE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import psycopg
from django.core.management.base import BaseCommand, CommandParser

from jobqueue import JobQueueError
from jobworker_pg.cli._target import Target, as_click_error, check_schema
from jobworker_pg.cli._worker import run_worker, worker_options
from jobworker_pg.contrib.django import _tasks_api as api
from jobworker_pg.contrib.django._backend import JobQueueBackend
from jobworker_pg.contrib.django._worker import task_registry


@click.command(context_settings={"show_default": True, "help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="JOBQUEUE_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="PostgreSQL URL. Default: the backend's OPTIONS DATABASE_URL, else Django's database "
    "of the backend (OPTIONS DATABASE).",
)
@click.option("--backend", default="default", metavar="ALIAS", help="The TASKS backend whose tasks to run.")
@worker_options
def jobqueue_worker(database_url: str | None, backend: str, **options: Any) -> None:
    """Run the project's django.tasks stored by JobQueueBackend, until SIGTERM/SIGINT.

    Django's database connections are closed around each task (as around each request):
    those that broke or outlived CONN_MAX_AGE are replaced.
    """
    from django.db import connections

    task_backend = api.task_backends()[backend]
    if not isinstance(task_backend, JobQueueBackend):
        raise click.UsageError(f"TASKS[{backend!r}] is {type(task_backend).__name__}, not JobQueueBackend")
    if database_url:
        target = Target(database_url, "--database-url")
    else:
        target = Target(task_backend.conninfo(), f"TASKS[{backend!r}]")
        connections.close_all()  # the main thread only waits for signals: hold no connection
    try:
        check_schema(target)
        run_worker(target, task_registry(), "manage.py jobqueue_worker", **options)
    except (JobQueueError, psycopg.Error) as exc:
        raise as_click_error(target, exc) from None


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type hints
    help = "Run pg-jobqueue worker threads for this project's tasks (see --help)."

    def run_from_argv(self, argv: list[str]) -> None:
        # click parses the options, so that they are exactly those of `jobqueue worker`.
        jobqueue_worker.main(args=argv[2:], prog_name=f"{Path(argv[0]).name} {argv[1]}")

    def print_help(self, prog_name: str, subcommand: str) -> None:
        # `manage.py help jobqueue_worker`: the click options, not argparse's pass-through.
        jobqueue_worker.main(args=["--help"], prog_name=f"{prog_name} {subcommand}", standalone_mode=False)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker_args", nargs="*", help="options of jobqueue worker")

    def handle(self, *args: Any, **options: Any) -> None:
        jobqueue_worker.main(args=list(options["worker_args"]), standalone_mode=False)
