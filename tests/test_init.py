"""init_job_queue: the default service, the worker's database and the listener registries."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

import jobqueue
import jobworker
from jobqueue import JobDesc, JobState
from jobworker._database import Outcome, OutcomeKind
from jobworker_pg import PostgresService, init_job_queue, init_job_queue_reset_interrupted_jobs


@pytest.fixture
def initialised(db_url: str) -> Iterator[PostgresService]:
    service = init_job_queue(db_url)
    try:
        yield service
    finally:
        jobqueue.set_default_service(None)
        jobworker.set_database(None)
        service.close()


def stop(service: PostgresService, job_type: str) -> None:
    (job,) = service.claim_jobs([job_type], 1)
    assert job.claim_token is not None
    service.save_outcomes(
        [
            Outcome(
                job.id,
                job.claim_token,
                OutcomeKind.SUCCEEDED,
                job.attempt,
                result_json="1",
                bundle_id=job.bundle_id,
            )
        ]
    )


def test_init_sets_the_default_service_and_the_worker_database(initialised: PostgresService) -> None:
    assert jobqueue.get_service() is initialised
    assert jobworker.default_pool().database is initialised
    job = jobqueue.add(jobqueue.new_job("t", "o", 1))
    assert jobqueue.get_job(job.id).payload == 1


def test_job_and_bundle_listeners_fire_through_notifications(initialised: PostgresService) -> None:
    stopped: list[tuple[str, bool]] = []
    bundles: list[str] = []
    typed: list[str] = []
    all_seen = threading.Event()

    def on_job(job: jobqueue.Job, will_retry: bool) -> None:
        stopped.append((str(job.payload), will_retry))

    def on_bundle(bundle: jobqueue.JobBundle) -> None:
        bundles.append(bundle.type)

    def on_typed(bundle: jobqueue.JobBundle) -> None:
        typed.append(bundle.type)
        all_seen.set()

    jobqueue.add_job_stopped_listener(on_job)
    jobqueue.add_job_bundle_stopped_listener(on_bundle)
    jobqueue.set_job_bundle_of_type_stopped_listener("report", on_typed)
    try:
        assert initialised.listener.wait_connected(10)
        jobqueue.add_bundle(
            jobqueue.new_job_bundle("report", "o", [JobDesc(type="p", payload=i) for i in range(2)])
        )
        stop(initialised, "p")
        stop(initialised, "p")
        assert all_seen.wait(10)
    finally:
        jobqueue.remove_job_stopped_listener(on_job)
        jobqueue.remove_job_bundle_stopped_listener(on_bundle)
        jobqueue.remove_job_bundle_of_type_stopped_listener("report")
    assert sorted(stopped) == [("0", False), ("1", False)]
    assert bundles == ["report"] and typed == ["report"]


def test_removed_listeners_hear_nothing(initialised: PostgresService) -> None:
    heard: list[str] = []
    later = threading.Event()

    def removed(job: jobqueue.Job, will_retry: bool) -> None:
        heard.append("removed")

    def kept(job: jobqueue.Job, will_retry: bool) -> None:
        later.set()

    jobqueue.add_job_stopped_listener(removed)
    jobqueue.remove_job_stopped_listener(removed)
    jobqueue.add_job_stopped_listener(kept)
    try:
        assert initialised.listener.wait_connected(10)
        jobqueue.add(jobqueue.new_job("t", "o", None))
        stop(initialised, "t")
        assert later.wait(10)
    finally:
        jobqueue.remove_job_stopped_listener(kept)
    assert heard == []


def test_init_with_reset_requeues_jobs_whose_worker_died(db_url: str) -> None:
    with PostgresService(db_url) as service:
        job = service.add_job(jobqueue.new_job("t", "o", None, max_retry_count=1))
        service.claim_jobs(["t"], 1)
    with psycopg.connect(db_url) as conn:
        conn.execute("update worker.job set worker_alive_at = now() - interval '10 min'")
    # dead_for is short: the reaper also waits until the server has been up for dead_for.
    service = init_job_queue_reset_interrupted_jobs(db_url, dead_for=1)
    try:
        requeued = service.get_job(job.id)
        assert requeued.state is JobState.RETRYING
        assert requeued.error_msg is not None and requeued.error_msg.startswith("worker lost")
    finally:
        jobqueue.set_default_service(None)
        service.close()


def _reset_init() -> None:
    jobqueue.set_default_service(None)
    jobworker.set_database(None)


def test_a_second_init_closes_the_first_service(db_url: str) -> None:
    first = init_job_queue(db_url)
    second = init_job_queue(db_url)
    try:
        assert jobqueue.get_service() is second
        with pytest.raises(jobqueue.ServiceClosedError):
            first.get_job(uuid.uuid4())  # closed: its listener no longer fires the registries
        assert not first.listener.wait_connected(0)
    finally:
        _reset_init()
        second.close()


def test_an_init_that_raises_leaves_no_pool_or_listener_open(db_url: str) -> None:
    first = init_job_queue(db_url)
    pool = jobworker.default_pool()
    pool.registry.register("init.t", lambda job: None)
    pool.start_threads(1)
    before = {t.ident for t in threading.enumerate()}
    try:
        with pytest.raises(jobqueue.RegistrationError):
            init_job_queue(db_url)
        leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        assert leaked == []
        assert jobqueue.get_service() is first and pool.database is first
    finally:
        pool.stop_threads()
        pool.registry.unregister("init.t")
        _reset_init()
        first.close()


def test_the_listeners_connection_errors_reach_on_error(db_url: str) -> None:
    errors: list[BaseException] = []
    reported = threading.Event()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        reported.set()

    def on_stopped(job: jobqueue.Job, will_retry: bool) -> None:
        pass

    jobworker.on_error(on_error)
    service = init_job_queue(db_url)
    jobqueue.add_job_stopped_listener(on_stopped)  # a process that listens has the connection
    try:
        assert service.listener.wait_connected(10)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity "
                "where application_name = 'jobqueue-listen' and datname = current_database()"
            )
        assert reported.wait(10)
        assert isinstance(errors[0], psycopg.OperationalError)
    finally:
        jobqueue.remove_job_stopped_listener(on_stopped)
        jobworker.on_error(None)
        _reset_init()
        service.close()


def test_init_with_an_unknown_database_fails_at_once_with_the_servers_reason(db_url: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    params["dbname"] = "jobqueue_no_such_database"
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(jobqueue.DatabaseError, match='database "jobqueue_no_such_database" does not exist'):
        init_job_queue(psycopg.conninfo.make_conninfo("", **params))
    assert [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()] == []
    with pytest.raises(jobqueue.NotInitializedError):
        jobqueue.get_service().get_job(uuid.uuid4())


def test_the_first_call_on_an_unreachable_database_says_why(db_url: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    params["dbname"] = "jobqueue_no_such_database"
    # Not the pool's "couldn't get a connection after 30 s", but the server's reason.
    with (
        PostgresService(psycopg.conninfo.make_conninfo("", **params)) as service,
        pytest.raises(jobqueue.DatabaseError, match="does not exist"),
    ):
        service.add_jobs([jobqueue.new_job("t", "o", i) for i in range(3)])
