"""The statements of adding and reading jobs, written once for the sync and async paths.

Each operation is a generator that yields the statements to run (:class:`Execute`,
:class:`CopyRows`) and receives each one's first row back: it holds the SQL,
the parameters and what is made of the rows, and does no I/O. :func:`run_steps`
runs such a generator on a psycopg ``Connection``, :func:`run_steps_async` on an
``AsyncConnection``; those two small drivers are the only code that exists twice.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, TypeVar
from uuid import UUID

import psycopg

from jobqueue import Job, JobBundle, JobNotFoundError
from jobworker_pg._errors import translate_errors
from jobworker_pg._inserts import (
    COPY_MIN_JOBS,
    COPY_TYPES,
    bundle_params,
    copy_rows,
    jobs_params,
    must_open_transaction,
    set_timestamps,
)
from jobworker_pg._queries import q
from jobworker_pg._rows import job_from_row

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``query``; the step receives its first row (None when it returns none)."""

    query: LiteralString
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CopyRows:
    """COPY ``rows`` in with ``query`` (binary types ``types``); the step receives None."""

    query: LiteralString
    types: Sequence[str]
    rows: Iterator[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class FetchAll:
    """Run ``query``; the step receives all its rows (a list)."""

    query: LiteralString
    params: dict[str, Any] | None = None


Step = Execute | FetchAll | CopyRows
#: An operation: yields statements, receives each one's first row (all rows for FetchAll),
#: returns its result.
Steps = Generator[Step, Any, T]


def insert_job(job: Job, params: dict[str, Any]) -> Steps[Job]:
    """Store one checked job (``params`` from :func:`job_params`); sets its timestamps."""
    row = yield Execute(q("insert_job"), params)
    assert row is not None
    set_timestamps((job,), row[0], row[1])
    return job


def insert_jobs(
    jobs: list[Job], payloads: list[str], bundle: JobBundle | None, trace_context: Any = None
) -> Steps[None]:
    """Store checked jobs (and their ``bundle``): with COPY from COPY_MIN_JOBS on, else in
    one insert_jobs statement. Sets the timestamps of the jobs and the bundle.
    ``trace_context`` (a Jsonb, while tracing) is stored with every job."""
    if bundle is not None:
        brow = yield Execute(q("insert_bundle"), bundle_params(bundle))
        assert brow is not None
        bundle.created_at, bundle.updated_at = brow
    if len(jobs) >= COPY_MIN_JOBS:
        yield CopyRows(q("copy_jobs"), COPY_TYPES, copy_rows(jobs, payloads))
        row = yield Execute(q("transaction_now"))
        if trace_context is not None:
            yield Execute(
                q("set_trace_context"), {"trace_context": trace_context, "ids": [j.id for j in jobs]}
            )
    else:
        params = jobs_params(jobs, payloads)
        params["trace_context"] = trace_context
        row = yield Execute(q("insert_jobs"), params)
    assert row is not None
    now: datetime = row[0]
    set_timestamps(jobs, now)


def insert_jobs_atomically(jobs: list[Job], bundle: JobBundle | None, autocommit: bool) -> bool:
    """Whether :func:`insert_jobs` needs a transaction (or savepoint) around it: not when it
    is one statement on an autocommit connection, which is atomic as is."""
    return not (len(jobs) < COPY_MIN_JOBS and bundle is None and autocommit)


def get_job(job_id: UUID) -> Steps[Job]:
    """Read one job; JobNotFoundError if none."""
    row = yield Execute(q("get_job"), {"id": job_id})
    if row is None:
        raise JobNotFoundError("job", job_id)
    return job_from_row(row)


def run_steps(conn: psycopg.Connection[Any], action: str, steps: Steps[T], *, atomic: bool = False) -> T:
    """Run ``steps`` on ``conn``, errors translated; with ``atomic``, all or none (in a
    transaction on an autocommit connection, a savepoint inside the caller's)."""
    with translate_errors(action):
        if not atomic:
            return _run(conn, steps)
        if must_open_transaction(conn.autocommit, conn.info.transaction_status):
            conn.execute(q("open_transaction"))
        with conn.transaction():
            return _run(conn, steps)


def _run(conn: psycopg.Connection[Any], steps: Steps[T]) -> T:
    row: Any = None
    try:
        while True:
            step = steps.send(row)
            if isinstance(step, Execute):
                row = conn.execute(step.query, step.params).fetchone()
            elif isinstance(step, FetchAll):
                row = conn.execute(step.query, step.params).fetchall()
            else:
                with conn.cursor() as cur, cur.copy(step.query) as copy:
                    copy.set_types(step.types)
                    for r in step.rows:
                        copy.write_row(r)
                row = None
    except StopIteration as done:
        result: T = done.value
        return result


async def run_steps_async(
    conn: psycopg.AsyncConnection[Any], action: str, steps: Steps[T], *, atomic: bool = False
) -> T:
    """:func:`run_steps` on an ``AsyncConnection``."""
    with translate_errors(action):
        if not atomic:
            return await _run_async(conn, steps)
        if must_open_transaction(conn.autocommit, conn.info.transaction_status):
            await conn.execute(q("open_transaction"))
        async with conn.transaction():
            return await _run_async(conn, steps)


async def _run_async(conn: psycopg.AsyncConnection[Any], steps: Steps[T]) -> T:
    row: Any = None
    try:
        while True:
            step = steps.send(row)
            if isinstance(step, Execute):
                cursor = await conn.execute(step.query, step.params)
                row = await cursor.fetchone()
            elif isinstance(step, FetchAll):
                cursor = await conn.execute(step.query, step.params)
                row = await cursor.fetchall()
            else:
                async with conn.cursor() as cur, cur.copy(step.query) as copy:
                    copy.set_types(step.types)
                    for r in step.rows:
                        await copy.write_row(r)
                row = None
    except StopIteration as done:
        result: T = done.value
        return result
