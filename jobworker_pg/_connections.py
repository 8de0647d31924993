"""Turning the caller's ``conn=`` (psycopg or SQLAlchemy) into the psycopg connection under it."""

from __future__ import annotations

from typing import Any

import psycopg

from jobqueue import InvalidJobError


def psycopg_connection_of(conn: Any) -> psycopg.Connection[Any]:
    """The psycopg 3 connection behind ``conn``, whose open transaction an insert will join.

    Accepts a psycopg ``Connection``, a SQLAlchemy ``Connection`` or ``Session``
    (on the ``postgresql+psycopg`` dialect). A SQLAlchemy session or connection
    that has not begun a transaction yet begins one, as any statement would, so
    its ``commit()`` / ``rollback()`` covers the insert.
    """
    if isinstance(conn, psycopg.Connection):
        return conn
    try:  # SQLAlchemy is a dependency, but only look for it when needed
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - sqlalchemy is installed with us
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
        "conn= must be a psycopg Connection or a SQLAlchemy Connection or Session, "
        f"got {type(conn).__module__}.{type(conn).__name__}"
    )
