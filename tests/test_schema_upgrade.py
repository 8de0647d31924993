"""Upgrading a database of an older revision, with jobs in it, to head.

install_schema upgrades through the same revision scripts as ``jobqueue migrate``
(jobworker_pg._chain); both are tested from a 0001 database (pg-jobqueue 0.1.0) that
holds a pending job, a half-done bundle, a cancelled and a failed job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import PgServer

from jobworker._database import Outcome, OutcomeKind
from jobworker_pg import PostgresService, install_schema
from jobworker_pg._catalog import SchemaMismatchError, schema_catalog
from jobworker_pg._chain import head_revision, revision_chain
from jobworker_pg._migrate import current_revision, migrate

SQL_0001 = Path(revision_chain()[0].sql_path)


@pytest.fixture
def make_db(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        names.append(f"jobqueue_upgrade_{uuid.uuid4().hex[:12]}")
        return pg_server.create_database(names[-1])

    yield make
    for name in names:
        pg_server.drop_database(name)


def _fill_0001_database(url: str) -> dict[str, uuid.UUID]:
    """Jobs as pg-jobqueue 0.1.0 left them (its triggers count the bundle)."""
    ids = {name: uuid.uuid4() for name in ("pending", "bundle", "b1", "b2", "b3", "cancelled", "failed")}
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into worker.job (id, type, payload, origin, max_retry_count) values"
            " (%(pending)s, 't', '{\"n\": 1}', 'o', 2), (%(cancelled)s, 't', '2', 'o', 2),"
            " (%(failed)s, 't', '3', 'o', 2)",
            ids,
        )
        conn.execute(
            "insert into worker.job_bundle (id, type, origin, num_jobs) values (%(bundle)s, 'B', 'o', 3)", ids
        )
        conn.execute(
            "insert into worker.job (id, bundle_id, type, payload, origin) values"
            " (%(b1)s, %(bundle)s, 'bt', '1', 'o'), (%(b2)s, %(bundle)s, 'bt', '2', 'o'),"
            " (%(b3)s, %(bundle)s, 'bt', '3', 'o')",
            ids,
        )
        # 0.1.0's writes: b1 ran and succeeded, a cancel, a permanent failure on attempt 1.
        conn.execute(
            "update worker.job set started_at = now(), stopped_at = now(), attempt = 1, result = '1'"
            " where id = %(b1)s",
            ids,
        )
        conn.execute(
            "update worker.job set stopped_at = now(), cancelled_at = now(), error_msg = 'job cancelled'"
            " where id = %(cancelled)s",
            ids,
        )
        conn.execute(
            "update worker.job set started_at = now(), stopped_at = now(), attempt = 1, error_msg = 'bad'"
            " where id = %(failed)s",
            ids,
        )
    return ids


def _upgrade_with_install_schema(url: str) -> None:
    install_schema(url)


def _upgrade_with_migrate(url: str) -> None:
    migrate(url)


@pytest.mark.parametrize("recorded", [False, True], ids=["unversioned", "versioned"])
@pytest.mark.parametrize("upgrade", [_upgrade_with_install_schema, _upgrade_with_migrate])
def test_a_0001_database_with_jobs_is_upgraded_to_head_with_its_jobs_intact(
    make_db: Callable[[], str], upgrade: Callable[[str], None], recorded: bool
) -> None:
    fresh, url = make_db(), make_db()
    install_schema(fresh)
    if recorded:
        migrate(url, revision_chain()[0].id)  # what `jobqueue migrate` of 0.1.0 left
    else:
        with psycopg.connect(url) as conn:  # what install_schema of 0.1.0 left: no history
            conn.execute(SQL_0001.read_bytes())
    ids = _fill_0001_database(url)
    with psycopg.connect(url) as conn:
        before = conn.execute("select id, payload, type from worker.job order by id").fetchall()

    upgrade(url)

    assert current_revision(url) == head_revision()
    with psycopg.connect(url) as conn, psycopg.connect(fresh) as fresh_conn:
        assert schema_catalog(conn) == schema_catalog(fresh_conn)
        assert conn.execute("select id, payload, type from worker.job order by id").fetchall() == before
        cancelled = conn.execute(
            "select started_at is not null, current_retry_count from worker.job where id = %s",
            (ids["cancelled"],),
        ).fetchone()
        failed = conn.execute(
            "select current_retry_count from worker.job where id = %s", (ids["failed"],)
        ).fetchone()
    # A go-jobqueue claim (started_at is null) skips the cancelled job; its startup reaper
    # (failed jobs with retries left) leaves both alone.
    assert cancelled == (True, 2) and failed == (2,)
    with PostgresService(url) as service:
        assert service.get_job_bundle(ids["bundle"]).num_jobs_stopped == 1  # the count is kept
        for job in service.claim_jobs(["bt"], 5):
            assert job.claim_token is not None
            service.save_outcomes(
                [Outcome(job.id, job.claim_token, OutcomeKind.SUCCEEDED, 1, result_json="1")]
            )
        bundle = service.get_job_bundle(ids["bundle"])
        assert (bundle.num_jobs, bundle.num_jobs_stopped) == (3, 3)  # counted once each
        (pending,) = service.claim_jobs(["t"], 5)
        assert pending.id == ids["pending"] and pending.payload == {"n": 1}


def test_install_schema_refuses_a_revision_it_does_not_know(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("update public.jobqueue_alembic_version set version_num = 'jobqueue_9999'")
    with pytest.raises(SchemaMismatchError, match=r"jobqueue_9999.*newer pg-jobqueue"):
        install_schema(db_url)


def test_install_schema_names_what_to_run_for_an_unknown_unversioned_schema(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("drop table public.jobqueue_alembic_version")
        conn.execute("alter table worker.job add column mine text")
    with pytest.raises(SchemaMismatchError, match=r"(?s)mine.*alembic stamp"):
        install_schema(db_url)
    with psycopg.connect(db_url) as conn:  # nothing changed
        assert conn.execute("select to_regclass('public.jobqueue_alembic_version')").fetchone() == (None,)
