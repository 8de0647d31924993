"""``python -m bench.retention``: the worker's automatic retention on a table full of history.

A database holds ``--expired`` succeeded jobs that stopped 30 days ago (past the default
retention of 7 days) and ``--kept`` that stopped an hour ago. A producer adds jobs at a
fixed rate and one README-path worker process at c=16 runs them, with default settings:
its maintenance starts pruning at once. Reported: how fast the expired rows go (rows/s,
time until none is left), what each pruning round cost, and pickup latency and the
claim / save times while the pruning runs and after it, beside a phase before the worker
prunes anything (the same worker with retention off).

    python -m bench.retention --expired 1000000
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing as mp
import statistics
import threading
import time
from typing import Any

import psycopg

import jobqueue
import jobworker
from bench.bloat import JOB, Calls, _instrument, _producer, pickup_recorder
from bench.db import fresh_database, server
from jobworker_pg import PostgresService, init_job_queue, install_schema

_CTX = mp.get_context("spawn")


def _worker(url: str, concurrency: int, prune: bool, stop: Any, out: Any) -> None:
    """The README path at c=``concurrency`` (retention off unless ``prune``) until ``stop``
    is set; reports each handler start with its pickup latency, every claim and save, and
    every pruning round."""
    calls: Calls = {}
    _instrument(calls)
    rounds: list[tuple[float, float, int]] = []  # (monotonic at end, seconds, rows)
    original = PostgresService.prune_finished

    @functools.wraps(original)
    def timed(self: PostgresService, retention: jobworker.Retention) -> int | None:
        t0 = time.monotonic()
        deleted = original(self, retention)
        end = time.monotonic()
        rounds.append((end, end - t0, deleted or 0))
        return deleted

    PostgresService.prune_finished = timed  # type: ignore[method-assign]
    handler, latencies = pickup_recorder()
    jobworker.register(JOB, handler)
    if not prune:
        jobworker.configure(retention=jobworker.Retention(enabled=False))
    init_job_queue(url)
    jobworker.start_threads(concurrency)
    out.put(("ready", time.monotonic()))
    stop.wait()
    jobworker.finish_threads()
    jobqueue.close()
    out.put(("result", (latencies, calls, rounds)))


def _preload(url: str, expired: int, kept: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("alter table worker.job disable trigger job_inserted")
        for count, age in ((expired, "30 days"), (kept, "1 hour")):
            conn.execute(
                """insert into worker.job (id, type, payload, origin, started_at, worker_alive_at,
                                           stopped_at, attempt, result, created_at)
                   select gen_random_uuid(), %s, jsonb_build_object('i', g), 'bench',
                          now() - %s::interval, now() - %s::interval, now() - %s::interval, 1,
                          'null'::jsonb, now() - %s::interval
                   from generate_series(1, %s) g""",
                (JOB, age, age, age, age, count),
            )
        conn.execute("alter table worker.job enable trigger job_inserted")
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze worker.job")


def _expired_left(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*) from worker.job where stopped_at < now() - interval '7 days'"
        ).fetchone()
    return int(row[0]) if row else 0


def _table_mb(url: str) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute("select pg_total_relation_size('worker.job')").fetchone()
    return round(int(row[0]) / 2**20, 1) if row else 0.0


class _Worker:
    """A worker process of :func:`_worker`."""

    def __init__(self, url: str, concurrency: int, prune: bool) -> None:
        self._stop = _CTX.Event()
        self._out: Any = _CTX.Queue()
        self._proc = _CTX.Process(
            target=_worker, args=(url, concurrency, prune, self._stop, self._out), daemon=True
        )
        self._proc.start()
        kind, self.ready_at = self._out.get(timeout=120)
        assert kind == "ready"

    def stop(self) -> tuple[list[tuple[float, float]], Calls, list[tuple[float, float, int]]]:
        """Stop it; its latencies, calls and pruning rounds."""
        self._stop.set()
        kind, result = self._out.get(timeout=300)
        assert kind == "result"
        self._proc.join(30)
        return result  # type: ignore[no-any-return]


def _phase(
    name: str, start: float, end: float, latencies: list[tuple[float, float]], calls: Calls
) -> dict[str, Any]:
    # Jobs added in the phase (not those that waited for this worker to start).
    lat = sorted(1000 * lat for at, lat in latencies if start <= at - lat and at < end)
    row: dict[str, Any] = {
        "phase": name,
        "seconds": round(end - start, 1),
        "jobs_per_s": round(len(lat) / (end - start)) if end > start else None,
        "pickup_p50_ms": round(statistics.median(lat), 1) if lat else None,
        "pickup_p99_ms": round(statistics.quantiles(lat, n=100)[98], 1) if len(lat) > 100 else None,
    }
    for call in ("claim_jobs", "save_outcomes"):
        inside = [t for at, t, _ in calls.get(call, []) if start <= at < end]
        row[f"{call}_ms"] = round(1000 * statistics.mean(inside), 2) if inside else None
    return row


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    p.add_argument("--database-url")
    p.add_argument("--expired", type=int, default=1_000_000, help="succeeded jobs past their retention")
    p.add_argument("--kept", type=int, default=100_000, help="succeeded jobs within it")
    p.add_argument("--rate", type=float, default=500.0, help="jobs added per second meanwhile")
    p.add_argument("--before", type=float, default=30.0, help="seconds of the phase without pruning")
    p.add_argument("--after", type=float, default=30.0, help="seconds measured once nothing is left")
    p.add_argument("--limit", type=float, default=1800.0, help="give up after this many seconds of pruning")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with server(args.database_url) as admin, fresh_database(admin, "bench_retention") as url:
        install_schema(url)
        t0 = time.monotonic()
        _preload(url, args.expired, args.kept)
        print(
            f"preloaded {args.expired:,} expired and {args.kept:,} kept rows in {time.monotonic() - t0:.0f} s"
        )
        size_before = _table_mb(url)
        stop_producer = threading.Event()
        producer = threading.Thread(target=_producer, args=(url, args.rate, stop_producer), daemon=True)
        producer.start()

        worker = _Worker(url, args.concurrency, prune=False)
        time.sleep(args.before)
        start = worker.ready_at
        latencies, calls, _ = worker.stop()
        phases = [_phase("before (retention off)", start, start + args.before, latencies, calls)]

        worker = _Worker(url, args.concurrency, prune=True)  # the defaults: prunes at once
        start = worker.ready_at
        while _expired_left(url) and time.monotonic() - start < args.limit:
            time.sleep(0.5)
        gone = time.monotonic()
        left = _expired_left(url)
        time.sleep(args.after)
        latencies, calls, rounds = worker.stop()
        stop_producer.set()
        producer.join(30)
        size_after = _table_mb(url)
    phases.append(_phase("pruning", start, gone, latencies, calls))
    phases.append(_phase("after", gone, gone + args.after, latencies, calls))
    deleted = sum(n for _, _, n in rounds if n)
    busy = [(t, n) for _, t, n in rounds if n]
    print(
        f"\n{args.expired:,} expired rows; {deleted:,} deleted in {gone - start:.1f} s "
        f"({deleted / max(gone - start, 1e-9):,.0f} rows/s) by {len(busy)} rounds; {left:,} left"
    )
    if busy:
        per_batch = [1000 * t / max(n / 1000, 1) for t, n in busy]
        print(
            f"round: mean {statistics.mean(t for t, _ in busy):.2f} s, max {max(t for t, _ in busy):.2f} s; "
            f"per 1,000-row batch: mean {statistics.mean(per_batch):.1f} ms"
        )
    print(f"worker.job with its indexes: {size_before} MB before, {size_after} MB after")
    print("\n| phase | s | jobs/s | pickup p50 / p99 ms | claim ms/call | save ms/call |")
    print("|---|---|---|---|---|---|")
    for r in phases:
        print(
            f"| {r['phase']} | {r['seconds']} | {r['jobs_per_s']} | {r['pickup_p50_ms']} / "
            f"{r['pickup_p99_ms']} | {r['claim_jobs_ms']} | {r['save_outcomes_ms']} |"
        )


if __name__ == "__main__":
    main()
