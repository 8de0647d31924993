"""The worker pool on a real PostgreSQL, in-process: order, schedules, retries, timeouts, bundles."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from helpers import wait_for

import jobqueue
from jobqueue import JobDesc, JobState
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def pool(service: PostgresService, registry: Registry) -> Iterator[WorkerPool]:
    pool = WorkerPool(service, registry, SETTINGS, name="jobworker-pgtest")
    yield pool
    pool.stop_threads()


def test_one_thread_runs_jobs_by_priority_then_age(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    order: list[str] = []
    registry.register("t", lambda job: order.append(job.payload))
    service.add_jobs(
        [
            jobqueue.new_job("t", "o", "low-1", priority=1),
            jobqueue.new_job("t", "o", "high", priority=9),
            jobqueue.new_job("t", "o", "low-2", priority=1),
            jobqueue.new_job("t", "o", "lowest", priority=-5),
        ]
    )
    pool.start_threads(1)
    wait_for(lambda: len(order) == 4, 20, "four jobs run")
    assert order == ["high", "low-1", "low-2", "lowest"]


def test_start_at_is_honoured(service: PostgresService, registry: Registry, pool: WorkerPool) -> None:
    ran: list[str] = []
    registry.register("t", lambda job: ran.append(job.payload))
    pool.start_threads(2)
    later = service.add_job(
        jobqueue.new_job("t", "o", "later", start_at=datetime.now(UTC) + timedelta(seconds=1.5))
    )
    now = service.add_job(jobqueue.new_job("t", "o", "now"))
    wait_for(lambda: "later" in ran, 20, "the scheduled job runs")
    # The database's own record, not the test's clock: not claimed before it was due.
    stored_later, stored_now = service.get_job(later.id), service.get_job(now.id)
    assert stored_later.started_at is not None and later.start_at is not None
    assert stored_later.started_at >= later.start_at
    assert stored_now.started_at is not None and "now" in ran


def test_a_job_added_while_workers_idle_is_picked_up_by_notification(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    ran: list[str] = []
    registry.register("t", lambda job: ran.append(job.payload))
    pool.start_threads(2)  # no polling: only job_available wakes the claimer
    assert service.listener.wait_connected(10)
    service.add_job(jobqueue.new_job("t", "o", "first"))
    wait_for(lambda: len(ran) == 1, 10, "the first job")  # the claimer is idle after this
    # Nothing else can wake the idle claimer (no polling, nothing scheduled): if the second
    # job runs at all, its notification woke the claimer.
    service.add_job(jobqueue.new_job("t", "o", "second"))
    wait_for(lambda: len(ran) == 2, 30, "the second job, woken by its notification")
    assert ran == ["first", "second"]


def test_failed_attempts_are_retried_and_kept_in_the_history(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    def flaky(job: jobqueue.Job) -> str:
        if job.attempt < 3:
            raise ValueError(f"attempt {job.attempt} failed\nsecond line")
        return "third time lucky"

    registry.register("t", flaky)
    registry.register_schedule_retry("t", lambda job: datetime.now(UTC))
    job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=5))
    pool.start_threads(1)
    wait_for(lambda: service.get_job(job.id).stopped, 20, "job succeeds")
    done = service.get_job(job.id)
    assert done.state is JobState.SUCCEEDED and done.result == "third time lucky"
    assert [(e.attempt, e.message, e.type) for e in done.errors] == [
        (1, "attempt 1 failed", "ValueError"),
        (2, "attempt 2 failed", "ValueError"),
    ]
    assert done.attempt == 3 and done.current_retry_count == 2


def test_exhausted_retries_end_failed_with_error_data(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    def broken(job: jobqueue.Job) -> None:
        raise KeyError("missing")

    registry.register("t", broken)
    registry.register_schedule_retry("t", lambda job: datetime.now(UTC))
    job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=1))
    pool.start_threads(1)
    wait_for(lambda: service.get_job(job.id).stopped, 20, "job fails")
    failed = service.get_job(job.id)
    assert failed.state is JobState.FAILED and failed.attempt == 2
    assert failed.error_msg == "'missing'"
    assert failed.error_data["type"] == "KeyError" and "Traceback" in failed.error_data["traceback"]


def test_a_handler_that_never_returns_times_out_while_other_jobs_flow(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    release = threading.Event()
    done: list[int] = []
    registry.register("hang", lambda job: release.wait(30), timeout=0.5)
    registry.register("quick", lambda job: done.append(job.payload))
    hang = service.add_job(jobqueue.new_job("hang", "o", None))
    pool.start_threads(2)
    service.add_jobs([jobqueue.new_job("quick", "o", i) for i in range(50)])
    try:
        wait_for(lambda: len(done) == 50, 30, "quick jobs run past the hanging one")
        wait_for(lambda: service.get_job(hang.id).stopped, 30, "the hanging job times out")
        timed_out = service.get_job(hang.id)
        assert timed_out.state is JobState.FAILED
        assert timed_out.error_msg is not None and "ran longer than its timeout" in timed_out.error_msg
    finally:
        release.set()


def test_bundle_handler_runs_once_after_the_last_job(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    seen: list[tuple[str, int]] = []
    registry.register("part", lambda job: job.payload)
    registry.register_bundle_handler(
        "report", lambda bundle: seen.append((bundle.type, bundle.num_jobs_stopped))
    )
    pool.start_threads(3)  # declares the bundle handler
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("report", "o", [JobDesc(type="part", payload=i) for i in range(10)])
    )
    wait_for(lambda: seen, 20, "bundle handler runs")
    pool.finish_threads(10)
    assert seen == [("report", 10)]
    assert service.get_job_bundle(bundle.id).stopped
