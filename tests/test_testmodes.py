"""Test modes: synchronous_jobs, ignore_jobs, ignore_job_type, ignore_job_bundles; in the sync
and async add paths, nested, across asyncio tasks and threads (copy_context)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import jobqueue
import jobworker
from jobqueue import InvalidJobError, Job, JobBundle, JobDesc, JobFailedError, RegistrationError
from jobworker_pg import (
    PostgresService,
    ignore_job_bundles,
    ignore_job_type,
    ignore_jobs,
    synchronous_jobs,
)


class HandlerBroke(Exception):
    pass


def count_jobs(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("select count(*) from worker.job").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def handlers() -> Iterator[list[Any]]:
    """Registers tm.double (returns 2 x payload), tm.fail (raises HandlerBroke) and a bundle
    handler for bundles of type tm.bundle; yields the payloads the handlers saw."""
    seen: list[Any] = []

    def double(job: Job) -> Any:
        seen.append(job.payload)
        return job.payload * 2

    def fail(job: Job) -> None:
        seen.append(job.payload)
        raise HandlerBroke(f"broke on {job.payload}")

    def bundle_done(bundle: JobBundle) -> None:
        seen.append(("bundle", bundle.id, bundle.num_jobs_stopped))

    jobworker.register("tm.double", double)
    jobworker.register("tm.fail", fail)
    jobworker.register_bundle_handler("tm.bundle", bundle_done)
    try:
        yield seen
    finally:
        jobworker.unregister("tm.double", "tm.fail", jobworker.BUNDLE_JOB_PREFIX + "tm.bundle")


@pytest.fixture
def current(service: PostgresService) -> Iterator[PostgresService]:
    with jobqueue.use_service(service):
        yield service


def double(n: int) -> Job:
    return jobqueue.new_job("tm.double", "test", n)


# -- synchronous_jobs ------------------------------------------------------------------------


def test_synchronous_add_runs_the_job_inline_and_stores_nothing(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    with synchronous_jobs():
        job = jobqueue.add(double(21))
    assert job.result == 42 and job.succeeded and job.attempt == 1
    assert handlers == [21]
    assert count_jobs(db_url) == 0


def test_synchronous_failure_raises_job_failed_with_the_handler_exception_as_cause(
    current: PostgresService, handlers: list[Any]
) -> None:
    job = jobqueue.new_job("tm.fail", "test", 7, max_retry_count=3)
    with synchronous_jobs(), pytest.raises(JobFailedError, match="broke on 7") as info:
        jobqueue.add(job)
    assert isinstance(info.value.__cause__, HandlerBroke)
    assert str(info.value.__cause__) == "broke on 7"
    assert (info.value.job_id, info.value.job_type) == (job.id, "tm.fail")
    assert handlers == [7]  # run once: no retries inline


def test_synchronous_add_many_runs_each_in_order_and_stops_at_the_first_failure(
    current: PostgresService, handlers: list[Any]
) -> None:
    with synchronous_jobs():
        jobs = jobqueue.add_many([double(1), double(2)])
        assert [j.result for j in jobs] == [2, 4]
        with pytest.raises(JobFailedError) as info:
            jobqueue.add_many([double(3), jobqueue.new_job("tm.fail", "test", 4), double(5)])
    assert isinstance(info.value.__cause__, HandlerBroke)
    assert handlers == [1, 2, 3, 4]


def test_synchronous_job_stopped_listeners_fire_inline(current: PostgresService, handlers: list[Any]) -> None:
    stopped: list[tuple[Any, bool]] = []

    def listener(job: Job, will_retry: bool) -> None:
        stopped.append((job.result, will_retry))

    jobqueue.add_job_stopped_listener(listener)
    try:
        with synchronous_jobs():
            jobqueue.add(double(5))
    finally:
        jobqueue.remove_job_stopped_listener(listener)
    assert stopped == [(10, False)]


def test_synchronous_bundle_runs_its_jobs_then_listeners_then_its_handler(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    fired: list[str] = []

    def any_listener(bundle: JobBundle) -> None:
        fired.append(f"any {bundle.num_jobs_stopped}")

    jobqueue.add_job_bundle_stopped_listener(any_listener)
    jobqueue.set_job_bundle_of_type_stopped_listener("tm.bundle", lambda b: fired.append(f"typed {b.type}"))
    try:
        bundle = jobqueue.new_job_bundle(
            "tm.bundle", "test", [JobDesc(type="tm.double", payload=i) for i in (1, 2)]
        )
        with synchronous_jobs():
            jobqueue.add_bundle(bundle)
    finally:
        jobqueue.remove_job_bundle_stopped_listener(any_listener)
        jobqueue.remove_job_bundle_of_type_stopped_listener("tm.bundle")
    assert [j.result for j in bundle.jobs] == [2, 4]
    assert fired == ["any 2", "typed tm.bundle"]
    assert handlers == [1, 2, ("bundle", bundle.id, 2)]
    assert count_jobs(db_url) == 0


def test_synchronous_bundle_with_a_failing_job_completes_then_raises(
    current: PostgresService, handlers: list[Any]
) -> None:
    bundle = jobqueue.new_job_bundle(
        "tm.bundle", "test", [JobDesc(type="tm.fail", payload=1), JobDesc(type="tm.double", payload=2)]
    )
    with synchronous_jobs(), pytest.raises(JobFailedError, match="broke on 1") as info:
        jobqueue.add_bundle(bundle)
    assert isinstance(info.value.__cause__, HandlerBroke)
    assert handlers == [1, 2, ("bundle", bundle.id, 2)]


def test_synchronous_add_of_an_unregistered_type_raises_registration_error(current: PostgresService) -> None:
    with synchronous_jobs(), pytest.raises(RegistrationError, match=r"tm\.nobody"):
        jobqueue.add(jobqueue.new_job("tm.nobody", "test", None))


def test_test_modes_still_validate_before_anything_runs(
    current: PostgresService, handlers: list[Any]
) -> None:
    job = double(1)
    job.origin = ""
    for mode in (synchronous_jobs, ignore_jobs):
        with mode(), pytest.raises(InvalidJobError, match="origin must not be empty"):
            jobqueue.add(job)
    assert handlers == []


def test_synchronous_add_in_a_transaction_sends_no_sql(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    with psycopg.connect(db_url) as conn, synchronous_jobs():
        job = jobqueue.add(double(3), conn=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert job.result == 6


# -- ignore modes ------------------------------------------------------------------------------


def test_ignore_jobs_returns_jobs_unstored(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    with ignore_jobs():
        job = jobqueue.add(double(1))
        jobqueue.add_many([double(2), double(3)])
    assert job.created_at is None and job.result is None
    assert handlers == []
    assert count_jobs(db_url) == 0


def test_ignore_jobs_predicate_selects_which_jobs_are_dropped(current: PostgresService, db_url: str) -> None:
    with ignore_jobs(lambda job: job.payload % 2 == 0):
        jobqueue.add_many([jobqueue.new_job("t", "o", i) for i in range(6)])
        jobqueue.add(jobqueue.new_job("t", "o", 10))
        jobqueue.add(jobqueue.new_job("t", "o", 11))
    assert sorted(j.payload for j in current.get_all_jobs_to_do()) == [1, 3, 5, 11]


def test_ignore_job_type_drops_only_that_type(current: PostgresService) -> None:
    with ignore_job_type("email", "sms"):
        for t in ("email", "sms", "report"):
            jobqueue.add(jobqueue.new_job(t, "o", None))
    assert [j.type for j in current.get_all_jobs_to_do()] == ["report"]


def test_ignore_job_bundles_drops_selected_bundles_and_leaves_jobs_alone(
    current: PostgresService, db_url: str
) -> None:
    def make(bundle_type: str) -> JobBundle:
        return jobqueue.new_job_bundle(bundle_type, "o", [JobDesc(type="t", payload=bundle_type)])

    with ignore_job_bundles(lambda b: b.type == "skip"):
        jobqueue.add_bundle(make("skip"))
        kept = jobqueue.add_bundle(make("keep"))
        jobqueue.add(jobqueue.new_job("t", "o", "single"))
    with ignore_job_bundles(), ignore_jobs(lambda j: False):
        jobqueue.add_bundle(make("all"))
    assert sorted(j.payload for j in current.get_all_jobs_to_do()) == ["keep", "single"]
    assert current.get_job_bundle(kept.id).num_jobs == 1


# -- scoping -----------------------------------------------------------------------------------


def test_nested_modes_combine_and_restore_the_outer_mode_on_exit(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    with synchronous_jobs():
        with ignore_job_type("tm.fail"):
            jobqueue.add(jobqueue.new_job("tm.fail", "test", 1))  # ignored wins over synchronous
            assert jobqueue.add(double(2)).result == 4  # the rest still runs inline
        with pytest.raises(JobFailedError):
            jobqueue.add(jobqueue.new_job("tm.fail", "test", 3))
        with synchronous_jobs():
            pass
        assert jobqueue.add(double(4)).result == 8  # still synchronous after a nested block
    stored = jobqueue.add(double(5))
    assert stored.created_at is not None and stored.result is None
    assert handlers == [2, 3, 4]
    assert count_jobs(db_url) == 1


def test_modes_follow_asyncio_tasks_and_stay_in_their_task(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    async def child() -> Job:
        return await jobqueue.add_async(double(1))

    async def synchronous_parent() -> Job:
        with synchronous_jobs():
            return await asyncio.create_task(child())

    async def scenario() -> tuple[Job, Job]:
        ran, stored = await asyncio.gather(synchronous_parent(), child())
        return ran, stored

    ran, stored = asyncio.run(scenario())
    assert ran.result == 2 and ran.created_at is None
    assert stored.result is None and stored.created_at is not None
    assert count_jobs(db_url) == 1


def test_modes_apply_in_async_adds_with_a_connection(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            with synchronous_jobs():
                assert (await jobqueue.add_async(double(2), conn=conn)).result == 4
                jobs = await jobqueue.add_many_async([double(3), double(4)], conn=conn)
                assert [j.result for j in jobs] == [6, 8]
                bundle = jobqueue.new_job_bundle("tm.bundle", "o", [JobDesc(type="tm.double", payload=5)])
                await jobqueue.add_bundle_async(bundle, conn=conn)
                with pytest.raises(JobFailedError) as info:
                    await jobqueue.add_async(jobqueue.new_job("tm.fail", "o", 6), conn=conn)
                assert isinstance(info.value.__cause__, HandlerBroke)
            with ignore_jobs(), ignore_job_bundles():
                await jobqueue.add_async(double(7), conn=conn)
                await jobqueue.add_bundle_async(
                    jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=1)]), conn=conn
                )
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no SQL sent
            await conn.commit()

    asyncio.run(scenario())
    assert count_jobs(db_url) == 0
    assert [h for h in handlers if not isinstance(h, tuple)] == [2, 3, 4, 5, 6]


def test_modes_reach_threads_through_copy_context_only(
    current: PostgresService, db_url: str, handlers: list[Any]
) -> None:
    results: dict[str, Any] = {}

    def add_in_thread(name: str) -> None:
        results[name] = jobqueue.add(double(len(name)))

    with synchronous_jobs(), jobqueue.use_service(current):
        context = contextvars.copy_context()
        copied = threading.Thread(target=context.run, args=(add_in_thread, "copied"))
        plain = threading.Thread(target=add_in_thread, args=("plain",))  # sees neither mode nor use_service
        jobqueue.set_default_service(current)
        try:
            copied.start()
            plain.start()
            copied.join(10)
            plain.join(10)
        finally:
            jobqueue.set_default_service(None)
    assert results["copied"].result == 12
    assert results["plain"].result is None and results["plain"].created_at is not None
    assert count_jobs(db_url) == 1
