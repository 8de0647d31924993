"""``jobqueue queues``: list the queues, pause and resume them, change their limits."""

from __future__ import annotations

from datetime import timedelta

import click

from jobqueue import NO_LIMIT, QueueInfo, RateLimit
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._format import dumps, queue_json, queues_table
from jobworker_pg.cli._params import RATE


@click.group()
def queues() -> None:
    """Queues: their limits, pauses and jobs (limits apply in every worker process)."""


def _show(info: QueueInfo, as_json: bool) -> None:
    click.echo(dumps(queue_json(info)) if as_json else queues_table([info]))


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_state
def list_(state: State, as_json: bool) -> None:
    """Every queue with limits or unstopped jobs: rules, waiting and running jobs."""
    found = state.service().list_queues()
    if as_json:
        click.echo(dumps([queue_json(info) for info in found]))
    elif found:
        click.echo(queues_table(found))
    else:
        click.echo("no queues")


@queues.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the queue as JSON.")
@pass_state
def pause(state: State, name: str, as_json: bool) -> None:
    """Stop every worker from claiming jobs of queue NAME (within a second; running jobs finish)."""
    _show(state.service().configure_queue(name, paused=True), as_json)


@queues.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the queue as JSON.")
@pass_state
def resume(state: State, name: str, as_json: bool) -> None:
    """Let workers claim jobs of queue NAME again."""
    _show(state.service().configure_queue(name, paused=False), as_json)


@queues.command()
@click.argument("name")
@click.option("--concurrency", type=click.IntRange(min=1), help="At most N jobs running at once.")
@click.option("--no-concurrency", is_flag=True, help="Remove the concurrency limit.")
@click.option("--per-key", type=click.IntRange(min=1), help="At most N running jobs per concurrency_key.")
@click.option("--no-per-key", is_flag=True, help="Remove the per-key limit.")
@click.option(
    "--rate-limit", type=RATE, metavar="COUNT/DURATION", help="At most COUNT starts per DURATION (50/s)."
)
@click.option("--no-rate-limit", is_flag=True, help="Remove the rate limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the queue as JSON.")
@pass_state
def configure(
    state: State,
    name: str,
    concurrency: int | None,
    no_concurrency: bool,
    per_key: int | None,
    no_per_key: bool,
    rate_limit: tuple[int, timedelta] | None,
    no_rate_limit: bool,
    as_json: bool,
) -> None:
    """Change the limits of queue NAME; limits not named stay as they are."""
    for value, removed, option in (
        (concurrency, no_concurrency, "concurrency"),
        (per_key, no_per_key, "per-key"),
        (rate_limit, no_rate_limit, "rate-limit"),
    ):
        if value is not None and removed:
            raise click.UsageError(f"--{option} and --no-{option} exclude each other")
    info = state.service().configure_queue(
        name,
        concurrency=NO_LIMIT if no_concurrency else concurrency,
        per_key_concurrency=NO_LIMIT if no_per_key else per_key,
        rate_limit=NO_LIMIT if no_rate_limit else None if rate_limit is None else RateLimit(*rate_limit),
    )
    _show(info, as_json)
