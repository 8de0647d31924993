"""Which database the command talks to, and turning failures into one-line errors.

Order: ``--database-url``, $JOBQUEUE_DATABASE_URL, $DATABASE_URL, else the
embedded PostgreSQL (started on first use, schema installed automatically).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from psycopg.conninfo import conninfo_to_dict

from jobqueue import JobQueueError
from jobworker_pg._conninfo import ENV_VARS, malformed_url_hint, mask_password
from jobworker_pg._embedded import ensure_embedded
from jobworker_pg._migrate import migrate
from jobworker_pg._pooler import with_prepare_threshold
from jobworker_pg._queries import q

#: Seconds to wait for a connection before saying the database is unreachable.
CONNECT_TIMEOUT = 5


@dataclass(frozen=True, slots=True)
class Target:
    """A database URL and where it came from ("--database-url", "$DATABASE_URL", "embedded")."""

    url: str
    source: str

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ``***``, safe to show."""
        return mask_password(self.url)

    @property
    def embedded(self) -> bool:
        """True for the embedded PostgreSQL."""
        return self.source == "embedded"

    def scrub(self, text: str) -> str:
        """``text`` with this URL's password (if any) masked wherever it appears."""
        text = text.replace(self.url, self.masked)
        try:
            password = conninfo_to_dict(self.url).get("password")
        except psycopg.Error:
            password = None
        if password:
            text = text.replace(str(password), "***")
        return text


def migrate_schema(url: str) -> None:
    """Bring the worker schema up to date with the alembic migrations (idempotent; a database
    set up by ``install_schema`` is recognised and stamped)."""
    migrate(url)


def resolve_target(database_url: str | None) -> Target:
    """The database to use; starts the embedded server (installing the schema on first use)
    when neither the option nor the environment names one."""
    if database_url:
        return Target(database_url, "--database-url")
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return Target(value, f"${name}")
    return embedded_target()


def embedded_target() -> Target:
    """The embedded PostgreSQL, started if needed, with the worker schema installed."""
    target = Target(ensure_embedded(), "embedded")
    with connect(target) as conn:
        installed = conn.execute(q("schema_installed")).fetchone()
    if not (installed and installed[0]):
        migrate_schema(target.url)
    return target


def connect(target: Target, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit) to ``target``; a ClickException naming the masked
    URL and what to do when it cannot connect."""
    malformed = malformed_url_hint(target.url)
    if malformed:  # libpq's own message could quote a piece of the password: not shown
        raise click.ClickException(f"cannot connect to {target.masked} (from {target.source}): {malformed}")
    try:
        return psycopg.connect(
            target.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **with_prepare_threshold(kwargs)
        )
    except psycopg.Error as exc:
        raise click.ClickException(
            f"cannot connect to {target.masked} (from {target.source}): "
            f"{_first_line(target.scrub(str(exc))).rstrip('.?')}. {_hint(target)}."
        ) from None


def check_schema(target: Target) -> None:
    """Connect once (a quick, clear failure) and make sure the worker schema is installed."""
    with connect(target) as conn:
        row = conn.execute(q("schema_installed")).fetchone()
    if not (row and row[0]):
        raise click.ClickException(
            f"the worker schema is not installed in {target.masked}; "
            f"run `jobqueue migrate` first ({_same_database(target)})"
        )


def as_click_error(target: Target | None, exc: BaseException) -> click.ClickException:
    """A one-line ClickException for a jobqueue or driver error, password masked."""
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, JobQueueError) else str(exc)
    if target is not None:
        message = target.scrub(message)
    return click.ClickException(_first_line(message))


def _same_database(target: Target) -> str:
    if target.source == "--database-url":
        return "with the same --database-url"
    if target.source.startswith("$"):
        return f"with the same {target.source}"
    return f"on {target.masked}"


def _hint(target: Target) -> str:
    if target.embedded:
        return "Try `jobqueue embedded stop`, then run the command again"
    given = "the URL given with --database-url" if target.source == "--database-url" else target.source
    return (
        f"Check {given} and that the server is running (the URL is taken from --database-url, else "
        + ", else ".join(f"${name}" for name in ENV_VARS)
        + ", else the embedded PostgreSQL is used)"
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else text
