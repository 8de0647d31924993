"""go-jobqueue's writes on our schema, without Go: its statements, copied from
jobworkerdb/jobworkerdb.go at e938ce0, run as it runs them (tests/interop runs the real
library when the Go toolchain is there). Bundles are counted once, attempts and errors
are filled in for its claims, retries and failures, and our own paths count the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from helpers import Notifications

import jobqueue
from jobqueue import JobDesc, JobState
from jobworker._database import Outcome, OutcomeKind
from jobworker_pg import PostgresService

# go-jobqueue's claim (StartNextJobOrNil), with heartbeats on.
GO_CLAIM = """
with claimed as (
    select id from worker.job
    where started_at is null and (start_at is null or start_at <= now()) and "type" in ('{types}')
    order by priority desc, created_at asc
    limit 1
    for update skip locked
)
update worker.job set started_at = now(), worker_alive_at = now(), updated_at = now()
from claimed where worker.job.id = claimed.id
returning worker.job.id
"""
GO_SET_RESULT = """
update worker.job set result=%s, stopped_at=now(), worker_alive_at=null, updated_at=now(),
    error_msg=null, error_data=null
where id = %s"""
GO_SET_ERROR = """
update worker.job set stopped_at=now(), error_msg=%s, error_data=null,
    current_retry_count=max_retry_count, worker_alive_at=null, updated_at=now()
where id = %s"""
GO_COUNT_STOPPED = """
update worker.job_bundle set num_jobs_stopped=num_jobs_stopped+1, updated_at=now()
where id = (select b.id from worker.job_bundle as b inner join worker.job as j on j.bundle_id = b.id
            where j.id = %s)"""
GO_SCHEDULE_RETRY = """
update worker.job set start_at=%s, started_at=null, stopped_at=null, error_msg=null, error_data=null,
    worker_alive_at=null, current_retry_count=%s, updated_at=now()
where id = %s"""
GO_RESET_COUNT = """
update worker.job_bundle set num_jobs_stopped = num_jobs_stopped - 1, updated_at = now()
where id = (select j.bundle_id from worker.job as j
            where j.id = %s and j.bundle_id is not null and j.stopped_at is not null
              and (j.error_msg is null or j.current_retry_count >= j.max_retry_count))"""
GO_RESET = """
update worker.job set started_at=null, stopped_at=null, error_msg=null, error_data=null, result=null,
    worker_alive_at=null, current_retry_count=0, updated_at=now()
where id = %s"""


class GoWriter:
    """One go-jobqueue process, as far as its SQL goes (each method one of its transactions)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def claim(self, job_type: str) -> UUID | None:
        row = self.conn.execute(GO_CLAIM.replace("{types}", job_type).encode()).fetchone()
        return None if row is None else UUID(str(row[0]))

    def succeed(self, job_id: UUID) -> None:
        with self.conn.transaction():
            self.conn.execute(GO_SET_RESULT, ('{"by": "go"}', job_id))
            self.conn.execute(GO_COUNT_STOPPED, (job_id,))

    def fail(self, job_id: UUID, message: str) -> None:
        with self.conn.transaction():
            self.conn.execute(GO_SET_ERROR, (message, job_id))
            self.conn.execute(GO_COUNT_STOPPED, (job_id,))

    def schedule_retry(self, job_id: UUID, retry_count: int) -> None:
        self.conn.execute(GO_SCHEDULE_RETRY, (None, retry_count, job_id))

    def reset(self, job_id: UUID) -> None:
        with self.conn.transaction():
            self.conn.execute(GO_RESET_COUNT, (job_id,))
            self.conn.execute(GO_RESET, (job_id,))

    def current_retry_count(self, job_id: UUID) -> int:
        row = self.conn.execute(
            "select current_retry_count from worker.job where id = %s", (job_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.conn.close()


def _py_stop(service: PostgresService, job_type: str, kind: OutcomeKind, **kw: Any) -> UUID:
    (job,) = service.claim_jobs([job_type], 1)
    assert job.claim_token is not None
    assert service.save_outcomes([Outcome(job.id, job.claim_token, kind, job.attempt, **kw)]) == {job.id}
    return job.id


def _counts(service: PostgresService, bundle_id: UUID) -> tuple[int, int]:
    bundle = service.get_job_bundle(bundle_id)
    return bundle.num_jobs, bundle.num_jobs_stopped


def test_a_bundle_run_by_go_is_counted_once_per_job(service: PostgresService, db_url: str) -> None:
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("b", "o", [JobDesc(type="g", payload=i) for i in range(5)])
    )
    go = GoWriter(db_url)
    listen = Notifications(db_url, ("job_bundle_stopped",))
    try:
        for _ in range(5):  # 0.1.0's trigger counted each a second time: the third one failed
            job_id = go.claim("g")
            assert job_id is not None
            go.succeed(job_id)
        assert _counts(service, bundle.id) == (5, 5)
        assert [ch for ch, _ in listen.collect()] == ["job_bundle_stopped"]
        # Go resets a finished job: 5/5 -> 5/4 (0.1.0: 5/3), and runs it again.
        go.reset(bundle.jobs[0].id)
        assert _counts(service, bundle.id) == (5, 4)
        assert go.claim("g") == bundle.jobs[0].id
        go.succeed(bundle.jobs[0].id)
        assert _counts(service, bundle.id) == (5, 5)
    finally:
        listen.close()
        go.close()


def test_every_stop_of_ours_counts_once_and_every_reset_uncounts_once(
    service: PostgresService, db_url: str
) -> None:
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=i, max_retry_count=1) for i in range(5)])
    )
    ids = [job.id for job in bundle.jobs]
    first = _py_stop(service, "p", OutcomeKind.SUCCEEDED, result_json="1")
    assert _counts(service, bundle.id) == (5, 1)
    _py_stop(service, "p", OutcomeKind.RETRY, error_msg="again", retry_delay=timedelta(0))
    assert _counts(service, bundle.id) == (5, 1)  # a retry is no stop
    failed = _py_stop(service, "p", OutcomeKind.FAILED, error_msg="bad")
    assert _counts(service, bundle.id) == (5, 2)
    assert service.get_job(failed).current_retry_count == 1  # no retries left, as go-jobqueue's SetJobError
    cancelled = service.cancel_job(ids[4])
    assert cancelled.started_at is not None and cancelled.current_retry_count == 1
    assert _counts(service, bundle.id) == (5, 3)
    go = GoWriter(db_url)
    try:
        assert go.claim("p") not in (ids[4], None)  # go-jobqueue's claim skips the cancelled job
    finally:
        go.close()
    service.delete_job(ids[3])  # not stopped (Go claimed it): ours counts it
    assert _counts(service, bundle.id) == (5, 4)
    service.delete_job(first)  # stopped: already counted
    assert _counts(service, bundle.id) == (5, 4)
    service.reset_jobs([failed, ids[4]])
    assert _counts(service, bundle.id) == (5, 2)


