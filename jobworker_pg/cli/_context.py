"""The state shared by the commands of one invocation: the database target and the service."""

from __future__ import annotations

import logging
from typing import Any

import click
import psycopg

from jobqueue import JobQueueError
from jobworker_pg._service import PostgresService
from jobworker_pg.cli._target import Target, as_click_error, check_schema, connect, resolve_target

LOG_LEVELS = ("debug", "info", "warning", "error")


class State:
    """Resolves the database once, on first need, and closes what it opened."""

    def __init__(self, database_url: str | None) -> None:
        self._database_url = database_url
        self._target: Target | None = None
        self._service: PostgresService | None = None

    @property
    def resolved(self) -> Target | None:
        """The target if it was resolved already (for error messages)."""
        return self._target

    def target(self) -> Target:
        """The database to use (see :func:`resolve_target`)."""
        if self._target is None:
            self._target = resolve_target(self._database_url)
        return self._target

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to the target (schema checked)."""
        target = self.target()
        check_schema(target)
        return connect(target)

    def service(self, **kwargs: Any) -> PostgresService:
        """The PostgresService of this invocation (schema checked first), closed at exit."""
        if self._service is None:
            target = self.target()
            check_schema(target)
            self._service = PostgresService(target.url, **kwargs)
        return self._service

    def close(self) -> None:
        """Close the service, if one was opened."""
        if self._service is not None:
            self._service.close()
            self._service = None


class Group(click.Group):
    """A click group that shows jobqueue and driver errors as one line (password masked), exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (JobQueueError, psycopg.Error) as exc:
            state = ctx.find_object(State)
            raise as_click_error(state.resolved if state else None, exc) from None


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (the CLI's own output goes to stdout)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


pass_state = click.make_pass_decorator(State)
