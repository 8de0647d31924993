"""The registry of live worker processes (``worker.worker_process``), for the dashboard.

A :class:`ProcessRegistry` is a pool observer: when the pool starts it inserts a row
(host, pid, threads, job types), refreshes its heartbeat and busy count on a thread of
its own, and deletes the row when the pool stops. A killed process leaves its row; the
dashboard shows it stale, and any live process drops it after a day.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import uuid4

import psycopg

from jobqueue import Job
from jobworker import WorkerObserver
from jobworker_pg._queries import q

logger = logging.getLogger(__name__)

#: How often a registered process refreshes its row.
DEFAULT_PROCESS_HEARTBEAT = timedelta(seconds=10)


class ProcessRegistry(WorkerObserver):
    """Registers the observed pool's process in ``worker.worker_process``. Thread-safe.

    Uses one connection of its own (opened when the pool starts, reopened after an
    error); a database error is logged and retried at the next heartbeat, never raised
    into the pool.
    """

    def __init__(self, conninfo: str, *, heartbeat: timedelta = DEFAULT_PROCESS_HEARTBEAT) -> None:
        self._conninfo = conninfo
        self._interval = heartbeat.total_seconds()
        self._lock = threading.Lock()
        self._busy = 0
        self._id = uuid4()
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._row: dict[str, Any] | None = None

    @property
    def process_id(self) -> str:
        """This process's id in the registry."""
        return str(self._id)

    def pool_started(self, pool: str, threads: int, job_types: Sequence[str]) -> None:
        self._row = {
            "id": self._id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": threads,
            "job_types": list(job_types),
        }
        self._execute(q("register_worker_process"), self._row)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="jobqueue-process-registry", daemon=True)
        self._thread.start()

    def pool_stopped(self, pool: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._execute(q("unregister_worker_process"), {"id": self._id})
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def attempt_started(self, job: Job) -> object:
        with self._lock:
            self._busy += 1
        return None

    def attempt_ended(self, job: Job, state: object, error: BaseException | None, seconds: float) -> None:
        with self._lock:
            self._busy -= 1

    def beat(self) -> None:
        """Refresh the heartbeat now (the thread does this every interval)."""
        with self._lock:
            busy = self._busy
        self._execute(q("worker_process_heartbeat"), {"id": self._id, "busy": max(0, busy)})

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.beat()
            if self._row is not None:
                # A row deleted meanwhile (pruned, or the table recreated) comes back.
                self._execute(q("register_worker_process"), self._row, only_if_missing=True)

    def _execute(self, query: Any, params: dict[str, Any], *, only_if_missing: bool = False) -> int:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._conninfo, autocommit=True)
                if only_if_missing:
                    found = self._conn.execute(q("worker_process_exists"), {"id": params["id"]}).fetchone()
                    if found:
                        return 0
                return self._conn.execute(query, params).rowcount
            except psycopg.Error as exc:
                logger.warning("worker process registry: %s", exc, extra={"action": "process-registry"})
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                return 0
