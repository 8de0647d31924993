"""``jobqueue periodic``: list, enable, disable, run and delete the stored periodic schedules."""

from __future__ import annotations

from collections.abc import Sequence

import click

from jobqueue import PeriodicInfo
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._format import dumps, job_json, table


def periodic_table(schedules: Sequence[PeriodicInfo]) -> str:
    """One line per schedule; an orphaned one (no worker declared it lately) says so."""
    rows = [
        [
            s.name,
            s.schedule,
            s.timezone,
            s.job_type,
            "yes" if s.enabled else "no",
            s.last_tick.isoformat(timespec="seconds") if s.last_tick else "-",
            s.next_run.isoformat(timespec="seconds") if s.next_run else "-",
            "orphaned" if s.orphaned else "",
        ]
        for s in schedules
    ]
    return table(["name", "schedule", "timezone", "job type", "enabled", "last tick", "next run", ""], rows)


@click.group()
def periodic() -> None:
    """Periodic schedules, as stored by the workers that run them (cluster-wide)."""


@periodic.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of schedules.")
@pass_state
def list_(state: State, as_json: bool) -> None:
    """List schedules: schedule, job type, enabled, last tick enqueued, next run, orphaned."""
    schedules = state.service().list_periodic()
    if as_json:
        click.echo(dumps([s.model_dump(mode="json") for s in schedules]))
    elif schedules:
        click.echo(periodic_table(schedules))
    else:
        click.echo("no periodic schedules (workers store theirs when they start)")


def _show(info: PeriodicInfo, as_json: bool, message: str) -> None:
    click.echo(dumps(info.model_dump(mode="json")) if as_json else message)


@periodic.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@pass_state
def enable(state: State, name: str, as_json: bool) -> None:
    """Enable NAME in every worker from its next tick on (missed ticks are not caught up)."""
    info = state.service().enable_periodic(name)
    next_run = info.next_run.isoformat(timespec="seconds") if info.next_run else "-"
    _show(info, as_json, f"enabled {name}; next run {next_run}")


@periodic.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@pass_state
def disable(state: State, name: str, as_json: bool) -> None:
    """Disable NAME: no worker enqueues it from now on, until enabled again."""
    _show(state.service().disable_periodic(name), as_json, f"disabled {name}")


@periodic.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_state
def run(state: State, name: str, as_json: bool) -> None:
    """Enqueue one job of NAME now (its regular ticks are unaffected)."""
    job = state.service().run_periodic_now(name)
    click.echo(dumps(job_json(job)) if as_json else f"enqueued job {job.id} of type {job.type}")


@periodic.command()
@click.argument("name")
@pass_state
def delete(state: State, name: str) -> None:
    """Forget NAME (for orphaned schedules; a worker that still runs it stores it again)."""
    state.service().delete_periodic(name)
    click.echo(f"deleted {name}")
