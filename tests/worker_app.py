"""A worker process for the multi-process tests: ``python tests/worker_app.py URL THREADS``.

Handlers record every run in the table ``exec_log`` over their own connection,
so tests can count runs and find overlapping ones:

- ``exec``: records the start (committed at once), sleeps ``payload["sleep"]``
  seconds (``payload["first_sleep"]``, if given, on the first attempt), records the end.
- ``exit``: kills its own process with ``os._exit(1)`` (a poison pill).
- ``hang``: sleeps ``payload["sleep"]`` seconds (for timeouts).
- ``aexec``: ``exec`` as an ``async def`` handler (awaits its sleep on the pool's
  event loop); registered only when JQ_TYPES names it. JQ_ASYNC sets the pool's
  async_concurrency.

With ``payload["stamp"]`` true, ``exec`` returns ``{"pid", "attempt"}`` instead of
``"ok"``, so a test can tell which process's outcome was saved.

Settings come from the environment: JQ_HEARTBEAT, JQ_DEAD_FOR, JQ_REAPER,
JQ_TIMEOUT, JQ_POLL (seconds), JQ_PREFETCH (jobs); JQ_TYPES (comma-separated) registers only those
of the job types above. JQ_PERIODIC (comma-separated names) registers, for each name,
an every-second schedule (catch_up="all") of the job type ``tick``, whose handler
returns "ok". JQ_QUEUES is the queues to serve: ``critical:10,default:1`` (weights) or
``a,b`` (strict order). SIGTERM finishes in-flight jobs and exits 0.
The process prints "ready" once its threads run.

The ``exec_log`` connections are the test harness's, not the library's: they
are named ``EXEC_LOG_APP`` (so fault injection can leave them alone) and are
never read-only, even while a test makes the database read-only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Literal

import psycopg

import jobqueue
import jobworker
from jobworker_pg import init_job_queue

EXEC_LOG_DDL = """
create table if not exists exec_log (
    job_id uuid not null,
    attempt int not null,
    pid int not null,
    started_at timestamptz not null default clock_timestamp(),
    ended_at timestamptz
)
"""

_local = threading.local()

#: application_name of the exec_log connections.
EXEC_LOG_APP = "jobqueue-test-exec-log"


def _log_conn(url: str) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            url,
            autocommit=True,
            application_name=EXEC_LOG_APP,
            options="-c default_transaction_read_only=off",
        )
        _local.conn = conn
    return conn


def record(url: str, query: str, job: jobqueue.Job) -> None:
    """Run one exec_log statement, riding out connection faults the tests inject (up to 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            _log_conn(url).execute(query, (job.id, job.attempt, os.getpid()))
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            _local.conn = None
            time.sleep(0.1)


def queues_from(spec: str | None) -> list[str] | dict[str, int] | None:
    """JQ_QUEUES: ``a:10,b:1`` as weights, ``a,b`` as strict order, unset as None."""
    if not spec:
        return None
    names = spec.split(",")
    if all(":" in n for n in names):
        return {name: int(weight) for name, weight in (n.split(":") for n in names)}
    return names


def prefetch_setting(value: str) -> int | Literal["auto"]:
    """JQ_PREFETCH: "auto" or a number."""
    return "auto" if value == "auto" else int(value)


def main() -> None:
    url, threads = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(
        level=logging.WARNING, format=f"[worker {os.getpid()}] %(levelname)s %(name)s: %(message)s"
    )
    heartbeat = float(os.environ.get("JQ_HEARTBEAT", "0.2"))
    jobworker.configure(
        heartbeat_interval=timedelta(seconds=heartbeat),
        dead_for=timedelta(seconds=float(os.environ.get("JQ_DEAD_FOR", str(heartbeat * 5)))),
        reaper_interval=timedelta(seconds=float(os.environ.get("JQ_REAPER", str(heartbeat)))),
        job_timeout=timedelta(seconds=float(os.environ.get("JQ_TIMEOUT", "60"))),
        prefetch=prefetch_setting(os.environ.get("JQ_PREFETCH", "0")),
    )

    def run_exec(job: jobqueue.Job) -> Any:
        record(url, "insert into exec_log (job_id, attempt, pid) values (%s, %s, %s)", job)
        payload = job.payload or {}
        sleep = (
            payload.get("first_sleep", payload.get("sleep", 0))
            if job.attempt == 1
            else payload.get("sleep", 0)
        )
        time.sleep(float(sleep))
        record(
            url,
            "update exec_log set ended_at = clock_timestamp()"
            " where job_id = %s and attempt = %s and pid = %s",
            job,
        )
        if (job.payload or {}).get("stamp"):
            return {"pid": os.getpid(), "attempt": job.attempt}
        return "ok"

    def run_exit(job: jobqueue.Job) -> None:
        os._exit(1)

    def run_hang(job: jobqueue.Job) -> str:
        time.sleep(float((job.payload or {}).get("sleep", 3600)))
        return "woke"

    async def run_aexec(job: jobqueue.Job) -> Any:
        await asyncio.to_thread(
            record, url, "insert into exec_log (job_id, attempt, pid) values (%s, %s, %s)", job
        )
        await asyncio.sleep(float((job.payload or {}).get("sleep", 0)))
        await asyncio.to_thread(
            record,
            url,
            "update exec_log set ended_at = clock_timestamp()"
            " where job_id = %s and attempt = %s and pid = %s",
            job,
        )
        return "ok"

    handlers = {"exec": run_exec, "exit": run_exit, "hang": run_hang, "aexec": run_aexec}
    served = os.environ.get("JQ_TYPES")
    for job_type in served.split(",") if served else ("exec", "exit", "hang"):
        jobworker.register(job_type, handlers[job_type])

    periodic = os.environ.get("JQ_PERIODIC")
    if periodic:
        jobworker.register("tick", lambda job: "ok")
        for name in periodic.split(","):
            jobworker.register_periodic(
                name, jobworker.every(1), "tick", payload={"schedule": name}, catch_up="all"
            )

    with psycopg.connect(url) as conn:
        # Workers start together: concurrent CREATE TABLE IF NOT EXISTS can still collide.
        conn.execute("select pg_advisory_xact_lock(4242)")
        conn.execute(EXEC_LOG_DDL)
    init_job_queue(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    async_concurrency = os.environ.get("JQ_ASYNC")
    jobworker.start_threads(
        threads,
        queues=queues_from(os.environ.get("JQ_QUEUES")),
        async_concurrency=int(async_concurrency) if async_concurrency else None,
    )
    poll = os.environ.get("JQ_POLL")
    if poll:
        jobworker.start_polling_available_jobs(timedelta(seconds=float(poll)))
    print("ready", flush=True)
    stop.wait()
    jobworker.finish_threads(timeout=30)
    jobqueue.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
