"""``python -m bench.queue_claims``: what one claim costs under each kind of queue rule.

One process, one connection pool, a fresh database per rule: ``jobs`` jobs are loaded
into a queue, then claimed ``limit`` at a time through ``PostgresService.claim_jobs``
(the worker's call) until the queue is empty; each claim's jobs are completed
(``save_outcomes``, not timed) before the next claim, so that the running set stays the
size of a claim, as under a worker pool. The limits are set high enough never to hold a
claim back, so what is measured is the price of checking them. Printed: median
and p95 microseconds per claim call, and jobs per second of claim time alone.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

import jobqueue
from bench.db import fresh_database, server
from jobqueue import RateLimit
from jobworker import Outcome, OutcomeKind
from jobworker_pg import PostgresService, install_schema

RULES: dict[str, Callable[[PostgresService], object]] = {
    "no rules": lambda s: None,
    "concurrency": lambda s: s.configure_queue("q", concurrency=1_000_000),
    "rate limit": lambda s: s.configure_queue("q", rate_limit=RateLimit(1_000_000, per=timedelta(seconds=1))),
    "per-key (100 keys)": lambda s: s.configure_queue("q", per_key_concurrency=1_000_000),
    "all three": lambda s: s.configure_queue(
        "q",
        concurrency=1_000_000,
        per_key_concurrency=1_000_000,
        rate_limit=RateLimit(1_000_000, per=timedelta(seconds=1)),
    ),
}


def succeeded(job: jobqueue.Job) -> Outcome:
    assert job.claim_token is not None
    return Outcome(job.id, job.claim_token, OutcomeKind.SUCCEEDED, job.attempt, "null")


def measure(admin_url: str, rule: str, jobs: int, limit: int) -> tuple[float, float, float]:
    """(median us, p95 us, jobs/s) of claim calls under ``rule``."""
    with fresh_database(admin_url, "bench_queue_claims") as url:
        install_schema(url)
        with PostgresService(url, max_size=2) as service:
            RULES[rule](service)
            keyed = "key" in rule or rule == "all three"
            service.add_jobs(
                [
                    jobqueue.new_job(
                        "t", "bench", i, queue="q", concurrency_key=f"k{i % 100}" if keyed else None
                    )
                    for i in range(jobs)
                ]
            )
            service.claim_jobs(["t"], 1, queue="q")  # warm: the pool's connection, the rules list
            times: list[float] = []
            claimed = 0
            claiming = 0.0
            while True:
                t0 = time.perf_counter()
                batch = service.claim_jobs(["t"], limit, queue="q")
                times.append(time.perf_counter() - t0)
                claiming += times[-1]
                got = len(batch)
                claimed += got
                service.save_outcomes([succeeded(job) for job in batch])
                if got < limit:
                    break
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.95)] * 1e6, claimed / claiming


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.queue_claims", description=__doc__)
    p.add_argument("--database-url", help="admin URL of a server (default: a throwaway embedded one)")
    p.add_argument("--jobs", type=int, default=5_000)
    p.add_argument("--limits", default="1,16", help="claim sizes, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="runs of every rule, interleaved; medians shown")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with server(args.database_url) as admin_url:
        print("| rule | claim size | median us/claim | p95 us/claim | jobs/s claimed |")
        print("|---|---|---|---|---|")
        for limit in (int(x) for x in args.limits.split(",")):
            # Rules interleaved round by round, so that a change in the machine's load
            # spreads over all of them instead of favouring the ones measured last.
            runs: dict[str, list[tuple[float, float, float]]] = {rule: [] for rule in RULES}
            for _ in range(args.rounds):
                for rule in RULES:
                    runs[rule].append(measure(admin_url, rule, args.jobs, limit))
            for rule, results in runs.items():
                median, p95, rate = (statistics.median(r[i] for r in results) for i in range(3))
                print(f"| {rule} | {limit} | {median:,.0f} | {p95:,.0f} | {rate:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
