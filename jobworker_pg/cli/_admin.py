"""Commands that look at and change jobs: migrate, status, jobs, show, retry, cancel, delete."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import click

from jobqueue import InvalidJobError, JobNotFoundError
from jobworker_pg._queries import q
from jobworker_pg._rows import job_from_row
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._format import dumps, job_details, job_json, jobs_table, status_table
from jobworker_pg.cli._params import DURATION
from jobworker_pg.cli._target import connect, migrate_schema

DEFAULT_LIMIT = 50


@click.command()
@pass_state
def migrate(state: State) -> None:
    """Create or update the worker schema (idempotent; also fine on a database set up by
    install_schema or schema/worker.sql)."""
    target = state.target()
    connect(target).close()  # the error every command gives for an unreachable database
    migrate_schema(target.url)
    click.echo(f"worker schema is up to date in {target.masked}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_state
def status(state: State, as_json: bool) -> None:
    """Count jobs by type and state (pending, scheduled, running, retrying, succeeded,
    failed, cancelled), and bundles."""
    counts = state.service().get_status()
    click.echo(dumps(counts.model_dump(mode="json")) if as_json else status_table(counts))


@click.command()
@click.option("--errors", is_flag=True, help="Only jobs whose last attempt failed (failed or retrying).")
@click.option(
    "--todo", is_flag=True, help="Only jobs that have not stopped (pending, scheduled, running, retrying)."
)
@click.option(
    "--type", "job_types", multiple=True, metavar="TYPE", help="Only jobs of this type (repeatable)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Show at most this many jobs, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of full jobs.")
@pass_state
def jobs(
    state: State, errors: bool, todo: bool, job_types: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    params = {"types": list(job_types) or None, "todo": todo, "errors": errors, "limit": limit}
    with state.connect() as conn:
        found = [job_from_row(row) for row in conn.execute(q("list_jobs"), params)]
    if as_json:
        click.echo(dumps([job_json(job) for job in found]))
    elif found:
        click.echo(jobs_table(found))
        if len(found) == limit:
            click.echo(f"(first {limit} shown; use --limit for more)", err=True)
    else:
        click.echo("no jobs")


@click.command()
@click.argument("job_id", type=click.UUID)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_state
def show(state: State, job_id: UUID, as_json: bool) -> None:
    """Show one job: its fields, payload, result and error history."""
    job = state.service().get_job(job_id)
    click.echo(dumps(job_json(job)) if as_json else job_details(job))


@click.command()
@click.argument("job_ids", nargs=-1, required=True, type=click.UUID)
@pass_state
def retry(state: State, job_ids: tuple[UUID, ...]) -> None:
    """Run jobs again from scratch (attempts, result and error cleared; history kept).

    All or none: if one id is unknown, no job is reset.
    """
    for job in state.service().reset_jobs(job_ids):
        click.echo(f"{job.id} {job.type}: reset, will run again")


@click.command()
@click.argument("job_ids", nargs=-1, required=True, type=click.UUID)
@pass_state
def cancel(state: State, job_ids: tuple[UUID, ...]) -> None:
    """Cancel jobs that have not started: they never run (running jobs cannot be cancelled)."""
    service = state.service()
    failures = 0
    for job_id in job_ids:
        try:
            before = service.get_job(job_id)
            job = before if before.stopped else service.cancel_job(job_id)
        except (JobNotFoundError, InvalidJobError) as exc:
            click.echo(f"{job_id}: {exc}", err=True)
            failures += 1
            continue
        click.echo(f"{job.id} {job.type}: {'already ' if before.stopped else ''}{job.state.value}")
    if failures:
        raise click.ClickException(f"{failures} of {len(job_ids)} jobs not cancelled")


@click.command()
@click.argument("job_ids", nargs=-1, required=True, type=click.UUID)
@pass_state
def delete(state: State, job_ids: tuple[UUID, ...]) -> None:
    """Delete jobs (a job of a bundle that had not stopped counts as stopped for it)."""
    service = state.service()
    failures = 0
    for job_id in job_ids:
        try:
            service.delete_job(job_id)
        except JobNotFoundError as exc:
            click.echo(f"{job_id}: {exc}", err=True)
            failures += 1
            continue
        click.echo(f"{job_id}: deleted")
    if failures:
        raise click.ClickException(f"{failures} of {len(job_ids)} jobs not deleted")


@click.command("delete-finished")
@click.option(
    "--older-than",
    type=DURATION,
    default=None,
    metavar="DURATION",
    help="Only jobs that stopped longer ago than this (e.g. 3600, 30m, 12h, 7d). Default: all.",
)
@click.option(
    "--bundles",
    is_flag=True,
    help="Also delete bundles whose jobs all succeeded (with their jobs) once their completion "
    "handler has run.",
)
@pass_state
def delete_finished(state: State, older_than: timedelta | None, bundles: bool) -> None:
    """Delete succeeded jobs that are not in a bundle (and with --bundles, succeeded bundles);
    failed jobs stay for inspection."""
    service = state.service()
    count = service.delete_finished_jobs(older_than)
    click.echo(f"deleted {count} finished job{'s' if count != 1 else ''}")
    if bundles:
        count = service.delete_finished_bundles(older_than)
        click.echo(f"deleted {count} finished bundle{'s' if count != 1 else ''}")


@click.command("bundle-handlers")
@click.option(
    "--remove",
    "remove_types",
    multiple=True,
    metavar="BUNDLE_TYPE",
    help="Forget this declaration (repeatable): its bundles stop enqueuing completion jobs.",
)
@pass_state
def bundle_handlers(state: State, remove_types: tuple[str, ...]) -> None:
    """List the declared durable bundle handlers: completion job retries, when a worker
    serving each last started (last seen) and its completion jobs not stopped yet. A
    handler removed from the code stays declared (and its bundles keep enqueuing
    completion jobs no worker runs) until removed here."""
    service = state.service()
    for bundle_type in remove_types:
        removed = service.remove_bundle_handler(bundle_type)
        click.echo(f"{bundle_type}: {'removed' if removed else 'not declared'}")
    if remove_types:
        return
    found = service.list_bundle_handlers()
    if not found:
        click.echo("no bundle handlers declared")
        return
    rows = [("BUNDLE TYPE", "RETRIES", "REGISTERED", "LAST SEEN", "PENDING")]
    rows += [
        (
            h.bundle_type,
            str(h.max_retry_count),
            h.registered_at.isoformat(timespec="seconds"),
            h.last_seen_at.isoformat(timespec="seconds"),
            str(h.pending_jobs),
        )
        for h in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


COMMANDS = (migrate, status, jobs, show, retry, cancel, delete, delete_finished, bundle_handlers)
