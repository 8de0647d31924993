"""Snooze and retry strategies through a worker pool on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from helpers import RecordingListener, wait_for

import jobqueue
from jobqueue import JobState
from jobworker import Registry, Snooze, WorkerPool, WorkerSettings, retry
from jobworker_pg import PostgresService

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def pool(service: PostgresService, registry: Registry) -> Iterator[WorkerPool]:
    pool = WorkerPool(service, registry, SETTINGS, name="jobworker-snoozetest")
    yield pool
    pool.stop_threads()


def test_a_snoozed_job_runs_again_later_without_using_an_attempt(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    runs: list[int] = []

    def wait_twice(job: jobqueue.Job) -> str:
        runs.append(job.attempt)
        if len(runs) < 3:
            raise Snooze(timedelta(milliseconds=200))
        return "done"

    registry.register("s", wait_twice)
    listener = RecordingListener()
    service.add_listener(listener)
    job = service.add_job(jobqueue.new_job("s", "o", None))  # max_retry_count=0: no retries at all
    pool.start_threads(1)
    wait_for(lambda: service.get_job(job.id).stopped, 20, "job succeeds")
    done = service.get_job(job.id)
    assert done.state is JobState.SUCCEEDED and done.result == "done"
    assert runs == [1, 1, 1]  # every run is attempt 1: a snooze gives its attempt back
    assert done.attempt == 1 and done.current_retry_count == 0 and done.error_msg is None
    assert [(e.attempt, e.message, e.type) for e in done.errors] == [
        (1, "snoozed for 0.2 s", "jobworker.Snooze"),
        (1, "snoozed for 0.2 s", "jobworker.Snooze"),
    ]
    listener.wait(lambda: len(listener.jobs) >= 1)
    assert [s[3] for s in listener.jobs] == [False]  # one job_stopped: the end, no will_retry


def test_a_snoozed_job_waits_in_the_database_until_its_time(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("s", lambda job: (_ for _ in ()).throw(Snooze(timedelta(hours=1))))
    job = service.add_job(jobqueue.new_job("s", "o", None))
    pool.start_threads(1)
    wait_for(lambda: bool(service.get_job(job.id).errors), 20, "snoozed")
    waiting = service.get_job(job.id)
    assert waiting.state is JobState.SCHEDULED
    assert waiting.attempt == 0 and not waiting.started
    assert waiting.start_at is not None and waiting.updated_at is not None
    assert waiting.start_at - waiting.updated_at > timedelta(minutes=59)


def test_linear_strategy_as_a_per_type_option(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    def flaky(job: jobqueue.Job) -> str:
        if job.attempt < 2:
            raise ValueError("first")
        return "ok"

    registry.register("t", flaky, retry=retry.linear(timedelta(milliseconds=100)))
    job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=3))
    pool.start_threads(1)
    wait_for(lambda: service.get_job(job.id).stopped, 20, "job succeeds")
    assert service.get_job(job.id).attempt == 2


def test_retry_none_fails_for_good_at_the_first_error(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    def broken(job: jobqueue.Job) -> None:
        raise ValueError("nope")

    registry.register("t", broken, retry=retry.none())
    job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=5))
    pool.start_threads(1)
    wait_for(lambda: service.get_job(job.id).stopped, 20, "job fails")
    failed = service.get_job(job.id)
    assert failed.state is JobState.FAILED and failed.attempt == 1
