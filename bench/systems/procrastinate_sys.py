"""procrastinate with its async psycopg connector and its best settings for no-op jobs.

An async task (no thread hop), ``concurrency`` = the workload's, LISTEN/NOTIFY on,
finished jobs kept (``delete_jobs="never"``, the default, like pg-jobqueue).
procrastinate fetches one job per round trip and finishes one job per round
trip; it has no batch claim or completion setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector

from bench.systems import WorkResult, WorkSpec
from bench.systems._aio import run_until_target
from bench.systems._common import NO_BUNDLES, NOOP, Counter

_counter: Counter | None = None
_latency = False


def _app(url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=url))

    @app.task(name=NOOP)
    async def noop(i: int | None = None, t: float | None = None) -> None:
        if _counter is not None:
            if _latency and t is not None:
                _counter.latency(t)
            else:
                _counter.hit()

    return app


class ProcrastinateSystem:
    name = "procrastinate"
    supports_bundles = False
    why_no_bundles = NO_BUNDLES

    def install(self, url: str) -> None:
        async def go() -> None:
            app = _app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(go())

    def enqueue_each(self, url: str, n: int) -> None:
        async def go() -> None:
            app = _app(url)
            task = app.tasks[NOOP]
            async with app.open_async():
                for i in range(n):
                    await task.defer_async(i=i)

        asyncio.run(go())

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        async def go() -> None:
            app = _app(url)
            task = app.tasks[NOOP]
            async with app.open_async():
                for start in range(0, n, batch):
                    kwargs: list[dict[str, Any]] = [{"i": i} for i in range(start, min(n, start + batch))]
                    await task.batch_defer_async(*kwargs)

        asyncio.run(go())

    def preload(self, url: str, pending: int, finished: int) -> None:
        with psycopg.connect(url) as conn:
            for count, status in ((finished, "succeeded"), (pending, "todo")):
                if count:
                    conn.execute(
                        """insert into procrastinate_jobs (queue_name, task_name, args, status)
                           select 'default', %s, jsonb_build_object('i', g), %s::procrastinate_job_status
                           from generate_series(1, %s) g""",
                        (NOOP, status, count),
                    )
            conn.commit()
            conn.autocommit = True
            conn.execute("vacuum analyze procrastinate_jobs")
            conn.execute("checkpoint")  # the load's writes are not the workload's

    def preload_bundles(self, url: str, bundles: int, size: int) -> None:
        raise NotImplementedError(self.why_no_bundles)

    def latency_producer(self, url: str, n: int, interval: float) -> None:
        async def go() -> None:
            app = _app(url)
            task = app.tasks[NOOP]
            async with app.open_async():
                next_at = time.monotonic()
                for _ in range(n):
                    await task.defer_async(t=time.monotonic())
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        asyncio.run(go())

    def count_succeeded(self, url: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select count(*) from procrastinate_jobs where status = 'succeeded' and task_name = %s",
                (NOOP,),
            ).fetchone()
        return int(row[0]) if row else 0

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        return asyncio.run(self._work(url, spec, ready))

    async def _work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        global _counter, _latency
        counter = _counter = Counter(spec.target)
        _latency = spec.kind == "latency"
        app = _app(url)
        async with app.open_async():

            async def start() -> None:
                await app.run_worker_async(
                    concurrency=spec.concurrency, wait=True, listen_notify=True, install_signal_handlers=False
                )

            async def stop(task: asyncio.Task[None]) -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            seconds = await run_until_target(start, stop, counter, ready, prestart=_latency)
        return WorkResult(seconds, counter.calls, 0, counter.latencies)


SYSTEM = ProcrastinateSystem()
