"""Transactional enqueue: jobs join the caller's transaction (psycopg, SQLAlchemy Session and
Connection), stay invisible to workers until it commits and vanish with a rollback."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from helpers import KINDS, Notifications, count_jobs, open_conn, sa_engine
from sqlalchemy.orm import Session

import jobqueue
from jobqueue import DatabaseError, InvalidJobError, JobDesc
from jobworker_pg import PostgresService

OPS = ["add", "add_many", "add_bundle"]


def add(op: str, conn: Any) -> list[str]:
    """Enqueue through the module functions with ``op``; returns the job types added."""
    if op == "add":
        jobqueue.add(jobqueue.new_job("t", "o", 1), conn=conn)
    elif op == "add_many":
        jobqueue.add_many([jobqueue.new_job("t", "o", i) for i in range(3)], conn=conn)
    else:
        jobqueue.add_bundle(
            jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(2)]), conn=conn
        )
    return ["t"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_add_in_rolled_back_transaction_leaves_no_row_and_no_notification(
    current: PostgresService, db_url: str, kind: str, op: str
) -> None:
    listen = Notifications(db_url)
    try:
        with open_conn(kind, db_url) as (conn, _, rollback):
            add(op, conn)  # the first statement of the transaction
            rollback()
        assert listen.collect() == []
    finally:
        listen.close()
    assert count_jobs(db_url) == 0


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kind", KINDS)
def test_add_in_open_transaction_is_claimable_only_after_commit(
    current: PostgresService, db_url: str, kind: str, op: str
) -> None:
    listen = Notifications(db_url, ("job_available",))
    try:
        with open_conn(kind, db_url) as (conn, commit, _):
            add(op, conn)
            assert current.claim_jobs(["t"], 10) == []
            assert count_jobs(db_url) == 0
            assert listen.collect(quiet=0.1) == []
            commit()
        assert [channel for channel, _ in listen.collect()] == ["job_available"]
    finally:
        listen.close()
    assert current.claim_jobs(["t"], 10) != []


def test_session_commits_its_own_rows_and_the_job_together(current: PostgresService, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("create table orders (id int primary key)")
    engine = sa_engine(db_url)
    try:
        with Session(engine) as session:
            session.execute(sa.text("insert into orders values (1)"))
            job = jobqueue.add(jobqueue.new_job("ship", "orders", {"order": 1}), conn=session)
            with psycopg.connect(db_url) as other:  # the outside world sees neither yet
                assert other.execute("select count(*) from orders").fetchone() == (0,)
            session.commit()
        with engine.connect() as connection:
            assert connection.execute(sa.text("select count(*) from orders")).scalar() == 1
    finally:
        engine.dispose()
    assert current.get_job(job.id).payload == {"order": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_failed_insert_rolls_back_to_a_savepoint_and_keeps_the_transaction_usable(
    current: PostgresService, db_url: str, kind: str
) -> None:
    with open_conn(kind, db_url) as (conn, commit, _):
        first = jobqueue.add_many([jobqueue.new_job("t", "o", 1)], conn=conn)[0]
        duplicate = jobqueue.new_job("t", "o", 2, id=first.id)
        with pytest.raises(DatabaseError, match="UniqueViolation"):
            jobqueue.add_many([jobqueue.new_job("t", "o", 3), duplicate], conn=conn)
        jobqueue.add(jobqueue.new_job("t", "o", 4), conn=conn)
        commit()
    assert sorted(j.payload for j in current.get_all_jobs_to_do()) == [1, 4]


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_job_raises_before_sql_and_keeps_the_transaction_usable(
    current: PostgresService, db_url: str, kind: str
) -> None:
    bad = jobqueue.new_job("t", "o", None)
    bad.origin = ""
    with open_conn(kind, db_url) as (conn, commit, _):
        jobqueue.add(jobqueue.new_job("t", "o", 1), conn=conn)
        for call in (jobqueue.add, lambda j, conn: jobqueue.add_many([j], conn=conn)):
            with pytest.raises(InvalidJobError, match="origin must not be empty"):
                call(bad, conn=conn)
        commit()
    assert count_jobs(db_url) == 1


def test_autocommit_psycopg_connection_stores_a_bundle_atomically(
    current: PostgresService, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        bundle = jobqueue.add_bundle(
            jobqueue.new_job_bundle("b", "o", [JobDesc(type="t", payload=i) for i in range(3)]), conn=conn
        )
    assert len(current.get_job_bundle(bundle.id).jobs) == 3


def test_sqlalchemy_connection_on_another_driver_is_rejected(service: PostgresService) -> None:
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as connection, pytest.raises(InvalidJobError, match="postgresql\\+psycopg"):
            service.add_job(jobqueue.new_job("t", "o", None), conn=connection)
    finally:
        engine.dispose()
