"""``jobqueue embedded status|url|stop``: the embedded PostgreSQL used when no URL is given."""

from __future__ import annotations

import click

from jobworker_pg._embedded import EMBEDDED_DIR_ENV, embedded_status, stop_embedded
from jobworker_pg.cli._target import embedded_target


@click.group()
def embedded() -> None:
    """The embedded PostgreSQL that commands use when no database URL is given.

    It lives in the user's data directory (or $JOBQUEUE_EMBEDDED_DIR), starts on
    first use and keeps running for the next command until `jobqueue embedded stop`.
    """


@embedded.command("status")
def status() -> None:
    """Say where the embedded server lives and whether it runs (does not start it)."""
    state = embedded_status()
    click.echo(f"directory: {state.directory}  (${EMBEDDED_DIR_ENV} overrides it)")
    if state.running:
        click.echo(f"state:     running (pid {state.pid})")
        click.echo(f"url:       {state.url}")
    else:
        click.echo(f"state:     {'stopped' if state.initialized else 'not created yet'}")


@embedded.command("url")
def url() -> None:
    """Print the embedded database's URL, starting the server if needed.

    For example: export DATABASE_URL="$(jobqueue embedded url)"
    """
    click.echo(embedded_target().url)


@embedded.command("stop")
def stop() -> None:
    """Stop the embedded server (it starts again on the next command that needs it)."""
    click.echo("stopped" if stop_embedded() else "not running")
