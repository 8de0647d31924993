"""Turning the caller's ``conn=`` (psycopg or SQLAlchemy) into the psycopg connection under it."""

from __future__ import annotations

from typing import Any

import psycopg

from jobqueue import InvalidJobError


def psycopg_connection_of(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection behind ``conn``, whose open transaction an insert will join.

    Accepts a psycopg ``Connection``, a SQLAlchemy ``Connection`` or ``Session``
    (on the ``postgresql+psycopg`` dialect), or a Django database connection
    (``django.db.connection``, ``connections[alias]``). A SQLAlchemy session or connection
    that has not begun a transaction yet begins one, as any statement would, so
    its ``commit()`` / ``rollback()`` covers the insert.
    """
    if isinstance(conn, psycopg.Connection):
        return conn
    from jobworker_pg.contrib.django._connection import is_django_connection, psycopg_connection

    if is_django_connection(conn):
        return psycopg_connection(conn)
    try:  # SQLAlchemy is optional (the [sqlalchemy] extra): without it conn cannot be one of its
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session
    except ImportError:
        SAConnection = Session = None  # type: ignore[assignment,misc]
    if Session is not None and isinstance(conn, Session):
        conn = conn.connection()
    if SAConnection is not None and isinstance(conn, SAConnection):
        if not conn.in_transaction():
            # Statements on the driver connection do not autobegin SQLAlchemy's transaction;
            # without this, conn.commit() would be a no-op and the pool's reset would roll back.
            conn.begin()
        driver = conn.connection.driver_connection
        if isinstance(driver, psycopg.Connection):
            return driver
        raise InvalidJobError(
            "conn= is a SQLAlchemy connection on another driver "
            f"({type(driver).__module__}.{type(driver).__name__}); "
            "use the psycopg 3 dialect: create_engine('postgresql+psycopg://...')"
        )
    raise InvalidJobError(
        "conn= must be a psycopg Connection, a SQLAlchemy Connection or Session, or a Django connection, "
        f"got {type(conn).__module__}.{type(conn).__name__}"
    )
