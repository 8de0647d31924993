"""The fast defaults (issue 16): prepared hot statements planned once, a switch that
turns them off (PgBouncer), and no stop-event machinery in a process that does not listen."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from helpers import wait_for

import jobqueue
import jobworker
from jobworker_pg import PostgresService, init_job_queue
from jobworker_pg._pooler import PREPARE_THRESHOLD_ENV


def _prepared(service: PostgresService) -> list[tuple[str, int, int]]:
    """(statement, generic_plans, custom_plans) prepared on the service's one pooled connection."""
    with service._pool.connection() as conn:
        rows = conn.execute(
            "select statement, generic_plans, custom_plans from pg_prepared_statements"
        ).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def _claim_each(service: PostgresService, job_type: str, n: int) -> None:
    service.add_jobs([jobqueue.new_job(job_type, "o", i) for i in range(n)])
    for _ in range(n):
        assert len(service.claim_jobs([job_type], 1)) == 1


def test_the_claim_is_prepared_once_and_planned_by_postgresql(db_url: str) -> None:
    """Prepared at its first use (parsed once); the plan cache mode stays PostgreSQL's default,
    which picks a custom plan whenever the generic one (LIMIT unknown) would be dearer: on a big
    table that generic plan hash-joins the whole job table (docs/performance.md)."""
    with PostgresService(db_url, min_size=1, max_size=1) as service:
        _claim_each(service, "t", 12)
        claims = [p for p in _prepared(service) if "for update skip locked" in p[0]]
        with service._pool.connection() as conn:
            mode = conn.execute("show plan_cache_mode").fetchone()
    assert len(claims) == 1, claims
    _, generic, custom = claims[0]
    assert generic + custom == 12 and mode == ("auto",), claims


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_prepare_off_prepares_nothing_and_sets_nothing(
    db_url: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs: dict[str, Any] = {}
    if how == "argument":
        kwargs["prepare"] = False
    else:
        monkeypatch.setenv(PREPARE_THRESHOLD_ENV, "none")
    with PostgresService(db_url, min_size=1, max_size=1, **kwargs) as service:
        _claim_each(service, "t", 8)
        assert _prepared(service) == []


@pytest.mark.parametrize(("value", "expected"), [("", True), ("5", True), ("none", False), ("off", False)])
def test_prepare_follows_the_prepare_threshold_variable(
    db_url: str, value: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREPARE_THRESHOLD_ENV, value)
    with PostgresService(db_url, min_size=1, max_size=1) as service:
        assert service._prepare is expected


def _listener_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("jobqueue-listen")}


def test_init_without_listeners_runs_no_dispatch_thread_until_one_is_added(db_url: str) -> None:
    before = _listener_threads()
    service = init_job_queue(db_url)
    got = threading.Event()

    def on_stopped(job: jobqueue.Job, will_retry: bool) -> None:
        got.set()

    try:
        assert "jobqueue-listener-dispatch" not in _listener_threads() - before
        assert service.listener._listeners == []  # stop notifications are dropped unread
        jobqueue.add_job_stopped_listener(on_stopped)  # connects, and waits for the LISTEN
        assert len(service.listener._listeners) == 1
        jobworker.register("fast.t", lambda job: None)
        jobworker.start_threads(1)
        jobqueue.add(jobqueue.new_job("fast.t", "o", 1))
        assert got.wait(10)
        jobworker.finish_threads()
    finally:
        jobqueue.remove_job_stopped_listener(on_stopped)
        jobworker.stop_threads()
        jobworker.unregister("fast.t")
        jobqueue.set_default_service(None)
        jobworker.set_database(None)
        service.close()


def test_a_listener_added_before_init_connects_at_init(db_url: str) -> None:
    def on_stopped(job: jobqueue.Job, will_retry: bool) -> None:
        pass

    jobqueue.add_job_stopped_listener(on_stopped)
    service = init_job_queue(db_url)
    try:
        assert len(service.listener._listeners) == 1
    finally:
        jobqueue.remove_job_stopped_listener(on_stopped)
        jobqueue.set_default_service(None)
        jobworker.set_database(None)
        service.close()


def test_stopped_jobs_queued_for_a_listener_are_read_back_in_one_query(db_url: str) -> None:
    """The README path with a stop listener: jobs that stopped while the listener was busy
    are read together (get_jobs), not with a round trip each; each is reported once."""
    service = init_job_queue(db_url)
    reads: list[int] = []
    real_get_job, real_get_jobs = service.get_job, service.get_jobs

    def counted_get_job(job_id: UUID) -> jobqueue.Job:
        reads.append(1)
        return real_get_job(job_id)

    def counted_get_jobs(job_ids: Sequence[UUID]) -> list[jobqueue.Job]:
        reads.append(len(job_ids))
        return real_get_jobs(job_ids)

    service.get_job = counted_get_job  # type: ignore[method-assign]
    service.get_jobs = counted_get_jobs  # type: ignore[method-assign]
    entered, release, seen = threading.Event(), threading.Event(), threading.Event()
    reported: list[Any] = []

    def on_stopped(job: jobqueue.Job, will_retry: bool) -> None:
        if job.payload == "first":  # hold the dispatcher: the next stop events queue up
            entered.set()
            release.wait(30)
            return
        reported.append(job.payload)
        if len(reported) == 100:
            seen.set()

    jobqueue.add_job_stopped_listener(on_stopped)
    try:
        jobworker.register("fast.many", lambda job: None)
        jobworker.start_threads(4)
        jobqueue.add(jobqueue.new_job("fast.many", "o", "first"))
        assert entered.wait(30)
        jobs = jobqueue.add_many([jobqueue.new_job("fast.many", "o", i) for i in range(100)])
        ids = [j.id for j in jobs]
        wait_for(lambda: all(j.stopped for j in real_get_jobs(ids)), 30, "all jobs stopped")
        wait_for(lambda: service.listener._events.qsize() == 100, 30, "their stop events queued")
        reads.clear()
        release.set()
        assert seen.wait(30), len(reported)
        jobworker.finish_threads()
    finally:
        release.set()
        jobqueue.remove_job_stopped_listener(on_stopped)
        jobworker.stop_threads()
        jobworker.unregister("fast.many")
        jobqueue.set_default_service(None)
        jobworker.set_database(None)
        service.close()
    assert sorted(reported) == list(range(100))
    assert reads == [100], reads  # one query for the 100 queued events
