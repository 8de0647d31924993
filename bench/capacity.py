"""``python -m bench.capacity``: the figures behind docs/scaling.md's capacity model.

Measures PostgreSQL's CPU (every process of the server, from /proc through psutil,
so the server must run on this machine: the embedded one by default) per job:

- **drain**: one README-path worker process (c=16, default settings) runs N
  pre-loaded no-op jobs; server CPU and worker CPU per job, jobs/s;
- **enqueue**: P producer threads, one ``jobqueue.add`` (one commit) per job, with
  the ``job_available`` NOTIFY trigger on and off: jobs/s and server CPU per job.
  A NOTIFY takes a cluster-wide lock at commit, so committing producers queue on it.

    python -m bench.capacity --jobs 50000 --enqueue 5000
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import psycopg

import jobqueue
from bench.db import fresh_database, server
from bench.systems import WorkSpec
from bench.systems.pgjobqueue import SYSTEM
from bench.worker import WorkerProcess
from jobworker_pg import PostgresService


def _server_cpu(url: str) -> Callable[[], float]:
    """A function returning the server's CPU seconds so far (postmaster, reaped and live children)."""
    with psycopg.connect(url) as conn:  # our backend's parent, while the backend lives
        row = conn.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        postmaster = psutil.Process(int(row[0])).parent()
    assert postmaster is not None

    def total() -> float:
        t = postmaster.cpu_times()
        seconds = t.user + t.system + t.children_user + t.children_system
        for child in postmaster.children(recursive=True):
            try:
                c = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds += c.user + c.system
        return seconds

    return total


def drain(url: str, jobs: int) -> dict[str, Any]:
    SYSTEM.install(url)
    SYSTEM.preload(url, jobs, 0)
    cpu = _server_cpu(url)
    before = cpu()
    proc = WorkerProcess(SYSTEM.name, url, WorkSpec("drain", 16, jobs))
    try:
        proc.start()
        work = proc.result(timeout=3600)
    finally:
        proc.kill()
    server_s = cpu() - before
    return {
        "jobs": jobs,
        "jobs_per_s": round(jobs / work.seconds),
        "server_cpu_us_per_job": round(1e6 * server_s / jobs, 1),
        "worker_cpu_us_per_job": round(1e6 * work.cpu_seconds / jobs, 1),
        "jobs_per_server_core_s": round(jobs / server_s) if server_s else None,
    }


def enqueue(url: str, jobs: int, producers: int, notify: bool) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"alter table worker.job {'enable' if notify else 'disable'} trigger job_inserted")
    cpu = _server_cpu(url)
    per = jobs // producers
    with PostgresService(url, min_size=producers, max_size=producers) as service:
        service.add_job(jobqueue.new_job("warm", "bench", None))

        def produce() -> None:
            for i in range(per):
                service.add_job(jobqueue.new_job("bench.cap", "bench", {"i": i}))

        threads = [threading.Thread(target=produce) for _ in range(producers)]
        before, t0 = cpu(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds, server_s = time.perf_counter() - t0, cpu() - before
    return {
        "producers": producers,
        "notify": notify,
        "jobs_per_s": round(per * producers / seconds),
        "server_cpu_us_per_job": round(1e6 * server_s / (per * producers), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    p.add_argument("--database-url", help="admin URL of a server on this machine")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--enqueue", type=int, default=5_000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict[str, Any] = {"load_average_before": psutil.getloadavg(), "cores": psutil.cpu_count()}
    with server(args.database_url) as admin:
        with fresh_database(admin, "bench_capacity_drain") as url:
            out["drain"] = drain(url, args.jobs)
        out["enqueue"] = []
        for producers in (1, 4, 16):
            for notify in (True, False):
                with fresh_database(admin, "bench_capacity_enqueue") as url:
                    SYSTEM.install(url)
                    out["enqueue"].append(enqueue(url, args.enqueue, producers, notify))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
