"""The awaitable adds and reads of :class:`PostgresService`, for asyncio producers (FastAPI ...).

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
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from jobqueue import InvalidJobError, Job, JobBundle, JobNotFoundError
from jobqueue._constructors import check_uuid
from jobworker_pg import _testmodes as testmodes
from jobworker_pg._errors import translate_errors
from jobworker_pg._inserts import (
    COPY_MIN_JOBS,
    COPY_TYPES,
    bundle_params,
    checked_bundle_and_payloads,
    checked_jobs_and_payloads,
    copy_rows,
    job_params,
    jobs_params,
    must_open_transaction,
    payloads_of,
    set_timestamps,
)
from jobworker_pg._queries import q
from jobworker_pg._rows import job_from_row

if TYPE_CHECKING:
    from jobworker_pg._service import PostgresService


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


async def _apply_modes(jobs: list[Job]) -> list[Job]:
    """The test modes on a thread (synchronous mode runs handlers, which may block)."""
    if not testmodes.active():
        return jobs
    return await asyncio.to_thread(testmodes.handle_jobs, jobs)


async def _apply_modes_with_payloads(jobs: list[Job], payloads: list[str]) -> tuple[list[Job], list[str]]:
    """:func:`_apply_modes`, keeping the payload texts of the jobs left to store."""
    if not testmodes.active():
        return jobs, payloads
    kept = await asyncio.to_thread(testmodes.handle_jobs, jobs)
    return kept, payloads_of(kept, jobs, payloads)


async def add_job(service: PostgresService, job: Job, conn: Any) -> Job:
    """See :meth:`PostgresService.add_job_async`."""
    if conn is None:
        return await asyncio.to_thread(service.add_job, job)
    params = job_params(job)
    if not await _apply_modes([job]):
        return job
    raw = await async_connection_of(conn)
    service._check_open("add_job_async")
    with translate_errors("add_job_async"):
        cursor = await raw.execute(q("insert_job"), params)
        row = await cursor.fetchone()
    assert row is not None
    set_timestamps((job,), row[0], row[1])
    return job


async def add_jobs(service: PostgresService, jobs: Any, conn: Any) -> list[Job]:
    """See :meth:`PostgresService.add_jobs_async`."""
    if conn is None:
        return await asyncio.to_thread(service.add_jobs, jobs)
    checked, payloads = checked_jobs_and_payloads(jobs)
    to_store, payloads = await _apply_modes_with_payloads(checked, payloads)
    if to_store:
        await _insert_jobs(service, "add_jobs_async", to_store, payloads, conn)
    return checked


async def add_job_bundle(service: PostgresService, bundle: JobBundle, conn: Any) -> JobBundle:
    """See :meth:`PostgresService.add_job_bundle_async`."""
    if conn is None:
        return await asyncio.to_thread(service.add_job_bundle, bundle)
    jobs, payloads = checked_bundle_and_payloads(bundle)
    if testmodes.active() and await asyncio.to_thread(testmodes.handle_bundle, bundle):
        return bundle
    await _insert_jobs(service, "add_job_bundle_async", jobs, payloads, conn, bundle)
    return bundle


async def _insert_jobs(
    service: PostgresService,
    action: str,
    jobs: list[Job],
    payloads: list[str],
    conn: Any,
    bundle: JobBundle | None = None,
) -> None:
    # As PostgresService._insert_jobs: COPY from COPY_MIN_JOBS on, else one insert_jobs statement.
    params = None if len(jobs) >= COPY_MIN_JOBS else jobs_params(jobs, payloads)
    raw = await async_connection_of(conn)
    service._check_open(action)
    with translate_errors(action):
        if must_open_transaction(raw.autocommit, raw.info.transaction_status):
            await raw.execute(q("open_transaction"))
        async with raw.transaction():  # a savepoint inside the caller's transaction: all or none
            if bundle is not None:
                cursor = await raw.execute(q("insert_bundle"), bundle_params(bundle))
                brow = await cursor.fetchone()
                assert brow is not None
                bundle.created_at, bundle.updated_at = brow
            if params is None:
                async with raw.cursor() as cur:
                    async with cur.copy(q("copy_jobs")) as copy:
                        copy.set_types(COPY_TYPES)
                        for r in copy_rows(jobs, payloads):
                            await copy.write_row(r)
                    await cur.execute(q("transaction_now"))
                    row = await cur.fetchone()
            else:
                cursor = await raw.execute(q("insert_jobs"), params)
                row = await cursor.fetchone()
    assert row is not None
    set_timestamps(jobs, row[0])


async def get_job(service: PostgresService, job_id: UUID, conn: Any) -> Job:
    """See :meth:`PostgresService.get_job_async`."""
    if conn is None:
        return await asyncio.to_thread(service.get_job, job_id)
    job_id = check_uuid(job_id)
    raw = await async_connection_of(conn)
    service._check_open("get_job_async")
    with translate_errors("get_job_async"):
        cursor = await raw.execute(q("get_job"), {"id": job_id})
        row = await cursor.fetchone()
    if row is None:
        raise JobNotFoundError("job", job_id)
    return job_from_row(row)
