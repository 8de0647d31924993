"""Django's database connection as a ``conn=`` for jobqueue, and as a URL for the worker.

``jobqueue.add(job, conn=django.db.connection)`` inserts on the psycopg 3 connection under
Django's: inside ``transaction.atomic()`` the job commits or rolls back with the block;
outside, Django's connection is in autocommit and the job is stored at once, as Django's
own writes are.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from jobqueue import InvalidJobError


def is_django_connection(conn: Any) -> bool:
    """Whether ``conn`` looks like a Django ``DatabaseWrapper`` (or ``django.db.connection``,
    a proxy to one), without importing Django."""
    return hasattr(conn, "ensure_connection") and hasattr(conn, "settings_dict") and hasattr(conn, "vendor")


def psycopg_connection(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection under a Django database connection, connected if it was not.

    Raises InvalidJobError for a database that is not PostgreSQL or a Django on psycopg2.
    """
    alias = getattr(conn, "alias", "?")
    if conn.vendor != "postgresql":
        raise InvalidJobError(f"conn=: Django database {alias!r} is {conn.vendor}, not PostgreSQL")
    conn.ensure_connection()
    raw = conn.connection
    if not isinstance(raw, psycopg.Connection):
        raise InvalidJobError(
            f"conn=: Django database {alias!r} runs on {type(raw).__module__}, not psycopg 3; "
            "install psycopg (3), which Django 4.2+ prefers over psycopg2"
        )
    return raw


def conninfo_of(alias: str = "default") -> str:
    """A libpq connection string for Django's database ``alias``: the parameters of its live
    connection (what Django's settings and OPTIONS produced), password included."""
    from django.db import connections

    raw = psycopg_connection(connections[alias])
    params: dict[str, Any] = dict(raw.info.get_parameters())
    if raw.info.password:
        params["password"] = raw.info.password
    params.setdefault("host", raw.info.host)
    params.setdefault("port", raw.info.port)
    params.setdefault("dbname", raw.info.dbname)
    params.setdefault("user", raw.info.user)
    return make_conninfo(**params)
