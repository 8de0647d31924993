"""``python -m bench.bloat``: pg-jobqueue under a pinned vacuum horizon.

A steady load (a producer adding jobs at a fixed rate, one README-path worker
process at c=16 running them) goes through three phases: *before*, *pinned* and
*after*. While pinned, either one connection holds a REPEATABLE READ snapshot open
(``--scenario idle-snapshot``, the classic horizon pin) or four REPEATABLE READ
readers scan the job table in a loop, each scan a new transaction
(``--scenario rr-readers``). Each phase reports jobs done per second, pickup
latency (enqueue to handler start), the worker's mean claim and save time per
call (from ``bench.profile``'s instrumentation), and the job table's dead tuples.

    python -m bench.bloat --scenario idle-snapshot --pinned 120
    python -m bench.bloat --scenario rr-readers --pinned 120

Without ``--database-url`` it starts a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing as mp
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

import jobqueue
import jobworker
from bench.db import fresh_database, server
from jobworker_pg import PostgresService, init_job_queue, install_schema

JOB = "bench.bloat"
_CTX = mp.get_context("spawn")


Calls = dict[str, list[tuple[float, float, int]]]  # name -> (monotonic at end, seconds, rows)


def _instrument(calls: Calls) -> None:
    """Record the end time, duration and rows of every claim_jobs / save_outcomes call."""
    for name in ("claim_jobs", "save_outcomes"):
        original = getattr(PostgresService, name)
        calls[name] = []

        def timed(self: Any, *args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
            t0 = time.monotonic()
            result = _orig(self, *args, **kw)
            end = time.monotonic()
            calls[_name].append((end, end - t0, len(result)))
            return result

        setattr(PostgresService, name, functools.wraps(original)(timed))


def pickup_recorder() -> tuple[Callable[[jobqueue.Job], None], list[tuple[float, float]]]:
    """A no-op handler for the producer's jobs, and the list it fills: (monotonic time the
    handler started, seconds since the job was added) per job."""
    latencies: list[tuple[float, float]] = []
    lock = threading.Lock()

    def handler(job: jobqueue.Job) -> None:
        now = time.monotonic()
        with lock:
            latencies.append((now, now - job.payload["t"]))

    return handler, latencies


def _worker(url: str, concurrency: int, seconds: float, out: Any) -> None:
    """The README path at c=``concurrency``; reports each handler start with its pickup
    latency, and every claim and save call."""
    calls: Calls = {}
    _instrument(calls)
    handler, latencies = pickup_recorder()
    jobworker.register(JOB, handler)
    init_job_queue(url)
    jobworker.start_threads(concurrency)
    out.put(("ready", time.monotonic()))
    time.sleep(seconds)
    jobworker.finish_threads()
    jobqueue.close()
    out.put(("result", (latencies, calls)))


def _producer(url: str, rate: float, stop: threading.Event) -> None:
    batch = max(1, int(rate / 20))  # 20 commits a second
    with PostgresService(url, max_size=2) as service:
        next_at = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            service.add_jobs([jobqueue.new_job(JOB, "bench", {"t": now}) for _ in range(batch)])
            next_at += batch / rate
            time.sleep(max(0.0, next_at - time.monotonic()))


def _pin(url: str, scenario: str, stop: threading.Event) -> None:
    if scenario == "idle-snapshot":
        with psycopg.connect(url) as conn:
            conn.execute("begin isolation level repeatable read")
            conn.execute("select count(*) from worker.job")  # takes the snapshot
            stop.wait()
            conn.rollback()
        return

    def reader() -> None:
        with psycopg.connect(url) as conn:
            while not stop.is_set():
                conn.execute("begin isolation level repeatable read")
                conn.execute("select count(*), max(updated_at) from worker.job")
                conn.rollback()

    readers = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
    for r in readers:
        r.start()
    stop.wait()
    for r in readers:
        r.join(30)


def _dead_tuples(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select n_live_tup, n_dead_tup from pg_stat_user_tables where relid = 'worker.job'::regclass"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bloat", description=__doc__)
    p.add_argument("--database-url")
    p.add_argument("--scenario", choices=["idle-snapshot", "rr-readers"], default="idle-snapshot")
    p.add_argument("--rate", type=float, default=1000.0, help="jobs added per second")
    p.add_argument("--before", type=float, default=30.0, help="seconds")
    p.add_argument("--pinned", type=float, default=120.0, help="seconds")
    p.add_argument("--after", type=float, default=60.0, help="seconds")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    total = args.before + args.pinned + args.after
    with server(args.database_url) as admin, fresh_database(admin, "bench_bloat") as url:
        install_schema(url)
        out: Any = _CTX.Queue()
        proc = _CTX.Process(target=_worker, args=(url, args.concurrency, total + 2, out), daemon=True)
        proc.start()
        kind, _ = out.get(timeout=120)
        assert kind == "ready"
        stop_producer, stop_pin = threading.Event(), threading.Event()
        producer = threading.Thread(target=_producer, args=(url, args.rate, stop_producer), daemon=True)
        producer.start()
        phases: list[tuple[str, float, float, tuple[int, int]]] = []
        t0 = time.monotonic()
        time.sleep(args.before)
        phases.append(("before", t0, time.monotonic(), _dead_tuples(url)))
        pin = threading.Thread(target=_pin, args=(url, args.scenario, stop_pin), daemon=True)
        pin.start()
        t1 = time.monotonic()
        time.sleep(args.pinned)
        phases.append(("pinned", t1, time.monotonic(), _dead_tuples(url)))
        stop_pin.set()
        pin.join(60)
        t2 = time.monotonic()
        time.sleep(args.after)
        phases.append(("after", t2, time.monotonic(), _dead_tuples(url)))
        stop_producer.set()
        producer.join(30)
        kind, (latencies, calls) = out.get(timeout=300)
        proc.join(30)
    rows = []
    for name, start, end, (live, dead) in phases:
        lat = sorted(1000 * lat for at, lat in latencies if start <= at < end)
        row: dict[str, Any] = {
            "phase": name,
            "seconds": round(end - start, 1),
            "jobs_per_s": round(len(lat) / (end - start)),
            "pickup_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "pickup_p99_ms": round(statistics.quantiles(lat, n=100)[98], 1) if len(lat) > 100 else None,
            "live_tuples": live,
            "dead_tuples": dead,
        }
        for call in ("claim_jobs", "save_outcomes"):
            inside = [(t, n) for at, t, n in calls.get(call, []) if start <= at < end]
            rows_done = sum(n for _, n in inside)
            row[f"{call}_ms"] = round(1000 * statistics.mean(t for t, _ in inside), 2) if inside else None
            row[f"{call}_us_per_row"] = (
                round(1e6 * sum(t for t, _ in inside) / rows_done, 1) if rows_done else None
            )
        rows.append(row)
    load = f"producer {args.rate:.0f} jobs/s, worker c={args.concurrency}"
    print(f"scenario {args.scenario}, {load}", flush=True)
    print(
        "| phase | s | jobs/s | pickup p50 / p99 ms | claim ms/call (µs/row) | save ms/call (µs/row) "
        "| live / dead tuples |"
    )
    print("|---|---|---|---|---|---|---|", flush=True)
    for r in rows:
        cells = [
            r["phase"],
            r["seconds"],
            r["jobs_per_s"],
            f"{r['pickup_p50_ms']} / {r['pickup_p99_ms']}",
            f"{r['claim_jobs_ms']} ({r['claim_jobs_us_per_row']})",
            f"{r['save_outcomes_ms']} ({r['save_outcomes_us_per_row']})",
            f"{r['live_tuples']} / {r['dead_tuples']}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(json.dumps({"args": vars(args), "phases": rows}), flush=True)


if __name__ == "__main__":
    main()
