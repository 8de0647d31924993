"""Installing the ``worker`` schema from ``schema/worker.sql`` (shipped as ``jobworker_pg/worker.sql``)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import psycopg

from jobworker_pg._conninfo import resolve_conninfo
from jobworker_pg._errors import translate_errors

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process installing the schema,
# because concurrent CREATE OR REPLACE FUNCTION statements fail with "tuple concurrently updated".
_INSTALL_LOCK_KEY = 0x6A6F6271  # "jobq"


def schema_sql() -> str:
    """The whole schema as SQL text (identical to ``schema/worker.sql`` in the repository)."""
    return resources.files(__package__).joinpath("worker.sql").read_text()


def install_schema(conninfo_or_conn: str | psycopg.Connection[Any] | None = None) -> None:
    """Create or update the ``worker`` schema; idempotent and safe to run concurrently.

    Takes a connection string (default: $JOBQUEUE_DATABASE_URL / $DATABASE_URL)
    or an open psycopg connection; on a connection it runs inside the current
    transaction (a savepoint), which the caller commits.
    """
    if isinstance(conninfo_or_conn, psycopg.Connection):
        _install(conninfo_or_conn)
        return
    conninfo = resolve_conninfo(conninfo_or_conn)
    with translate_errors("install_schema"), psycopg.connect(conninfo) as conn:
        _install(conn)


def _install(conn: psycopg.Connection[Any]) -> None:
    with translate_errors("install_schema"), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK_KEY,))
        # Several statements in one string: sent with the simple query protocol (no parameters).
        conn.execute(schema_sql().encode())
    logger.info("worker schema installed", extra={"action": "install_schema"})
