"""The pieces the interop tests share: the database both languages use, a Go worker
process, a Python listener, and the run rule the handlers of both languages follow."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from jobqueue import Job
from jobworker import WorkerSettings

# Every run of a job, by either language: exactly-once and retry counts are read from here.
RUNS_TABLE = """
create table public.interop_runs (
    job_id uuid not null, runner text not null, at timestamptz not null default clock_timestamp()
)"""
SETTINGS = WorkerSettings().replace(heartbeat_interval=0.5, dead_for=5, job_timeout=60)
EVENT_TIMEOUT = 120.0  # generous: the machine is shared


@dataclass
class SharedDb:
    """One database for both languages: its URL and the environment for Go processes."""

    url: str
    go_env: dict[str, str]

    def runs(self, job_id: uuid.UUID) -> list[str]:
        """Who ran ``job_id``, in order."""
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "select runner from public.interop_runs where job_id = %s order by at", (job_id,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def run_counts(self) -> dict[uuid.UUID, int]:
        with psycopg.connect(self.url) as conn:
            rows = conn.execute("select job_id, count(*) from public.interop_runs group by job_id").fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def runners(self) -> dict[str, int]:
        with psycopg.connect(self.url) as conn:
            rows = conn.execute("select runner, count(*) from public.interop_runs group by runner").fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    def bundle_counts(self, bundle_id: uuid.UUID) -> tuple[int, int] | None:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "select num_jobs, num_jobs_stopped from worker.job_bundle where id = %s", (bundle_id,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


def python_handler(connections: ConnectionPool) -> Callable[[Job], Any]:
    """The run rule of the Go program, in Python: record the run, fail while the job's runs
    (by either language) are at most the payload's fail_runs."""

    def handle(job: Job) -> Any:
        with connections.connection() as conn:
            conn.execute("insert into public.interop_runs (job_id, runner) values (%s, 'py')", (job.id,))
            row = conn.execute(
                "select count(*) from public.interop_runs where job_id = %s", (job.id,)
            ).fetchone()
        runs = int(row[0]) if row else 0
        fail_runs = job.payload.get("fail_runs", 0) if isinstance(job.payload, dict) else 0
        if runs <= fail_runs:
            raise RuntimeError(f"py run {runs} of {fail_runs} planned failures")
        return {"by": "py", "run": runs}

    return handle


@dataclass
class GoProcess:
    """A running ``interop work`` process and the events it printed."""

    process: subprocess.Popen[str]
    stderr_path: Path
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            with self.lock:
                self.seen.append(event)
            self.events.put(event)

    def wait_event(self, event: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        while True:
            got = self.events.get(timeout=timeout)
            if got.get("event") == event:
                return got

    def events_of(self, event: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.seen if e.get("event") == event]

    def finish(self, timeout: float = EVENT_TIMEOUT) -> None:
        """Close stdin: the program finishes its threads and exits."""
        self.close(timeout)
        assert self.process.returncode == 0, self.stderr_path.read_text()

    def close(self, timeout: float = EVENT_TIMEOUT) -> None:
        """Stop the process (stdin closed, killed if it does not exit) and close its pipes."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Heard:
    """A Python ServiceListener that records what it hears."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.stopped: list[tuple[uuid.UUID, bool]] = []
        self.bundles: list[uuid.UUID] = []

    def on_job_stopped(self, job_id: uuid.UUID, job_type: str, origin: str, will_retry: bool) -> None:
        with self._cond:
            self.stopped.append((job_id, will_retry))
            self._cond.notify_all()

    def on_job_bundle_stopped(self, bundle_id: uuid.UUID, bundle_type: str, origin: str) -> None:
        with self._cond:
            self.bundles.append(bundle_id)
            self._cond.notify_all()

    def final_stops(self) -> list[uuid.UUID]:
        with self._cond:
            return [job_id for job_id, will_retry in self.stopped if not will_retry]

    def wait(self, predicate: Callable[[Heard], bool], what: str, timeout: float = EVENT_TIMEOUT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"{what}: not heard within {timeout} s")
