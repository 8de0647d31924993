"""pg-jobqueue, two rows: ``pg-jobqueue`` is the README path exactly as a user calls it
(``init_job_queue``, ``jobqueue.add`` / ``add_many``, ``jobworker.register``,
``jobworker.start_threads(c)``, default settings); ``pg-jobqueue-tuned`` is a pool built by
hand with a fixed prefetch."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

import jobqueue
import jobworker
from bench.systems import WorkResult, WorkSpec
from bench.systems._common import BUNDLE, NOOP, WAIT_TIMEOUT, Counter
from jobworker import Registry, WorkerPool
from jobworker_pg import PostgresService, init_job_queue, install_schema

#: The tuned row's jobs claimed ahead of free threads (``WorkerPool.configure(prefetch=...)``),
#: changed with ``python -m bench --prefetch N``.
DEFAULT_PREFETCH = 64
PREFETCH_ENV = "BENCH_PREFETCH"


class PgJobqueue:
    name = "pg-jobqueue"
    supports_bundles = True
    why_no_bundles = ""

    def install(self, url: str) -> None:
        install_schema(url)

    def enqueue_each(self, url: str, n: int) -> None:
        init_job_queue(url)
        try:
            for i in range(n):
                jobqueue.add(jobqueue.new_job(NOOP, "bench", {"i": i}))
        finally:
            jobqueue.close()

    def enqueue_batches(self, url: str, n: int, batch: int) -> None:
        init_job_queue(url)
        try:
            for start in range(0, n, batch):
                idx = range(start, min(n, start + batch))
                jobqueue.add_many([jobqueue.new_job(NOOP, "bench", {"i": i}) for i in idx])
        finally:
            jobqueue.close()

    def preload(self, url: str, pending: int, finished: int) -> None:
        with psycopg.connect(url) as conn:
            conn.execute("alter table worker.job disable trigger job_inserted")
            if finished:
                conn.execute(
                    """insert into worker.job (id, type, payload, origin, started_at, worker_alive_at,
                                               stopped_at, attempt, result, created_at)
                       select gen_random_uuid(), %s, jsonb_build_object('i', g), 'bench',
                              now(), now(), now(), 1, 'null'::jsonb, now() - interval '1 hour'
                       from generate_series(1, %s) g""",
                    (NOOP, finished),
                )
            if pending:
                conn.execute(
                    """insert into worker.job (id, type, payload, origin)
                       select gen_random_uuid(), %s, jsonb_build_object('i', g), 'bench'
                       from generate_series(1, %s) g""",
                    (NOOP, pending),
                )
            conn.execute("alter table worker.job enable trigger job_inserted")
            conn.commit()
            conn.autocommit = True
            conn.execute("vacuum analyze worker.job")
            conn.execute("checkpoint")  # the load's writes are not the workload's

    def preload_bundles(self, url: str, bundles: int, size: int) -> None:
        with PostgresService(url) as service:
            for b in range(bundles):
                descs = [jobqueue.JobDesc(type=NOOP, payload={"b": b, "i": i}) for i in range(size)]
                service.add_job_bundle(jobqueue.new_job_bundle(BUNDLE, "bench", descs))

    def latency_producer(self, url: str, n: int, interval: float) -> None:
        with PostgresService(url) as service:
            next_at = time.monotonic()
            for _ in range(n):
                service.add_job(jobqueue.new_job(NOOP, "bench", {"t": time.monotonic()}))
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def wait_latency(self, url: str, n: int) -> list[float]:
        """W7: add a job, ``jobqueue.wait_for_job`` its result; ``n`` times, one after another,
        after one warm-up (the first wait adds the service's listener)."""
        seconds = []
        with PostgresService(url) as service:
            jobqueue.wait_for_job(
                service.add_job(jobqueue.new_job(NOOP, "bench", None)).id, 30, service=service
            )
            for _ in range(n):
                job = service.add_job(jobqueue.new_job(NOOP, "bench", None))
                t0 = time.perf_counter()
                jobqueue.wait_for_job(job.id, 30, service=service)
                seconds.append(time.perf_counter() - t0)
        return seconds

    def count_succeeded(self, url: str) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select count(*) from worker.job where stopped_at is not null and error_msg is null"
            ).fetchone()
        return int(row[0]) if row else 0

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        """The README path: ``init_job_queue`` and the module functions, default settings."""
        counter = Counter(spec.target)
        register_handlers(jobworker.default_registry(), spec.kind, counter)
        init_job_queue(url)
        try:
            seconds = _run_pool(jobworker.default_pool(), spec, counter, ready)
        finally:
            jobqueue.close()
        return WorkResult(seconds, counter.calls, counter.job_calls, counter.latencies)


class PgJobqueueTuned(PgJobqueue):
    """pg-jobqueue with its tuning options: a fixed prefetch (``--prefetch``), a small pool
    built by hand."""

    name = "pg-jobqueue-tuned"

    def work(self, url: str, spec: WorkSpec, ready: Any) -> WorkResult:
        counter = Counter(spec.target)
        registry = Registry()
        register_handlers(registry, spec.kind, counter)
        service = PostgresService(url, max_size=4)
        pool = WorkerPool(service, registry)
        pool.configure(prefetch=int(os.environ.get(PREFETCH_ENV, DEFAULT_PREFETCH)))
        try:
            seconds = _run_pool(pool, spec, counter, ready)
        finally:
            service.close()
        return WorkResult(seconds, counter.calls, counter.job_calls, counter.latencies)


def register_handlers(registry: Registry, kind: str, counter: Counter) -> None:
    """The no-op handlers of a work spec of ``kind``, counting into ``counter``."""
    if kind == "latency":
        registry.register(NOOP, lambda job: counter.latency(job.payload["t"]))
    elif kind == "bundles":
        registry.register(NOOP, lambda job: counter.job())
        registry.register_bundle_handler(BUNDLE, lambda bundle: counter.hit())
    elif kind == "drain_async":

        async def noop(job: jobqueue.Job) -> None:
            counter.hit()

        registry.register(NOOP, noop)
    else:
        registry.register(NOOP, lambda job: counter.hit())


def _run_pool(pool: WorkerPool, spec: WorkSpec, counter: Counter, ready: Any) -> float:
    """Start ``pool`` with ``spec.concurrency`` threads (drain_async: async places), wait for
    the target, finish; the seconds from start (latency, wait: from ready, after an idle
    warm-up) to every outcome saved."""
    # The async lane only: no thread beside the event loop.
    threads, async_concurrency = (
        (0, spec.concurrency) if spec.kind == "drain_async" else (spec.concurrency, None)
    )
    try:
        if spec.kind in ("latency", "wait"):
            pool.start_threads(threads)
            time.sleep(0.5)  # let the listener subscribe and the first (empty) claim pass
            ready()
            t0 = time.perf_counter()
        else:
            ready()
            t0 = time.perf_counter()
            pool.start_threads(threads, async_concurrency=async_concurrency)
        if not counter.done.wait(WAIT_TIMEOUT):
            raise TimeoutError("target not reached")
        pool.finish_threads()
        return time.perf_counter() - t0
    finally:
        pool.stop_threads()


SYSTEM = PgJobqueue()
TUNED = PgJobqueueTuned()
