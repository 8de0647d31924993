"""What the awaitable adds and reads of :class:`PostgresService` need besides the shared
statements (:mod:`jobworker_pg._steps`), for asyncio producers (FastAPI ...).

With ``conn=`` (a psycopg ``AsyncConnection``, a SQLAlchemy ``AsyncConnection``
or ``AsyncSession`` on ``postgresql+psycopg``) the statements run on that
connection, on the caller's event loop, inside its open transaction: the job
is visible to workers, and notifies them, only when that transaction commits.

Without ``conn=`` the call runs the sync method on a thread
(``asyncio.to_thread``) with the service's one connection pool. That keeps the
event loop free without a second, loop-bound pool: one pool sizes every
caller, sync or async; nothing breaks when the loop changes (each
``asyncio.run``, each ``async_to_sync`` call of Django's asgiref gets a new
loop, and an ``AsyncConnectionPool`` belongs to the loop that opened it); and
the service needs no ``aclose()``. The thread hop costs microseconds against a
database round trip. ``to_thread`` copies the context, so
:func:`jobqueue.use_service` and the test modes hold in the thread too.

Validation (InvalidJobError) and test modes happen exactly as in the sync
methods, before any SQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from jobqueue import InvalidJobError, Job
from jobworker_pg import _testmodes as testmodes
from jobworker_pg._inserts import payloads_of


def _sqlalchemy_async_types() -> tuple[type[Any], type[Any]] | None:
    """SQLAlchemy's (AsyncSession, AsyncConnection), or None when its asyncio extension
    cannot load (it needs greenlet: ``pip install 'SQLAlchemy[asyncio]'``)."""
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    except ImportError:
        return None
    return AsyncSession, AsyncConnection


async def async_connection_of(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg 3 ``AsyncConnection`` behind ``conn``, whose open transaction an insert joins.

    Accepts a psycopg ``AsyncConnection``, a SQLAlchemy ``AsyncConnection`` or
    ``AsyncSession`` (on ``postgresql+psycopg``); a session that has not begun a
    transaction begins one, as any statement would. Anything else is an
    InvalidJobError that says what to pass.
    """
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    sa_types = _sqlalchemy_async_types()
    if sa_types is not None:
        session_type, connection_type = sa_types
        if isinstance(conn, session_type):
            conn = await conn.connection()
        if isinstance(conn, connection_type):
            if not conn.in_transaction():
                await conn.begin()  # as a statement would: then conn.commit() covers the insert
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if isinstance(driver, psycopg.AsyncConnection):
                return driver
            raise InvalidJobError(
                "conn= is a SQLAlchemy async connection on another driver "
                f"({type(driver).__module__}.{type(driver).__name__}); "
                "use the psycopg 3 dialect: create_async_engine('postgresql+psycopg://...')"
            )
    hint = ""
    if isinstance(conn, psycopg.Connection) or type(conn).__module__.startswith("sqlalchemy"):
        hint = " (a synchronous connection or session goes to the sync add functions)"
    raise InvalidJobError(
        "conn= of an async add must be a psycopg AsyncConnection or a SQLAlchemy AsyncConnection "
        f"or AsyncSession, got {type(conn).__module__}.{type(conn).__name__}{hint}"
    )


async def apply_modes(jobs: list[Job]) -> list[Job]:
    """The test modes on a thread (synchronous mode runs handlers, which may block)."""
    if not testmodes.active():
        return jobs
    return await asyncio.to_thread(testmodes.handle_jobs, jobs)


async def apply_modes_with_payloads(jobs: list[Job], payloads: list[str]) -> tuple[list[Job], list[str]]:
    """:func:`apply_modes`, keeping the payload texts of the jobs left to store."""
    if not testmodes.active():
        return jobs, payloads
    kept = await asyncio.to_thread(testmodes.handle_jobs, jobs)
    return kept, payloads_of(kept, jobs, payloads)
