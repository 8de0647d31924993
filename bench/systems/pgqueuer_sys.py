"""pgqueuer with its asyncpg driver and its best settings for no-op jobs.

Best settings: ``batch_size`` = the concurrency (the completion buffer flushes when
``batch_size`` outcomes wait, else after 0.1 s; on quick W3 c=16 batch 16 gave 1,241
jobs/s, batch 4 590, batch 64 154; at c=1 only batch 1 avoids the 0.1 s wait),
``log_aggregation_interval=0`` (no background statistics folding), an async
no-op entrypoint with ``concurrency_limit`` = the concurrency.
Finished jobs leave the queue table and are kept in ``pgqueuer_log``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

from bench.systems import WorkResult, WorkSpec
from bench.systems._aio import run_until_target
from bench.systems._common import NO_BUNDLES, NOOP, Counter

#: $BENCH_PGQUEUER_BATCH overrides the batch size (to re-check which is best); default: the concurrency.
BATCH_ENV = "BENCH_PGQUEUER_BATCH"


def _payload(i: int) -> bytes:
    return b'{"i": %d}' % i


class PgQueuerSystem:
    name = "pgqueuer"
    supports_bundles = False
    why_no_bundles = NO_BUNDLES

    def install(self, url: str) -> None:
        asyncio.run(self._install(url))

    async def _install(self, url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()

    def enqueue_each(self, url: str, n: int) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(url)
            q = Queries(AsyncpgDriver(conn))
            for i in range(n):
                await q.enqueue(NOOP, _payload(i))
            await conn.close()

        asyncio.run(go())

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(url)
            q = Queries(AsyncpgDriver(conn))
            for start in range(0, n, batch):
                idx = range(start, min(n, start + batch))
                await q.enqueue([NOOP] * len(idx), [_payload(i) for i in idx], [0] * len(idx))
            await conn.close()

        asyncio.run(go())

    def preload(self, url: str, pending: int, finished: int) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(url)
            if finished:
                await conn.execute(
                    """insert into pgqueuer_log (job_id, status, priority, entrypoint, aggregated, created)
                       select g, 'successful', 0, $1, true, now() - interval '1 hour'
                       from generate_series(1, $2::int) g""",
                    NOOP,
                    finished,
                )
            if pending:
                await conn.execute(
                    """insert into pgqueuer (priority, status, entrypoint, payload)
                       select 0, 'queued', $1, convert_to('{"i": ' || g || '}', 'utf8')
                       from generate_series(1, $2::int) g""",
                    NOOP,
                    pending,
                )
            await conn.execute("vacuum analyze pgqueuer")
            await conn.execute("vacuum analyze pgqueuer_log")
            await conn.execute("checkpoint")  # the load's writes are not the workload's
            await conn.close()

        asyncio.run(go())

    def preload_bundles(self, url: str, bundles: int, size: int) -> None:
        raise NotImplementedError(self.why_no_bundles)

    def latency_producer(self, url: str, n: int, interval: float) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(url)
            q = Queries(AsyncpgDriver(conn))
            next_at = time.monotonic()
            for _ in range(n):
                await q.enqueue(NOOP, repr(time.monotonic()).encode())
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await conn.close()

        asyncio.run(go())

    def count_succeeded(self, url: str) -> int:
        async def go() -> int:
            conn = await asyncpg.connect(url)
            n = await conn.fetchval(
                "select count(*) from pgqueuer_log where status = 'successful' and entrypoint = $1", NOOP
            )
            await conn.close()
            return int(n)

        return asyncio.run(go())

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        return asyncio.run(self._work(url, spec, ready))

    async def _work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        counter = Counter(spec.target)
        conn = await asyncpg.connect(url)
        pgq = PgQueuer.from_asyncpg_connection(conn)

        @pgq.entrypoint(NOOP, concurrency_limit=spec.concurrency)
        async def noop(job: Job) -> None:
            if spec.kind == "latency":
                assert job.payload is not None
                counter.latency(float(job.payload))
            else:
                counter.hit()

        batch = int(os.environ.get(BATCH_ENV) or spec.concurrency)

        async def start() -> None:
            await pgq.run(
                batch_size=batch,
                mode=QueueExecutionMode.continuous,
                log_aggregation_interval=timedelta(0),
            )

        async def stop(task: asyncio.Task[None]) -> None:
            pgq.shutdown.set()
            await task

        seconds = await run_until_target(start, stop, counter, ready, prestart=spec.kind == "latency")
        await conn.close()
        return WorkResult(seconds, counter.calls, 0, counter.latencies)


SYSTEM = PgQueuerSystem()
