"""One contract suite for the worker-database seam, run against the in-memory fake
(tests/fakes.py) and against PostgresService, as River runs one suite against each driver:
claim, outcomes, heartbeat, release, reap, bundle counting and claim-token fencing. A
behaviour the fake gets wrong here would make the unit tests of the pool prove nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import psycopg
import pytest
from fakes import FakeDatabase

import jobqueue
import jobworker
from jobqueue import Job, JobBundle, JobDesc
from jobworker import BUNDLE_JOB_PREFIX, Outcome, OutcomeKind, WorkerDatabase
from jobworker._periodic import periodic_spec
from jobworker_pg import PostgresService


class Driver(Protocol):
    """How the suite sets up and inspects the state behind one WorkerDatabase."""

    db: WorkerDatabase

    def add(self, job: Job) -> None: ...

    def add_bundle(self, bundle: JobBundle) -> None: ...

    def job(self, job_id: UUID) -> Job: ...

    def jobs_of_type(self, job_type: str) -> list[Job]: ...

    def age_heartbeats(self, by: timedelta) -> None: ...


class FakeDriver:
    def __init__(self) -> None:
        self.fake = FakeDatabase()
        self.db: WorkerDatabase = self.fake

    def add(self, job: Job) -> None:
        self.fake.add(job, notify=False)

    def add_bundle(self, bundle: JobBundle) -> None:
        self.fake.add_bundle(bundle)

    def job(self, job_id: UUID) -> Job:
        return self.fake.job(job_id)

    def jobs_of_type(self, job_type: str) -> list[Job]:
        return [j for j in self.fake.jobs.values() if j.type == job_type]

    def age_heartbeats(self, by: timedelta) -> None:
        for job in self.fake.jobs.values():
            if job.worker_alive_at is not None:
                job.worker_alive_at -= by


class PostgresDriver:
    def __init__(self, service: PostgresService, url: str) -> None:
        self.service = service
        self.db: WorkerDatabase = service
        self._url = url

    def add(self, job: Job) -> None:
        self.service.add_job(job)

    def add_bundle(self, bundle: JobBundle) -> None:
        self.service.add_job_bundle(bundle)

    def job(self, job_id: UUID) -> Job:
        return self.service.get_job(job_id)

    def jobs_of_type(self, job_type: str) -> list[Job]:
        return [j for j in self.service.get_all_jobs() if j.type == job_type]

    def age_heartbeats(self, by: timedelta) -> None:
        with psycopg.connect(self._url) as conn:
            conn.execute(
                "update worker.job set worker_alive_at = worker_alive_at - %s"
                " where worker_alive_at is not null",
                (by,),
            )


@pytest.fixture(params=["fake", "postgres"])
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    if request.param == "fake":
        yield FakeDriver()
        return
    url: str = request.getfixturevalue("db_url")
    with PostgresService(url) as service:
        yield PostgresDriver(service, url)


def new(job_type: str = "c.t", payload: object = None, **kwargs: object) -> Job:
    return jobqueue.new_job(job_type, "contract", payload, **kwargs)  # type: ignore[arg-type]


def succeeded(job: Job, result: object = None) -> Outcome:
    assert job.claim_token is not None
    return Outcome(
        job.id,
        job.claim_token,
        OutcomeKind.SUCCEEDED,
        job.attempt,
        json.dumps(result),
        bundle_id=job.bundle_id,
    )


def failed(job: Job, kind: OutcomeKind, delay: timedelta | None = None) -> Outcome:
    assert job.claim_token is not None
    return Outcome(
        job.id,
        job.claim_token,
        kind,
        job.attempt,
        error_msg="it broke",
        error_type="ValueError",
        error_data_json=json.dumps({"type": "ValueError", "message": "it broke", "traceback": ""}),
        retry_delay=delay,
        bundle_id=job.bundle_id,
    )


# -- claim -------------------------------------------------------------------------------------


def test_claim_takes_due_jobs_of_the_types_by_priority_then_age_up_to_the_limit(driver: Driver) -> None:
    low, high, other = new(payload="low"), new(payload="high", priority=5), new("c.other")
    later = new(payload="later", start_at=datetime.now(UTC) + timedelta(hours=1))
    for job in (low, high, other, later):
        driver.add(job)
    first = driver.db.claim_jobs(["c.t"], 1)
    rest = driver.db.claim_jobs(["c.t"], 10)
    assert [j.id for j in first] == [high.id]
    assert [j.id for j in rest] == [low.id]
    assert driver.db.claim_jobs(["c.t"], 10) == []  # claimed jobs, and the scheduled one, stay out
    for job in first + rest:
        assert job.attempt == 1 and job.claim_token is not None and job.started_at is not None
    assert first[0].claim_token != rest[0].claim_token  # a fresh token per claim
    stored = driver.job(high.id)
    assert stored.started_at is not None and stored.worker_alive_at is not None


def test_seconds_until_next_job_counts_only_scheduled_jobs_of_the_types(driver: Driver) -> None:
    assert driver.db.seconds_until_next_job(["c.t"]) is None
    driver.add(new(start_at=datetime.now(UTC) + timedelta(seconds=60)))
    driver.add(new("c.other", start_at=datetime.now(UTC) + timedelta(seconds=5)))
    seconds = driver.db.seconds_until_next_job(["c.t"])
    assert seconds is not None and 30 < seconds <= 60


# -- outcomes ----------------------------------------------------------------------------------


def test_a_success_stops_the_job_with_its_result(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert driver.db.save_outcomes([succeeded(job, {"n": 1})]) == {job.id}
    stored = driver.job(job.id)
    assert stored.stopped_at is not None and stored.result == {"n": 1} and stored.error_msg is None


def test_a_retry_records_the_error_and_makes_the_job_due_later(driver: Driver) -> None:
    driver.add(new(max_retry_count=2))
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert driver.db.save_outcomes([failed(job, OutcomeKind.RETRY, timedelta(hours=1))]) == {job.id}
    stored = driver.job(job.id)
    assert stored.stopped_at is None and stored.started_at is None
    assert stored.error_msg == "it broke" and stored.current_retry_count == 1
    assert [(e.attempt, e.message, e.type) for e in stored.errors] == [(1, "it broke", "ValueError")]
    assert stored.start_at is not None and stored.start_at > datetime.now(UTC) + timedelta(minutes=50)
    assert driver.db.claim_jobs(["c.t"], 1) == []  # not due yet


def test_a_failure_stops_the_job_with_its_error(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert driver.db.save_outcomes([failed(job, OutcomeKind.FAILED)]) == {job.id}
    stored = driver.job(job.id)
    assert stored.stopped_at is not None and stored.error_msg == "it broke" and stored.result is None
    assert stored.error_data is not None and stored.error_data["type"] == "ValueError"
    assert [(e.attempt, e.message, e.type) for e in stored.errors] == [(1, "it broke", "ValueError")]


# -- claim-token fencing -----------------------------------------------------------------------


def test_writes_with_a_stale_claim_token_apply_to_nothing(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    stale = job.model_copy(update={"claim_token": uuid.uuid4()})
    assert driver.db.save_outcomes([succeeded(stale)]) == set()
    assert driver.db.heartbeat([(job.id, uuid.uuid4())]) == set()
    assert driver.db.release_claims([(job.id, uuid.uuid4())]) == set()
    stored = driver.job(job.id)
    assert stored.stopped_at is None and stored.started_at is not None  # still the first claim's
    assert driver.db.save_outcomes([succeeded(job)]) == {job.id}
    assert driver.db.save_outcomes([succeeded(job)]) == set()  # an outcome applies once


# -- heartbeat, release, reap ------------------------------------------------------------------


def test_heartbeat_marks_current_claims_alive(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert job.claim_token is not None
    driver.age_heartbeats(timedelta(minutes=5))
    aged = driver.job(job.id).worker_alive_at
    assert driver.db.heartbeat([(job.id, job.claim_token)]) == {job.id}
    alive = driver.job(job.id).worker_alive_at
    assert aged is not None and alive is not None and alive > aged + timedelta(minutes=4)
    assert driver.db.heartbeat([]) == set()


def test_released_claims_are_available_again_with_the_attempt_uncounted(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert job.claim_token is not None
    assert driver.db.release_claims([(job.id, job.claim_token)]) == {job.id}
    stored = driver.job(job.id)
    assert (stored.started_at, stored.attempt) == (None, 0)
    (again,) = driver.db.claim_jobs(["c.t"], 1)
    assert again.attempt == 1


def test_the_reaper_requeues_jobs_with_attempts_left_and_fails_the_others(driver: Driver) -> None:
    retry, last = new(payload="retry", max_retry_count=1), new(payload="last")
    driver.add(retry)
    driver.add(last)
    claimed = driver.db.claim_jobs(["c.t"], 2)
    assert len(claimed) == 2
    assert driver.db.reap_dead_jobs(timedelta(seconds=1)) == 0  # heartbeats are fresh
    driver.age_heartbeats(timedelta(minutes=10))
    assert driver.db.reap_dead_jobs(timedelta(seconds=1)) == 2
    requeued, ended = driver.job(retry.id), driver.job(last.id)
    assert requeued.started_at is None and requeued.stopped_at is None
    assert ended.stopped_at is not None
    assert requeued.current_retry_count == 1
    for job in (requeued, ended):
        assert job.error_msg is not None and job.error_msg.startswith("worker lost")
        assert job.error_data is not None and job.error_data["type"] == "WorkerLost"
        assert [(e.attempt, e.type) for e in job.errors] == [(1, "WorkerLost")]
    stale = {j.id: j for j in claimed}[retry.id]
    assert driver.db.save_outcomes([succeeded(stale)]) == set()  # the reaped claim is fenced off


# -- bundles -----------------------------------------------------------------------------------


def test_a_bundle_with_a_durable_handler_enqueues_one_completion_job_when_its_last_job_stops(
    driver: Driver,
) -> None:
    driver.db.declare_bundle_handlers({"c.bundle": 4})
    bundle = jobqueue.new_job_bundle(
        "c.bundle", "contract", [JobDesc(type="c.t", payload=i, max_retry_count=1) for i in range(2)]
    )
    driver.add_bundle(bundle)
    first, second = driver.db.claim_jobs(["c.t"], 2)
    driver.db.save_outcomes([failed(first, OutcomeKind.RETRY, timedelta(0))])  # a retry stops nothing
    driver.db.save_outcomes([succeeded(second)])
    assert driver.jobs_of_type(BUNDLE_JOB_PREFIX + "c.bundle") == []
    assert driver.db.get_job_bundle(bundle.id).num_jobs_stopped == 1
    (again,) = driver.db.claim_jobs(["c.t"], 1)
    driver.db.save_outcomes([failed(again, OutcomeKind.FAILED)])  # a failure for good stops it
    assert driver.db.get_job_bundle(bundle.id).num_jobs_stopped == 2
    (completion,) = driver.jobs_of_type(BUNDLE_JOB_PREFIX + "c.bundle")
    assert (completion.payload["bundle_id"], completion.payload["bundle_type"]) == (
        str(bundle.id),
        "c.bundle",
    )
    stopped = jobqueue.JobBundle.model_validate(completion.payload["bundle"])  # the bundle as it stopped
    assert (stopped.num_jobs_stopped, sorted(j.payload for j in stopped.jobs)) == (2, [0, 1])
    assert completion.max_retry_count == 4  # from the declaration
    driver.db.save_outcomes([succeeded(again)])  # a late duplicate counts nothing
    assert driver.db.get_job_bundle(bundle.id).num_jobs_stopped == 2
    assert len(driver.jobs_of_type(BUNDLE_JOB_PREFIX + "c.bundle")) == 1


# -- snooze and periodic schedules -------------------------------------------------------------


def test_a_snooze_makes_the_job_due_later_with_its_attempt_given_back(driver: Driver) -> None:
    driver.add(new())
    (job,) = driver.db.claim_jobs(["c.t"], 1)
    assert job.claim_token is not None
    snooze = Outcome(
        job.id,
        job.claim_token,
        OutcomeKind.SNOOZE,
        job.attempt,
        error_msg="snoozed for 3600 s",
        error_type="jobworker.Snooze",
        retry_delay=timedelta(hours=1),
    )
    assert driver.db.save_outcomes([snooze]) == {job.id}
    stored = driver.job(job.id)
    assert stored.stopped_at is None and stored.started_at is None and stored.error_msg is None
    assert stored.attempt == 0 and stored.current_retry_count == 0
    assert [(e.attempt, e.message, e.type) for e in stored.errors] == [
        (1, "snoozed for 3600 s", "jobworker.Snooze")
    ]
    assert stored.start_at is not None and stored.start_at > datetime.now(UTC) + timedelta(minutes=50)
    assert driver.db.claim_jobs(["c.t"], 1) == []


def test_ticks_are_enqueued_only_from_the_last_tick_read_and_while_enabled(driver: Driver) -> None:
    spec = periodic_spec("every-minute", jobworker.every(60), "c.tick", payload={"p": 1})
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    ticks = [t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)]
    driver.db.declare_schedules([spec], t0)
    driver.db.declare_schedules([spec], t0 + timedelta(minutes=5))  # again: keeps created_at
    state = driver.db.schedule_states(["every-minute", "unknown"])
    assert list(state) == ["every-minute"]
    assert state["every-minute"].enabled and state["every-minute"].last_tick is None
    assert state["every-minute"].created_at == t0
    ids = driver.db.enqueue_ticks(spec, None, ticks[-1], ticks)
    assert ids is not None and len(ids) == 2
    assert driver.db.enqueue_ticks(spec, None, ticks[-1], ticks) is None  # moved already
    assert driver.db.schedule_states(["every-minute"])["every-minute"].last_tick == ticks[-1]
    jobs = sorted(driver.jobs_of_type("c.tick"), key=lambda j: j.scheduled_for or t0)
    assert [(j.scheduled_for, j.payload, j.origin) for j in jobs] == [
        (t, {"p": 1}, "periodic") for t in ticks
    ]
    assert jobs[0].unique_key == spec.unique_key(ticks[0])
