"""Revision jobqueue_0003 (unique and periodic jobs) upgrades a database of revision
jobqueue_0001 that holds jobs: the jobs stay, the new columns are null, and the result is
the schema of worker.sql. Written from jobqueue_0001 through head, whatever lies between."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import PgServer
from test_migrations import assert_same, catalog

import jobqueue
from jobworker_pg import PostgresService, current_revision, install_schema, migrate


@pytest.fixture
def two_dbs(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    names = [f"jobqueue_mig3_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    urls = tuple(pg_server.create_database(n) for n in names)
    yield urls[0], urls[1]
    for n in names:
        pg_server.drop_database(n)


def test_upgrade_from_0001_keeps_jobs_and_adds_the_unique_and_periodic_schema(
    two_dbs: tuple[str, str],
) -> None:
    old, fresh = two_dbs
    migrate(old, "jobqueue_0001")
    with psycopg.connect(old, autocommit=True) as conn:
        for i in range(3):
            conn.execute(
                "insert into worker.job (id, type, payload, origin)"
                " values (gen_random_uuid(), 'old', %s, 'o')",
                (f'{{"i": {i}}}',),
            )
        assert conn.execute("select to_regclass('worker.schedule')").fetchone() == (None,)
    migrate(old)
    assert current_revision(old) not in (None, "jobqueue_0001")  # at head, through jobqueue_0003
    with psycopg.connect(old) as conn:
        rows = conn.execute(
            "select payload->>'i', unique_key, scheduled_for from worker.job order by payload->>'i'"
        ).fetchall()
    assert rows == [("0", None, None), ("1", None, None), ("2", None, None)]
    install_schema(fresh)
    assert_same(catalog(old), catalog(fresh))
    service = PostgresService(old)
    try:  # and the upgraded database takes unique jobs
        first = service.add_job(jobqueue.new_job("new", "o", None, unique_key="k"))
        assert service.add_job(jobqueue.new_job("new", "o", None, unique_key="k")).id == first.id
    finally:
        service.close()
