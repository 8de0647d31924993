"""Fixtures of the interop suite: the Go toolchain and program, a database both languages
reach, Go worker processes and in-process Python workers that follow the same run rule.

Skipped, saying why, unless GO, GO_JOBQUEUE_SRC and GO_DEPS_DIR are set (docs/interop.md).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import PgServer
from interop.gotools import Go, missing_env
from interop.harness import EVENT_TIMEOUT, RUNS_TABLE, SETTINGS, GoProcess, Heard, SharedDb, python_handler
from interop.tcp_proxy import tcp_to_unix
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from jobworker import Registry, WorkerPool
from jobworker_pg import PostgresService


@pytest.fixture(scope="session")
def go(tmp_path_factory: pytest.TempPathFactory) -> Go:
    missing = missing_env()
    if missing:
        pytest.skip(
            f"interop suite needs {', '.join(missing)} (the Go toolchain and sources: docs/interop.md)"
        )
    return Go.prepare(tmp_path_factory.mktemp("gowork"))


@pytest.fixture(scope="session")
def go_program(go: Go, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go.build_program(tmp_path_factory.mktemp("gobin") / "interop")


@pytest.fixture(scope="session")
def go_pg(pg_server: PgServer) -> Iterator[dict[str, str]]:
    """POSTGRES_* for Go (host, port, user, password): a TCP port, forwarded when the test
    server listens on a unix socket only."""
    params = conninfo_to_dict(pg_server.admin_url)
    host, port = str(params.get("host") or "localhost"), str(params.get("port") or 5432)
    base = {
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
    }
    if not host.startswith("/"):
        yield {**base, "POSTGRES_HOST": host, "POSTGRES_PORT": port}
        return
    with tcp_to_unix(Path(host) / f".s.PGSQL.{port}") as tcp_port:
        yield {**base, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(tcp_port)}


@pytest.fixture
def shared_db(db_url: str, go_pg: dict[str, str]) -> SharedDb:
    with psycopg.connect(db_url) as conn:
        conn.execute(RUNS_TABLE)
    return SharedDb(db_url, {**go_pg, "POSTGRES_DB": str(conninfo_to_dict(db_url)["dbname"])})


@pytest.fixture
def go_worker(
    go: Go, go_program: Path, shared_db: SharedDb, tmp_path: Path
) -> Iterator[Callable[..., GoProcess]]:
    """Start ``interop work`` processes (``go_worker(types, threads=, poll=, retry_delay=)``);
    each is ready (LISTEN and threads started) when returned, finished at teardown."""
    started: list[GoProcess] = []

    def start(types: list[str], threads: int = 2, poll: str = "0", retry_delay: str = "0") -> GoProcess:
        args = [str(go_program), "work", "-types", ",".join(types), "-threads", str(threads)]
        args += ["-poll", poll, "-retry-delay", retry_delay]
        stderr_path = tmp_path / f"go-worker-{len(started)}.log"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                args,
                env={**go.env, **shared_db.go_env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        go_process = GoProcess(process, stderr_path)
        started.append(go_process)
        go_process.reader = threading.Thread(target=go_process._read, name="interop-go-stdout", daemon=True)
        go_process.reader.start()
        go_process.wait_event("ready")
        return go_process

    yield start
    for go_process in started:
        go_process.close()


@pytest.fixture
def go_command(go: Go, go_program: Path, shared_db: SharedDb) -> Callable[..., dict[str, Any]]:
    """Run a one-shot ``interop`` command (``go_command("add", "-type", "t")``); its JSON output."""

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(go_program), *args],
            env={**go.env, **shared_db.go_env},
            capture_output=True,
            text=True,
            timeout=EVENT_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result

    return run


@pytest.fixture
def heard(service: PostgresService) -> Heard:
    """What a Python process listening on the shared database hears."""
    listener = Heard()
    service.add_listener(listener)
    return listener


@pytest.fixture
def python_worker(shared_db: SharedDb) -> Iterator[Callable[..., WorkerPool]]:
    """Start in-process Python worker pools on the shared database
    (``python_worker(types, threads=, registry_setup=)``); stopped at teardown."""
    pools: list[tuple[WorkerPool, PostgresService]] = []
    # The handlers' own connections (recording runs), a few for all pools.
    connections = ConnectionPool(
        shared_db.url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=True
    )

    def start(
        types: list[str], threads: int = 2, setup: Callable[[Registry], None] | None = None
    ) -> WorkerPool:
        service = PostgresService(shared_db.url, ping_interval=1.0)
        registry = Registry()
        for job_type in types:
            registry.register(job_type, python_handler(connections))
        if setup is not None:
            setup(registry)
        pool = WorkerPool(service, registry, SETTINGS, name=f"interop-py-{len(pools)}")
        pool.start_threads(threads)
        pools.append((pool, service))
        return pool

    yield start
    for pool, service in pools:
        pool.stop_threads()
        service.close()
    connections.close()
