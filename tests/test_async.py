"""Async producers: add_async / add_many_async / add_bundle_async / get_job_async with psycopg
AsyncConnection, SQLAlchemy AsyncSession and AsyncConnection, and without a connection."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from helpers import KINDS, Notifications
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import jobqueue
from jobqueue import InvalidJobError, JobDesc, JobNotFoundError, NotInitializedError
from jobworker_pg import PostgresService

OPS = ["add", "add_many", "add_bundle"]

Conn = tuple[Any, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]


def count_jobs(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("select count(*) from worker.job").fetchone()
        assert row is not None
        return int(row[0])


@contextlib.asynccontextmanager
async def open_conn(kind: str, url: str) -> AsyncIterator[Conn]:
    """(conn, commit, rollback) for a fresh async transaction of ``kind``."""
    if kind == "psycopg":
        async with await psycopg.AsyncConnection.connect(url) as conn:
            yield conn, conn.commit, conn.rollback
        return
    engine = create_async_engine(
        "postgresql+psycopg://", async_creator=lambda: psycopg.AsyncConnection.connect(url)
    )
    try:
        if kind == "sa_session":
            async with AsyncSession(engine) as session:
                yield session, session.commit, session.rollback
        else:
            async with engine.connect() as connection:
                yield connection, connection.commit, connection.rollback
    finally:
        await engine.dispose()


async def add(op: str, conn: Any) -> None:
    if op == "add":
        await jobqueue.add_async(jobqueue.new_job("t", "o", 1), conn=conn)
    elif op == "add_many":
        await jobqueue.add_many_async([jobqueue.new_job("t", "o", i) for i in range(3)], conn=conn)
    else:
        bundle = jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(2)])
        await jobqueue.add_bundle_async(bundle, conn=conn)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_async_add_in_rolled_back_transaction_leaves_no_row_and_no_notification(
    current: PostgresService, db_url: str, kind: str, op: str
) -> None:
    async def scenario() -> None:
        async with open_conn(kind, db_url) as (conn, _, rollback):
            await add(op, conn)
            await rollback()

    listen = Notifications(db_url)
    try:
        asyncio.run(scenario())
        assert listen.collect() == []
    finally:
        listen.close()
    assert count_jobs(db_url) == 0


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_async_add_in_open_transaction_is_claimable_only_after_commit(
    current: PostgresService, db_url: str, kind: str, op: str
) -> None:
    async def scenario() -> None:
        async with open_conn(kind, db_url) as (conn, commit, _):
            await add(op, conn)
            assert await asyncio.to_thread(current.claim_jobs, ["t"], 10) == []
            await commit()

    asyncio.run(scenario())
    assert current.claim_jobs(["t"], 10) != []


def test_get_job_async_in_the_transaction_sees_its_uncommitted_job(
    current: PostgresService, db_url: str
) -> None:
    async def scenario() -> None:
        async with open_conn("sa_session", db_url) as (session, _, rollback):
            job = await jobqueue.add_async(jobqueue.new_job("t", "o", {"k": 1}), conn=session)
            assert (await jobqueue.get_job_async(job.id, conn=session)).payload == {"k": 1}
            with pytest.raises(JobNotFoundError):
                await jobqueue.get_job_async(job.id)  # another connection: not committed
            await rollback()

    asyncio.run(scenario())


def test_async_add_without_conn_stores_and_reads_back(current: PostgresService) -> None:
    async def scenario() -> list[Any]:
        jobs = await asyncio.gather(*(jobqueue.add_async(jobqueue.new_job("t", "o", i)) for i in range(20)))
        many = await jobqueue.add_many_async([jobqueue.new_job("t", "o", "m")])
        bundle = await jobqueue.add_bundle_async(
            jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload="b")])
        )
        return [await jobqueue.get_job_async(j.id) for j in [*jobs, *many, *bundle.jobs]]

    got = asyncio.run(scenario())
    assert [j.payload for j in got] == [*range(20), "m", "b"]
    assert all(j.created_at is not None for j in got)


def test_async_add_without_conn_does_not_block_the_event_loop(
    current: PostgresService, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread: list[int] = []
    db_threads: set[int] = set()
    real_add = current.add_job

    def add_job(job: Any, *, conn: Any = None) -> Any:
        db_threads.add(threading.get_ident())
        return real_add(job, conn=conn)

    monkeypatch.setattr(current, "add_job", add_job)

    async def scenario() -> None:
        loop_thread.append(threading.get_ident())
        await jobqueue.add_async(jobqueue.new_job("t", "o", None))

    asyncio.run(scenario())
    assert db_threads and loop_thread[0] not in db_threads


@pytest.mark.parametrize("kind", KINDS)
def test_async_invalid_job_raises_before_sql_and_keeps_the_transaction_usable(
    current: PostgresService, db_url: str, kind: str
) -> None:
    bad = jobqueue.new_job("t", "o", None)
    bad.type = ""

    async def scenario() -> None:
        async with open_conn(kind, db_url) as (conn, commit, _):
            await jobqueue.add_async(jobqueue.new_job("t", "o", 1), conn=conn)
            with pytest.raises(InvalidJobError, match="job type must not be empty"):
                await jobqueue.add_async(bad, conn=conn)
            with pytest.raises(InvalidJobError, match=r"jobs\[1\]: job type must not be empty"):
                await jobqueue.add_many_async([jobqueue.new_job("t", "o", 2), bad], conn=conn)
            with pytest.raises(InvalidJobError, match="job id must be a UUID"):
                await jobqueue.get_job_async("nope", conn=conn)  # type: ignore[arg-type]
            await commit()

    asyncio.run(scenario())
    assert count_jobs(db_url) == 1


def test_async_failed_insert_keeps_the_transaction_usable(current: PostgresService, db_url: str) -> None:
    async def scenario() -> None:
        async with open_conn("psycopg", db_url) as (conn, commit, _):
            first = await jobqueue.add_async(jobqueue.new_job("t", "o", 1), conn=conn)
            with pytest.raises(jobqueue.DatabaseError, match="UniqueViolation"):
                await jobqueue.add_many_async([jobqueue.new_job("t", "o", 2, id=first.id)], conn=conn)
            await commit()

    asyncio.run(scenario())
    assert count_jobs(db_url) == 1


def test_sync_connection_given_to_an_async_add_is_rejected(current: PostgresService, db_url: str) -> None:
    async def scenario() -> None:
        with psycopg.connect(db_url) as conn:
            with pytest.raises(InvalidJobError, match="synchronous connection or session goes to the sync"):
                await jobqueue.add_async(jobqueue.new_job("t", "o", None), conn=conn)
            with pytest.raises(InvalidJobError, match=r"AsyncSession, got builtins\.object"):
                await jobqueue.add_async(jobqueue.new_job("t", "o", None), conn=object())

    asyncio.run(scenario())


def test_async_add_before_set_up_raises_not_initialized() -> None:
    async def scenario() -> None:
        with pytest.raises(NotInitializedError, match="add_job_async"):
            await jobqueue.add_async(jobqueue.new_job("t", "o", None))

    jobqueue.set_default_service(None)
    asyncio.run(scenario())


def test_async_get_job_of_unknown_id_raises_not_found(current: PostgresService, db_url: str) -> None:
    async def scenario() -> None:
        with pytest.raises(JobNotFoundError):
            await jobqueue.get_job_async(uuid4())
        async with open_conn("psycopg", db_url) as (conn, _, rollback):
            with pytest.raises(JobNotFoundError):
                await jobqueue.get_job_async(uuid4(), conn=conn)
            await rollback()

    asyncio.run(scenario())


def test_async_session_commits_its_own_rows_and_the_job_together(
    current: PostgresService, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("create table orders (id int primary key)")

    async def scenario() -> Any:
        async with open_conn("sa_session", db_url) as (session, commit, _):
            await session.execute(text("insert into orders values (1)"))
            job = await jobqueue.add_async(jobqueue.new_job("ship", "orders", 1), conn=session)
            await commit()
            return job

    job = asyncio.run(scenario())
    with psycopg.connect(db_url) as c:
        assert c.execute("select count(*) from orders").fetchone() == (1,)
    assert current.get_job(job.id).payload == 1
