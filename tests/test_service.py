"""PostgresService against a real PostgreSQL: every Service method, success and error paths."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from helpers import Notifications, RecordingListener

import jobqueue
from jobqueue import InvalidJobError, JobDesc, JobNotFoundError, JobState, ServiceClosedError
from jobworker._database import Outcome, OutcomeKind
from jobworker_pg import PostgresService


def count_jobs(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("select count(*) from worker.job").fetchone()
        assert row is not None
        return int(row[0])


def stop(
    service: PostgresService, job_type: str, kind: OutcomeKind = OutcomeKind.SUCCEEDED, **kw: Any
) -> None:
    """Claim one job of ``job_type`` and end its attempt with ``kind``."""
    (job,) = service.claim_jobs([job_type], 1)
    assert job.claim_token is not None
    applied = service.save_outcomes([Outcome(job.id, job.claim_token, kind, job.attempt, **kw)])
    assert applied == {job.id}


# -- add and get -----------------------------------------------------------------------


def test_add_job_round_trips_every_field(service: PostgresService) -> None:
    start = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    payload = {"n": 1, "s": "é🎉", "l": [1.5, None, True], "o": {"k": "v"}}
    job = jobqueue.new_job("mail.send", "signup", payload, priority=-7, start_at=start, max_retry_count=4)
    stored = service.add_job(job)
    assert stored.created_at is not None and stored.updated_at is not None
    got = service.get_job(job.id)
    assert got.id == job.id and got.bundle_id is None
    assert (got.type, got.origin, got.payload) == ("mail.send", "signup", payload)
    assert (got.priority, got.max_retry_count, got.current_retry_count, got.attempt) == (-7, 4, 0, 0)
    assert got.start_at == start
    assert got.started_at is None and got.stopped_at is None and got.worker_alive_at is None
    assert got.error_msg is None and got.error_data is None and got.result is None
    assert got.errors == [] and got.cancelled_at is None and got.claim_token is None
    assert got.created_at == stored.created_at
    assert got.state is JobState.SCHEDULED


@pytest.mark.parametrize("payload", [None, 0, -1.25, "text", [1, [2, [3]]], {"": ""}, True])
def test_any_json_value_round_trips_as_payload(service: PostgresService, payload: Any) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", payload))
    assert service.get_job(job.id).payload == payload


def test_names_with_quotes_and_dollars_round_trip(service: PostgresService) -> None:
    name = 'it\'s $$ "q" \\ 🎉'
    job = service.add_job(jobqueue.new_job(name, name, {name: name}))
    got = service.get_job(job.id)
    assert (got.type, got.origin, got.payload) == (name, name, {name: name})


def test_get_job_of_unknown_id_raises_not_found(service: PostgresService) -> None:
    missing = uuid4()
    with pytest.raises(JobNotFoundError, match=str(missing)) as info:
        service.get_job(missing)
    assert isinstance(info.value, LookupError)


def test_get_job_rejects_a_non_uuid_before_sql(service: PostgresService) -> None:
    with pytest.raises(InvalidJobError, match="job id must be a UUID"):
        service.get_job("nope")  # type: ignore[arg-type]


def test_add_job_with_duplicate_id_raises_database_error(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    with pytest.raises(jobqueue.DatabaseError, match="UniqueViolation") as info:
        service.add_job(jobqueue.new_job("t", "o", None, id=job.id))
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)


def test_add_job_refuses_something_that_is_not_a_job(service: PostgresService) -> None:
    with pytest.raises(InvalidJobError, match=r"expected a jobqueue\.Job"):
        service.add_job({"type": "t"})  # type: ignore[arg-type]


def test_add_job_revalidates_fields_changed_after_new_job(service: PostgresService, db_url: str) -> None:
    job = jobqueue.new_job("t", "o", None)
    job.type = ""
    with pytest.raises(InvalidJobError, match="job type must not be empty"):
        service.add_job(job)
    job = jobqueue.new_job("t", "o", None)
    job.payload = {"bad": float("nan")}
    with pytest.raises(InvalidJobError, match="not valid JSON"):
        service.add_job(job)
    assert count_jobs(db_url) == 0


# -- transactions ----------------------------------------------------------------------


def test_add_in_a_transaction_is_invisible_until_commit(service: PostgresService, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        job = service.add_job(jobqueue.new_job("t", "o", 1), conn=conn)
        assert count_jobs(db_url) == 0
        assert service.claim_jobs(["t"], 10) == []
        conn.commit()
    assert service.get_job(job.id).payload == 1


def test_add_in_rolled_back_transaction_leaves_nothing_and_never_notifies(
    service: PostgresService, db_url: str
) -> None:
    listen = Notifications(db_url)
    try:
        with psycopg.connect(db_url) as conn:
            service.add_job(jobqueue.new_job("t", "o", 1), conn=conn)
            service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(5)], conn=conn)
            service.add_job_bundle(
                jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=1)]), conn=conn
            )
            conn.rollback()
        assert listen.collect() == []
    finally:
        listen.close()
    assert count_jobs(db_url) == 0


def test_invalid_job_in_open_transaction_leaves_it_usable(service: PostgresService, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("create table app (x int)")
        conn.execute("insert into app values (1)")
        bad: list[Callable[[], jobqueue.Job]] = [
            lambda: jobqueue.new_job("", "o", None),
            lambda: jobqueue.new_job("t", "o", {"k": "\x00"}),
            lambda: jobqueue.new_job("t", "o", "x" * (2 * 1024 * 1024)),
            lambda: jobqueue.new_job("x" * 101, "o", None),
        ]
        for make in bad:
            with pytest.raises(InvalidJobError):
                service.add_job(make(), conn=conn)
        job = jobqueue.new_job("t", "o", None)
        job.origin = ""
        with pytest.raises(InvalidJobError):
            service.add_job(job, conn=conn)
        with pytest.raises(InvalidJobError):
            service.add_jobs([jobqueue.new_job("t", "o", 1), job], conn=conn)
        # Still usable: the failed calls sent nothing.
        conn.execute("insert into app values (2)")
        conn.commit()
        row = conn.execute("select count(*) from app").fetchone()
        assert row == (2,)
    assert count_jobs(db_url) == 0


def test_conn_of_an_unknown_kind_is_rejected(service: PostgresService) -> None:
    with pytest.raises(InvalidJobError, match="conn= must be a psycopg Connection"):
        service.add_job(jobqueue.new_job("t", "o", None), conn=object())


# -- add_many ----------------------------------------------------------------------------


def test_add_many_inserts_10000_jobs_with_one_notification_per_type(
    service: PostgresService, db_url: str
) -> None:
    listen = Notifications(db_url, ("job_available",))
    try:
        jobs = [jobqueue.new_job("a" if i % 2 else "b", "o", {"i": i}) for i in range(10_000)]
        stored = service.add_jobs(jobs)
        assert len(stored) == 10_000 and all(j.created_at is not None for j in stored)
        notes = listen.collect()
    finally:
        listen.close()
    assert count_jobs(db_url) == 10_000
    assert sorted(n[1]["type"] for n in notes) == ["a", "b"]
    assert set(notes[0][1]) == {"id", "type", "origin"}


def test_add_many_is_all_or_nothing_on_bad_input(service: PostgresService, db_url: str) -> None:
    good = jobqueue.new_job("t", "o", 1)
    with pytest.raises(InvalidJobError, match=r"jobs\[1\]: id .* appears twice"):
        service.add_jobs([good, good])
    with pytest.raises(InvalidJobError, match="add_many takes a list"):
        service.add_jobs(good)  # type: ignore[arg-type]
    assert service.add_jobs([]) == []
    assert count_jobs(db_url) == 0


def test_add_many_keeps_insertion_order_for_equal_priority(service: PostgresService) -> None:
    jobs = service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(50)])
    assert [j.payload for j in service.get_all_jobs_to_do()] == [j.payload for j in jobs]


# -- bundles -------------------------------------------------------------------------------


def test_add_bundle_stores_bundle_and_jobs(service: PostgresService) -> None:
    bundle = jobqueue.new_job_bundle("report", "cron", [JobDesc(type="part", payload=i) for i in range(3)])
    service.add_job_bundle(bundle)
    got = service.get_job_bundle(bundle.id)
    assert (got.type, got.origin, got.num_jobs, got.num_jobs_stopped) == ("report", "cron", 3, 0)
    assert [j.payload for j in got.jobs] == [0, 1, 2]
    assert all(j.bundle_id == bundle.id for j in got.jobs)


def test_bundle_counts_stopped_jobs_and_notifies_once(service: PostgresService, db_url: str) -> None:
    listener = RecordingListener()
    service.add_listener(listener)
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("report", "cron", [JobDesc(type="part", payload=i) for i in range(3)])
    )
    stop(service, "part")
    assert service.get_job_bundle(bundle.id).num_jobs_stopped == 1
    stop(service, "part", OutcomeKind.FAILED, error_msg="boom", error_type="E")
    (last,) = [j for j in service.get_job_bundle(bundle.id).jobs if not j.stopped]
    service.cancel_job(last.id)
    got = service.get_job_bundle(bundle.id)
    assert got.num_jobs_stopped == 3 and got.stopped
    listener.wait(lambda: len(listener.bundles) >= 1 and len(listener.jobs) >= 3)
    assert listener.bundles == [(bundle.id, "report", "cron")]


def test_reset_of_a_stopped_bundle_job_reopens_the_bundle(service: PostgresService) -> None:
    bundle = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=1)]))
    stop(service, "p", OutcomeKind.FAILED, error_msg="x")
    assert service.get_job_bundle(bundle.id).num_jobs_stopped == 1
    service.reset_job(bundle.jobs[0].id)
    assert service.get_job_bundle(bundle.id).num_jobs_stopped == 0


def test_deleting_an_unstopped_bundle_job_lets_the_bundle_complete(service: PostgresService) -> None:
    bundle = service.add_job_bundle(
        jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=i) for i in range(2)])
    )
    service.delete_job(bundle.jobs[0].id)
    stop(service, "p")
    assert service.get_job_bundle(bundle.id).stopped


def test_delete_bundle_deletes_its_jobs(service: PostgresService, db_url: str) -> None:
    bundle = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=1)]))
    service.delete_job_bundle(bundle.id)
    assert count_jobs(db_url) == 0
    with pytest.raises(JobNotFoundError, match="job bundle"):
        service.get_job_bundle(bundle.id)
    with pytest.raises(JobNotFoundError):
        service.delete_job_bundle(bundle.id)


def test_add_bundle_rejects_inconsistent_bundles(service: PostgresService, db_url: str) -> None:
    bundle = jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=1)])
    bundle.num_jobs = 2
    with pytest.raises(InvalidJobError, match="num_jobs=2 but holds 1"):
        service.add_job_bundle(bundle)
    other = jobqueue.new_job_bundle("b", "o", [JobDesc(type="p", payload=1)])
    other.jobs[0].bundle_id = uuid4()
    with pytest.raises(InvalidJobError, match="belongs to bundle"):
        service.add_job_bundle(other)
    with pytest.raises(InvalidJobError, match="add_job_bundle"):
        service.add_job(other.jobs[0])
    assert count_jobs(db_url) == 0


# -- delete, reset, cancel --------------------------------------------------------------------


def test_delete_job_and_not_found(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    service.delete_job(job.id)
    with pytest.raises(JobNotFoundError):
        service.get_job(job.id)
    with pytest.raises(JobNotFoundError):
        service.delete_job(job.id)


def test_reset_job_clears_the_outcome_and_keeps_the_history(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    stop(
        service, "t", OutcomeKind.FAILED, error_msg="boom", error_type="ValueError", error_data_json='{"a":1}'
    )
    failed = service.get_job(job.id)
    assert failed.state is JobState.FAILED and failed.error_data == {"a": 1}
    reset = service.reset_job(job.id)
    assert reset.state is JobState.PENDING
    assert (reset.attempt, reset.error_msg, reset.stopped_at, reset.claim_token) == (0, None, None, None)
    assert [e.message for e in reset.errors] == ["boom"]
    assert service.claim_jobs(["t"], 1)[0].id == job.id


def test_reset_of_a_running_job_voids_the_old_claim(service: PostgresService) -> None:
    service.add_job(jobqueue.new_job("t", "o", None))
    (claimed,) = service.claim_jobs(["t"], 1)
    service.reset_job(claimed.id)
    assert claimed.claim_token is not None
    stale = Outcome(claimed.id, claimed.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")
    assert service.save_outcomes([stale]) == set()
    assert service.get_job(claimed.id).state is JobState.PENDING


def test_reset_jobs_is_all_or_nothing(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    stop(service, "t")
    with pytest.raises(JobNotFoundError):
        service.reset_jobs([job.id, uuid4()])
    assert service.get_job(job.id).state is JobState.SUCCEEDED
    assert [j.id for j in service.reset_jobs([job.id])] == [job.id]
    assert service.reset_jobs([]) == []
    with pytest.raises(InvalidJobError, match="list of job ids"):
        service.reset_jobs(job.id)  # type: ignore[arg-type]


def test_cancel_job_that_has_not_started_never_runs(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    cancelled = service.cancel_job(job.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.stopped
    assert service.claim_jobs(["t"], 10) == []
    assert service.cancel_job(job.id).cancelled_at == cancelled.cancelled_at  # again: unchanged


def test_cancel_of_running_or_unknown_job_raises(service: PostgresService) -> None:
    service.add_job(jobqueue.new_job("t", "o", None))
    (running,) = service.claim_jobs(["t"], 1)
    with pytest.raises(InvalidJobError, match="is running"):
        service.cancel_job(running.id)
    with pytest.raises(JobNotFoundError):
        service.cancel_job(uuid4())


# -- listing and status ------------------------------------------------------------------------


def test_status_counts_every_state_by_type(service: PostgresService) -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    service.add_jobs([jobqueue.new_job("a", "o", i, max_retry_count=1) for i in range(6)])
    service.add_job(jobqueue.new_job("b", "o", None, start_at=future))
    stop(service, "a")  # succeeded
    stop(service, "a", OutcomeKind.FAILED, error_msg="x")  # failed
    stop(service, "a", OutcomeKind.RETRY, error_msg="x", retry_delay=timedelta(hours=1))  # retrying
    service.claim_jobs(["a"], 1)  # running
    pending_a = [j for j in service.get_all_jobs_to_do() if j.type == "a" and j.state is JobState.PENDING]
    service.cancel_job(pending_a[-1].id)  # cancelled
    status = service.get_status()
    a = status.by_type["a"]
    assert (a.pending, a.running, a.retrying, a.succeeded, a.failed, a.cancelled) == (1, 1, 1, 1, 1, 1)
    assert status.by_type["b"].scheduled == 1
    assert status.total == 7 and status.pending == 1 and status.scheduled == 1


def test_lists_of_jobs(service: PostgresService) -> None:
    low = service.add_job(jobqueue.new_job("t", "o", "low", priority=0))
    high = service.add_job(jobqueue.new_job("t", "o", "high", priority=9))
    assert [j.id for j in service.get_all_jobs_to_do()] == [high.id, low.id]
    stop(service, "t", OutcomeKind.FAILED, error_msg="bad")
    assert [j.id for j in service.get_all_jobs_with_errors()] == [high.id]
    (running,) = service.claim_jobs(["t"], 1)
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert [j.id for j in service.get_all_jobs_started_before(later)] == [running.id]
    assert service.get_all_jobs_started_before(datetime.now(UTC) - timedelta(minutes=1)) == []
    with pytest.raises(InvalidJobError, match="timezone-aware"):
        service.get_all_jobs_started_before(datetime.now())


def test_delete_finished_jobs_keeps_failed_and_bundled_jobs(service: PostgresService) -> None:
    ok = service.add_job(jobqueue.new_job("t", "o", 1))
    stop(service, "t")
    bad = service.add_job(jobqueue.new_job("t", "o", 2))
    stop(service, "t", OutcomeKind.FAILED, error_msg="x")
    bundle = service.add_job_bundle(jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=3)]))
    stop(service, "t")
    pending = service.add_job(jobqueue.new_job("t2", "o", 4))
    assert service.delete_finished_jobs(older_than=timedelta(hours=1)) == 0
    assert service.delete_finished_jobs() == 1
    with pytest.raises(JobNotFoundError):
        service.get_job(ok.id)
    for kept in (bad.id, bundle.jobs[0].id, pending.id):
        service.get_job(kept)
    with pytest.raises(InvalidJobError, match="older_than"):
        service.delete_finished_jobs(older_than="1 day")  # type: ignore[arg-type]


# -- notifications ---------------------------------------------------------------------------


def test_job_stopped_is_notified_after_commit_with_go_payloads(service: PostgresService, db_url: str) -> None:
    listen = Notifications(db_url)
    try:
        job = service.add_job(jobqueue.new_job("t", "orig", None, max_retry_count=1))
        stop(service, "t", OutcomeKind.RETRY, error_msg="x", retry_delay=timedelta(0))
        stop(service, "t")
        notes = listen.collect()
    finally:
        listen.close()
    stopped = [n for ch, n in notes if ch == "job_stopped"]
    assert stopped == [
        {"id": str(job.id), "type": "t", "origin": "orig", "willRetry": True},
        {"id": str(job.id), "type": "t", "origin": "orig", "willRetry": False},
    ]
    available = [n for ch, n in notes if ch == "job_available"]
    assert available and all(n == {"id": str(job.id), "type": "t", "origin": "orig"} for n in available)


def test_service_listener_hears_stops_but_not_rolled_back_ones(service: PostgresService, db_url: str) -> None:
    listener = RecordingListener()
    service.add_listener(listener)
    assert service.listener.wait_connected(10)
    job = service.add_job(jobqueue.new_job("t", "o", None))
    # A stop that rolls back is never heard.
    with psycopg.connect(db_url) as conn:
        conn.execute("update worker.job set stopped_at = now() where id = %s", (job.id,))
        conn.rollback()
    stop(service, "t")
    listener.wait(lambda: len(listener.jobs) >= 1)
    assert listener.jobs == [(job.id, "t", "o", False)]


def test_add_listener_rejects_objects_without_the_methods(service: PostgresService) -> None:
    with pytest.raises(InvalidJobError, match="on_job_stopped"):
        service.add_listener(object())  # type: ignore[arg-type]


def test_listener_reconnects_after_its_backend_is_terminated(service: PostgresService, db_url: str) -> None:
    listener = RecordingListener()
    service.add_listener(listener)
    assert service.listener.wait_connected(10)
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where application_name = 'jobqueue-listen' and pid <> pg_backend_pid()"
        )
    from helpers import wait_for

    wait_for(lambda: service.listener.reconnects >= 1 and service.listener.wait_connected(0))
    job = service.add_job(jobqueue.new_job("t", "o", None))
    stop(service, "t")
    listener.wait(lambda: any(j[0] == job.id for j in listener.jobs))


# -- close -----------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_raise(db_url: str) -> None:
    service = PostgresService(db_url)
    service.close()
    service.close()
    with pytest.raises(ServiceClosedError):
        service.get_job(UUID(int=1))
    with pytest.raises(ServiceClosedError):
        service.add_job(jobqueue.new_job("t", "o", None))


def test_conninfo_comes_from_the_environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBQUEUE_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    with PostgresService() as service:
        assert service.conninfo == db_url
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(InvalidJobError, match="JOBQUEUE_DATABASE_URL or DATABASE_URL"):
        PostgresService()


def test_repr_masks_the_password(db_url: str) -> None:
    from jobworker_pg import mask_password

    assert mask_password("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    assert mask_password("host=h password=s3cret user=u") == "host=h password=*** user=u"
    assert "s3cret" not in repr(PostgresService("postgresql://u:s3cret@127.0.0.1:1/db", min_size=0))
