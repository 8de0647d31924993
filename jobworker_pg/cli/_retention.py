"""Retention on the command line: the --keep-* options of ``jobqueue worker`` and
``jobqueue prune``, which runs one pruning round now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from jobworker import Retention
from jobworker_pg.cli._context import State, pass_state
from jobworker_pg.cli._params import FOREVER, KEEP

F = TypeVar("F", bound=Callable[..., Any])

_STATES = (
    ("succeeded", "succeeded jobs", "7d"),
    ("failed", "failed jobs", "30d"),
    ("cancelled", "cancelled jobs", "7d"),
    ("bundles", "bundles whose jobs all stopped (with their jobs)", "7d"),
)


def retention_options(fn: F) -> F:
    """Add --keep-succeeded, --keep-failed, --keep-cancelled, --keep-bundles and --no-prune,
    each also set by its environment variable (JOBQUEUE_KEEP_SUCCEEDED ..., JOBQUEUE_NO_PRUNE)
    like the other worker options."""
    for state, what, default in reversed(_STATES):
        fn = click.option(
            f"--keep-{state}",
            f"keep_{state}",
            type=KEEP,
            default=None,
            metavar="DURATION|forever",
            envvar=f"JOBQUEUE_KEEP_{state.upper()}",
            show_envvar=True,
            help=f"Delete {what} that finished longer ago than this [{default}].",
        )(fn)
    return click.option(
        "--no-prune",
        is_flag=True,
        envvar="JOBQUEUE_NO_PRUNE",
        show_envvar=True,
        help="Keep every finished job and bundle (no automatic pruning).",
    )(fn)


def retention_from(options: dict[str, Any], base: Retention | None = None) -> Retention:
    """The Retention that the --keep-* / --no-prune values (None: not given) make of ``base``."""
    retention = base or Retention()
    if options.get("no_prune"):
        return retention.replace(enabled=False)
    changes: dict[str, timedelta | None] = {}
    for state, _, _ in _STATES:
        value = options.get(f"keep_{state}")
        if value is not None:
            changes[state] = None if value == FOREVER else value
    return retention.replace(**changes)  # type: ignore[arg-type]  # keys are the _STATES names


@click.command("prune")
@retention_options
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@pass_state
def prune(state: State, /, batch_size: int, **options: Any) -> None:
    """Delete finished jobs and bundles past their retention now, as workers do every 5 minutes."""
    if options.get("no_prune"):
        raise click.UsageError("--no-prune makes prune do nothing")
    retention = retention_from(options).replace(batch_size=batch_size)
    total = 0
    while (deleted := state.service().prune_finished(retention)) is not None and deleted:
        total += deleted  # more than one call's batches were due
    if deleted is None and not total:
        raise click.ClickException("another process is pruning right now; try again later")
    click.echo(f"deleted {total} finished jobs and bundles")
