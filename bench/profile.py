"""``python -m bench.profile``: pg-jobqueue on W3 in this process, with per-call timing of
the WorkerDatabase methods (round trips, batch sizes, time inside each call).

Run it under py-spy to see the Python side too::

    py-spy record --nonblocking --format raw -o bench/results/w3.txt -- \
        .venv/bin/python -m bench.profile --concurrency 16
"""

from __future__ import annotations

import argparse
import collections
import functools
import logging
import time
from typing import Any

from bench.db import fresh_database, server
from bench.systems import WorkSpec
from bench.systems.pgjobqueue import SYSTEM
from jobworker_pg import PostgresService

Stats = collections.defaultdict[str, list[tuple[float, int]]]


def instrument(stats: Stats) -> None:
    """Time every claim_jobs / save_outcomes / heartbeat call and record its batch size."""
    for name in ("claim_jobs", "save_outcomes", "heartbeat", "seconds_until_next_job"):
        original = getattr(PostgresService, name)

        def timed(self: Any, *args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = _orig(self, *args, **kw)
            size = len(out) if hasattr(out, "__len__") else 1
            stats[_name].append((time.perf_counter() - t0, size))
            return out

        setattr(PostgresService, name, functools.wraps(original)(timed))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--database-url")
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    stats: Stats = collections.defaultdict(list)
    instrument(stats)
    with server(args.database_url) as admin, fresh_database(admin, "bench_profile") as url:
        SYSTEM.install(url)
        SYSTEM.preload(url, args.jobs, 0)
        result = SYSTEM.work(url, WorkSpec("drain", args.concurrency, args.jobs), lambda: None)
    print(
        f"{args.jobs} jobs at c={args.concurrency}: {result.seconds:.2f} s, "
        f"{args.jobs / result.seconds:,.0f} jobs/s"
    )
    for name, calls in sorted(stats.items()):
        total = sum(t for t, _ in calls)
        items = sum(n for _, n in calls)
        print(
            f"{name:24s} calls={len(calls):6d} total={total:7.2f}s mean={1000 * total / len(calls):6.2f}ms "
            f"rows/call={items / len(calls):6.1f}"
        )


if __name__ == "__main__":
    main()
