"""Settings for a connection pooler (PgBouncer) between pg-jobqueue and PostgreSQL.

Behind PgBouncer in transaction pooling mode (before 1.21, or without
``max_prepared_statements``) a statement that psycopg prepared on one server connection is
not there on the next, and two clients sharing a server connection clash on the names:
``JOBQUEUE_PREPARE_THRESHOLD=none`` turns psycopg's automatic preparation off (its
``prepare_threshold``). LISTEN needs a session of its own: ``JOBQUEUE_LISTEN_DATABASE_URL``
gives the listener a direct URL (or one through a session-mode pool); without it the
listener finds LISTEN does not work and the workers poll. See docs/pgbouncer.md.
"""

from __future__ import annotations

import os
from typing import Any

from jobqueue import InvalidJobError

PREPARE_THRESHOLD_ENV = "JOBQUEUE_PREPARE_THRESHOLD"
LISTEN_URL_ENV = "JOBQUEUE_LISTEN_DATABASE_URL"


def with_prepare_threshold(connect_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``connect_kwargs`` with ``prepare_threshold`` from $JOBQUEUE_PREPARE_THRESHOLD (``none``
    or ``off``: never prepare; a number: prepare after that many runs), unless given."""
    kwargs = dict(connect_kwargs or {})
    value = os.environ.get(PREPARE_THRESHOLD_ENV, "").strip().lower()
    if "prepare_threshold" in kwargs or not value:
        return kwargs
    if value in ("none", "off"):
        kwargs["prepare_threshold"] = None
    elif value.isdigit():
        kwargs["prepare_threshold"] = int(value)
    else:
        raise InvalidJobError(
            f"${PREPARE_THRESHOLD_ENV} must be 'none' (behind PgBouncer in transaction mode) or a number, "
            f"got {value!r}"
        )
    return kwargs


def listen_conninfo(listen_url: str | None, conninfo: str) -> str:
    """Where the listener connects: ``listen_url``, else $JOBQUEUE_LISTEN_DATABASE_URL, else
    the service's own ``conninfo``."""
    return listen_url or os.environ.get(LISTEN_URL_ENV) or conninfo
