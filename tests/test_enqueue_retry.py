"""A standalone enqueue whose connection fails is tried once more, never storing a job twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import jobqueue
from jobqueue import DatabaseError, Job, JobDesc
from jobworker_pg import PostgresService, _steps
from jobworker_pg._errors import translate_errors

Adder = Callable[[PostgresService], list[Job]]


def _one(service: PostgresService) -> list[Job]:
    return [service.add_job(jobqueue.new_job("retry.t", "test", 1))]


def _many(service: PostgresService) -> list[Job]:
    return service.add_jobs([jobqueue.new_job("retry.t", "test", i) for i in range(3)])


def _copied(service: PostgresService) -> list[Job]:  # enough jobs for the COPY path
    return service.add_jobs([jobqueue.new_job("retry.t", "test", i) for i in range(150)])


def _bundle(service: PostgresService) -> list[Job]:
    bundle = jobqueue.new_job_bundle(
        "retry.b", "test", [JobDesc(type="retry.t", payload=i) for i in range(2)]
    )
    return list(service.add_job_bundle(bundle).jobs)


ADDERS = {"add_job": _one, "add_jobs": _many, "add_jobs_copy": _copied, "add_job_bundle": _bundle}


def _losing_the_connection(monkeypatch: pytest.MonkeyPatch, *, after_commit: bool) -> list[str]:
    """Make the next insert's connection fail once: after it committed (its reply lost) or
    before it ran. Returns the actions it failed."""
    real = _steps.run_steps
    failed: list[str] = []

    def run_steps(conn: psycopg.Connection[Any], action: str, steps: Any, *, atomic: bool = False) -> Any:
        if action.startswith("add_") and not failed:
            failed.append(action)
            if after_commit:
                real(conn, action, steps, atomic=atomic)
            with translate_errors(action):
                raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(conn, action, steps, atomic=atomic)

    monkeypatch.setattr(_steps, "run_steps", run_steps)
    return failed


def _count(db_url: str, jobs: list[Job]) -> int:
    with psycopg.connect(db_url) as c:
        row = c.execute(
            "select count(*) from worker.job where id = any(%s)", [[j.id for j in jobs]]
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("after_commit", [True, False], ids=["reply-lost", "never-ran"])
@pytest.mark.parametrize("adder", list(ADDERS))
def test_an_enqueue_whose_connection_fails_is_stored_once(
    service: PostgresService, db_url: str, monkeypatch: pytest.MonkeyPatch, adder: str, after_commit: bool
) -> None:
    failed = _losing_the_connection(monkeypatch, after_commit=after_commit)
    jobs = ADDERS[adder](service)
    assert failed  # the seam did fail the first try
    assert _count(db_url, jobs) == len(jobs)
    stored = service.get_job(jobs[0].id)
    assert jobs[0].created_at == stored.created_at


def test_a_real_duplicate_id_is_still_an_error(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("retry.t", "test", 1))
    with pytest.raises(DatabaseError, match="UniqueViolation"):
        service.add_job(jobqueue.new_job("retry.t", "test", 1, id=job.id))


def test_enqueues_while_backends_are_killed_never_store_a_job_twice(
    service: PostgresService, db_url: str
) -> None:
    stop = threading.Event()

    def kill() -> None:
        with psycopg.connect(db_url, autocommit=True) as c:
            while not stop.wait(0.5):  # 2 kills a second, as in the chaos cells
                c.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid() "
                    "and application_name <> 'jobqueue-listen'"
                )

    killer = threading.Thread(target=kill, name="backend-killer")
    killer.start()
    added: list[Job] = []
    raised: list[Job] = []
    try:
        for i in range(200):
            job = jobqueue.new_job("retry.t", "test", i)
            try:
                added.append(service.add_job(job))
            except DatabaseError:
                raised.append(job)
    finally:
        stop.set()
        killer.join(10)
    assert _count(db_url, added) == len(added)
    every = added + raised
    with psycopg.connect(db_url) as c:
        rows = c.execute(
            "select id, count(*) from worker.job where id = any(%s) group by id", [[j.id for j in every]]
        ).fetchall()
    assert all(n == 1 for _, n in rows)
    assert len(raised) < len(added)  # most adds get through: the retry covers a killed connection
