"""Small helpers shared by the database tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.orm import Session


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail the test
    after ``timeout`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(interval)


class Notifications:
    """LISTENs on the worker channels over its own connection and collects payloads."""

    def __init__(
        self, url: str, channels: tuple[str, ...] = ("job_available", "job_stopped", "job_bundle_stopped")
    ):
        self.conn = psycopg.connect(url, autocommit=True)
        for channel in channels:
            self.conn.execute(f"LISTEN {channel}")

    def collect(self, quiet: float = 0.3, timeout: float = 5.0) -> list[tuple[str, dict[str, Any]]]:
        """Everything received until nothing came for ``quiet`` seconds (at most ``timeout``)."""
        got: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [(n.channel, json.loads(n.payload)) for n in self.conn.notifies(timeout=quiet)]
            if not batch:
                break
            got.extend(batch)
        return got

    def close(self) -> None:
        self.conn.close()


class RecordingListener:
    """A ServiceListener that records events and lets tests wait for them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[UUID, str, str, bool]] = []
        self.bundles: list[tuple[UUID, str, str]] = []
        self.changed = threading.Condition()

    def on_job_stopped(self, job_id: UUID, job_type: str, origin: str, will_retry: bool) -> None:
        with self.changed:
            self.jobs.append((job_id, job_type, origin, will_retry))
            self.changed.notify_all()

    def on_job_bundle_stopped(self, bundle_id: UUID, bundle_type: str, origin: str) -> None:
        with self.changed:
            self.bundles.append((bundle_id, bundle_type, origin))
            self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError(
                    f"listener events not seen within {timeout} s: {self.jobs} {self.bundles}"
                )


class PgServer:
    """Where the test server is, and how to make and drop databases on it."""

    def __init__(self, admin_url: str, pgdata: Path | None = None, handle: Any = None) -> None:
        self.admin_url = admin_url
        self.pgdata = pgdata  # set for the embedded server, which tests may stop and restart
        self.handle = handle

    def url(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return make_conninfo("", **params)

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
            conn.execute(stmt)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- the caller's transaction, three ways ------------------------------------------------------

#: The connection kinds a job can be added on inside the caller's transaction.
KINDS = ["psycopg", "sa_session", "sa_connection"]


def sa_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine on the psycopg 3 dialect for a conninfo string."""
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url))


@contextlib.contextmanager
def open_conn(kind: str, url: str) -> Iterator[tuple[Any, Callable[[], None], Callable[[], None]]]:
    """(conn, commit, rollback) for a fresh transaction of ``kind``; nothing run on it yet."""
    if kind == "psycopg":
        with psycopg.connect(url) as conn:
            yield conn, conn.commit, conn.rollback
        return
    engine = sa_engine(url)
    try:
        if kind == "sa_session":
            with Session(engine) as session:
                yield session, session.commit, session.rollback
        else:
            with engine.connect() as connection:
                yield connection, connection.commit, connection.rollback
    finally:
        engine.dispose()


def count_jobs(url: str) -> int:
    with psycopg.connect(url) as c:
        row = c.execute("select count(*) from worker.job").fetchone()
        assert row is not None
        return int(row[0])
