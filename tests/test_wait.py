"""wait_for_job / wait_for_bundle and their async twins on a real PostgreSQL: woken by
job_stopped notifications, polling where those do not work, surviving a killed LISTEN."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import pytest
from helpers import wait_for

import jobqueue
from jobqueue import Job, JobBundle, JobDesc, WaitTimeoutError
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)
NEVER = 3600.0  # a poll interval no test lives to see: only notifications can wake the wait


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def pool(service: PostgresService, gate: threading.Event) -> Iterator[WorkerPool]:
    registry = Registry()

    def gated(job: Job) -> Any:
        assert gate.wait(30)
        if job.payload == "fail":
            raise RuntimeError("the handler failed")
        return {"echo": job.payload}

    async def agated(job: Job) -> Any:
        await asyncio.to_thread(gate.wait, 30)
        if job.payload == "fail":
            raise RuntimeError("the async handler failed")
        return {"echo": job.payload}

    registry.register("gated", gated)
    registry.register("agated", agated)
    pool = WorkerPool(service, registry, SETTINGS, name="jobworker-waittest")
    pool.start_threads(2, async_concurrency=4)
    yield pool
    pool.stop_threads()


def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
    """``fn`` on a thread of its own, in this context (the current service follows)."""
    executor = ThreadPoolExecutor(1)
    future = executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)
    executor.shutdown(wait=False)
    return future


@pytest.mark.parametrize("job_type", ["gated", "agated"])
def test_wait_for_job_returns_the_succeeded_job_woken_by_its_notification(
    current: PostgresService, pool: WorkerPool, gate: threading.Event, job_type: str
) -> None:
    job = jobqueue.add(jobqueue.new_job(job_type, "test", "hi"))
    waiting = _in_thread(jobqueue.wait_for_job, job.id, timeout=30, poll_interval=NEVER)
    wait_for(lambda: current.get_job(job.id).started, 10, "the job starts")
    assert not waiting.done()
    gate.set()
    done = waiting.result(30)
    assert done.succeeded and done.result == {"echo": "hi"}


@pytest.mark.parametrize("job_type", ["gated", "agated"])
def test_wait_for_job_returns_a_failed_job_as_it_is_after_its_retries(
    current: PostgresService, pool: WorkerPool, gate: threading.Event, job_type: str
) -> None:
    gate.set()
    job = jobqueue.add(jobqueue.new_job(job_type, "test", "fail", max_retry_count=1))
    with jobqueue.use_service(current):
        done = jobqueue.wait_for_job(job.id, timeout=30, poll_interval=NEVER)
    assert done.stopped and not done.succeeded
    assert done.attempt == 2
    assert "failed" in (done.error_msg or "")


def test_wait_for_job_raises_on_timeout(current: PostgresService) -> None:
    job = jobqueue.add(jobqueue.new_job("nobody-runs-this", "test", None))
    with pytest.raises(WaitTimeoutError, match=f"job {job.id} did not stop within 0.2 s") as caught:
        jobqueue.wait_for_job(job.id, timeout=0.2)
    assert isinstance(caught.value, TimeoutError)


def test_wait_for_job_rejects_bad_arguments_before_any_sql(current: PostgresService) -> None:
    with pytest.raises(jobqueue.InvalidJobError, match="timeout must be positive"):
        jobqueue.wait_for_job(uuid4(), timeout=0)
    with pytest.raises(jobqueue.InvalidJobError, match="poll_interval must be a timedelta"):
        jobqueue.wait_for_job(uuid4(), timeout=1, poll_interval="1")  # type: ignore[arg-type]
    with pytest.raises(jobqueue.JobNotFoundError):
        jobqueue.wait_for_job(uuid4(), timeout=1)


@pytest.mark.parametrize("job_type", ["gated", "agated"])
def test_wait_for_job_async_returns_success_and_failure_and_raises_on_timeout(
    current: PostgresService, pool: WorkerPool, gate: threading.Event, job_type: str
) -> None:
    async def main() -> tuple[Job, Job]:
        ok = await jobqueue.add_async(jobqueue.new_job(job_type, "test", "hi"))
        bad = await jobqueue.add_async(jobqueue.new_job(job_type, "test", "fail"))
        waits = [
            asyncio.ensure_future(jobqueue.wait_for_job_async(j.id, timeout=30, poll_interval=NEVER))
            for j in (ok, bad)
        ]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waits)
        gate.set()
        never = await jobqueue.add_async(jobqueue.new_job("nobody-runs-this", "test", None))
        with pytest.raises(WaitTimeoutError):
            await jobqueue.wait_for_job_async(never.id, timeout=0.2)
        done_ok, done_bad = await asyncio.gather(*waits)
        return done_ok, done_bad

    done_ok, done_bad = asyncio.run(main())
    assert done_ok.result == {"echo": "hi"}
    assert done_bad.stopped and "failed" in (done_bad.error_msg or "")


def test_wait_for_job_survives_the_listen_connection_killed(
    current: PostgresService, pool: WorkerPool, gate: threading.Event, conn: Any
) -> None:
    job = jobqueue.add(jobqueue.new_job("agated", "test", "after the kill"))
    waiting = _in_thread(jobqueue.wait_for_job, job.id, timeout=60, poll_interval=NEVER)
    wait_for(lambda: current.get_job(job.id).started, 10, "the job starts")
    reconnects = current.listener.reconnects
    killed = conn.execute(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where application_name = 'jobqueue-listen' and datname = current_database()"
    ).fetchone()[0]
    assert killed >= 1
    gate.set()  # the job may stop before or after the LISTEN is back: either must wake the wait
    done = waiting.result(60)
    assert done.result == {"echo": "after the kill"}
    wait_for(lambda: current.listener.reconnects > reconnects, 30, "the listener reconnects")


class _NoListenService:
    """The service seen through a proxy whose notifications never arrive (as behind a
    PgBouncer in transaction mode): waits must poll."""

    def __init__(self, inner: PostgresService) -> None:
        self._inner = inner
        self.reads = 0

    def add_listener(self, listener: Any) -> None:
        pass

    def get_job(self, job_id: UUID) -> Job:
        self.reads += 1
        return self._inner.get_job(job_id)

    def get_job_bundle(self, bundle_id: UUID) -> JobBundle:
        self.reads += 1
        return self._inner.get_job_bundle(bundle_id)


def test_wait_for_job_polls_where_notifications_do_not_work(
    service: PostgresService, pool: WorkerPool, gate: threading.Event
) -> None:
    proxy = _NoListenService(service)
    job = service.add_job(jobqueue.new_job("gated", "test", "polled"))
    waiting = _in_thread(
        jobqueue.wait_for_job,
        job.id,
        timeout=60,
        poll_interval=0.05,
        service=proxy,
    )
    wait_for(lambda: proxy.reads >= 3, 10, "the wait reads the job again and again")
    gate.set()
    assert waiting.result(30).result == {"echo": "polled"}


def test_wait_for_bundle_returns_once_every_job_stopped_sync_and_async(
    current: PostgresService, pool: WorkerPool, gate: threading.Event
) -> None:
    descs = [JobDesc(type="gated", payload=1), JobDesc(type="agated", payload="fail")]
    bundle = jobqueue.add_bundle(jobqueue.new_job_bundle("pair", "test", descs))
    waiting = _in_thread(jobqueue.wait_for_bundle, bundle.id, timeout=30, poll_interval=NEVER)

    async def wait_async() -> JobBundle:
        return await jobqueue.wait_for_bundle_async(bundle.id, timeout=30, poll_interval=NEVER)

    waiting_async = _in_thread(asyncio.run, wait_async())
    wait_for(lambda: all(j.started for j in current.get_job_bundle(bundle.id).jobs), 10, "both start")
    assert not waiting.done() and not waiting_async.done()
    gate.set()
    for done in (waiting.result(30), waiting_async.result(30)):
        assert done.stopped and done.num_jobs_stopped == 2
        assert sorted(j.succeeded for j in done.jobs) == [False, True]
    with pytest.raises(WaitTimeoutError, match="job bundle"):
        blocked = jobqueue.add_bundle(
            jobqueue.new_job_bundle("pair", "test", [JobDesc(type="nobody-runs-this", payload=None)])
        )
        jobqueue.wait_for_bundle(blocked.id, timeout=0.2)