def test_a_go_retry_is_one_attempt_with_its_error_in_the_history(
    service: PostgresService, db_url: str
) -> None:
    job = service.add_job(jobqueue.new_job("r", "o", None, max_retry_count=2))
    go = GoWriter(db_url)
    try:
        assert go.claim("r") == job.id
        assert service.get_job(job.id).attempt == 1  # the trigger counts go-jobqueue's claim
        go.schedule_retry(job.id, 1)  # go-jobqueue clears the message when it retries
        seen = service.get_job(job.id)
        assert (seen.attempt, seen.current_retry_count, seen.state) == (1, 1, JobState.RETRYING)
        assert [(e.attempt, "go-jobqueue" in e.message) for e in seen.errors] == [(1, True)]
        # Our claim continues the count: attempt 2 of 3, not 1 (0.1.0 ran 4 times).
        _py_stop(service, "r", OutcomeKind.RETRY, error_msg="py failed", retry_delay=timedelta(0))
        seen = service.get_job(job.id)
        assert (seen.attempt, seen.current_retry_count) == (2, 2)
        assert go.claim("r") == job.id
        assert go.current_retry_count(job.id) >= 2  # go-jobqueue: no retry left, SetJobError
        go.fail(job.id, "go failed")
    finally:
        go.close()
    final = service.get_job(job.id)
    assert final.state is JobState.FAILED
    assert [(e.attempt, e.message) for e in final.errors][1:] == [(2, "py failed"), (3, "go failed")]


def test_a_retry_due_later_wakes_no_worker_and_one_due_now_does(
    service: PostgresService, db_url: str
) -> None:
    job = service.add_job(jobqueue.new_job("w", "o", None, max_retry_count=3))
    listen = Notifications(db_url)
    try:
        _py_stop(service, "w", OutcomeKind.RETRY, error_msg="later", retry_delay=timedelta(hours=1))
        later = listen.collect()
        assert service.make_jobs_due(["w"]) == 1
        _py_stop(service, "w", OutcomeKind.RETRY, error_msg="now", retry_delay=timedelta(0))
        now = listen.collect()
    finally:
        listen.close()
    will_retry = {"id": str(job.id), "type": "w", "origin": "o", "willRetry": True}
    assert later == [("job_stopped", will_retry)]  # no job_available before it is due
    assert sorted(ch for ch, _ in now) == ["job_available", "job_stopped"]


def test_completion_jobs_take_the_retries_of_the_handler_registration(
    service: PostgresService, db_url: str
) -> None:
    service.declare_bundle_handlers({"rep": 5})
    first_seen = service.list_bundle_handlers()[0].last_seen_at
    service.declare_bundle_handlers({"rep": 1})  # a newer registration wins
    (declared,) = service.list_bundle_handlers()
    assert (declared.bundle_type, declared.max_retry_count, declared.pending_jobs) == ("rep", 1, 0)
    assert declared.last_seen_at > first_seen
    service.add_job_bundle(jobqueue.new_job_bundle("rep", "o", [JobDesc(type="x", payload=1)]))
    _py_stop(service, "x", OutcomeKind.SUCCEEDED, result_json="1")
    (completion,) = service.claim_jobs(["jobqueue.bundle:rep"], 1)
    assert completion.max_retry_count == 1
    assert service.list_bundle_handlers()[0].pending_jobs == 1
    assert service.remove_bundle_handler("rep") and not service.remove_bundle_handler("rep")
    assert service.list_bundle_handlers() == []
