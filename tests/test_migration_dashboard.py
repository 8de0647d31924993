"""Revision jobqueue_0005 (dashboard): an older database with jobs in it upgrades, data kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers import PgServer

from jobworker_pg._migrate import current_revision, migrate


@pytest.fixture
def old_db(pg_server: PgServer) -> Iterator[str]:
    name = f"jobqueue_dash_mig_{uuid.uuid4().hex[:10]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


def test_upgrade_from_0001_keeps_jobs_and_adds_the_registry_and_trace_column(old_db: str) -> None:
    migrate(old_db, "jobqueue_0001")
    job_id = uuid.uuid4()
    with psycopg.connect(old_db) as conn:
        conn.execute(
            "insert into worker.job (id, type, payload, origin) values (%s, 't', '{\"a\": 1}', 'o')",
            (job_id,),
        )
    migrate(old_db)
    with psycopg.connect(old_db) as conn:
        row = conn.execute(
            "select payload, trace_context from worker.job where id = %s", (job_id,)
        ).fetchone()
        assert row == ({"a": 1}, None)
        conn.execute(
            "insert into worker.worker_process (id, host, pid, threads) values (%s, 'h', 1, 2)",
            (uuid.uuid4(),),
        )
        assert conn.execute("select count(*) from worker.worker_process").fetchone() == (1,)
    assert current_revision(old_db) not in (None, "jobqueue_0001")
