"""``jobqueue dashboard``: serve the web dashboard (needs the ``dashboard`` extra)."""

from __future__ import annotations

import logging
import os

import click

from jobworker_pg.cli._context import State, pass_state

logger = logging.getLogger(__name__)

MISSING_EXTRA = "the dashboard needs its extra: pip install 'pg-jobqueue[dashboard]'"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on."
)
@click.option(
    "--read-only", is_flag=True, help="Show everything, change nothing (no actions, refused server-side)."
)
@pass_state
def dashboard(state: State, host: str, port: int, read_only: bool) -> None:
    """Serve the web dashboard (overview, jobs, bundles, workers, /metrics).

    Set JOBQUEUE_DASHBOARD_PASSWORD to require it (HTTP Basic, any user name). Without a
    password the dashboard only listens on a loopback address; any other --host is refused.
    """
    try:
        import uvicorn

        from jobworker_pg.dashboard import PASSWORD_ENV, create_app, is_loopback
    except ImportError as exc:
        raise click.ClickException(f"{MISSING_EXTRA} ({exc})") from None
    password = os.environ.get(PASSWORD_ENV) or None
    if password is None and not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve the dashboard on {host} without a password: anyone who reaches it could "
            f"retry and delete jobs. Set {PASSWORD_ENV}, or listen on 127.0.0.1 (the default)."
        )
    target = state.target()
    state.connect().close()  # a clear error now if the database is unreachable or has no schema
    app = create_app(target.url, password=password, read_only=read_only)
    auth = "password required" if password else "no password (loopback only)"
    click.echo(
        f"jobqueue dashboard on http://{host}:{port}/ for {target.masked} ({auth}"
        f"{', read-only' if read_only else ''})",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
