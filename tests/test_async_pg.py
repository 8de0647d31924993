"""Async handlers on a real PostgreSQL: a mixed pool, timeouts that cancel, SIGTERM of a worker
process, and AsyncWorker inside a FastAPI app."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from helpers import wait_for
from processes import WorkerProcess, scalar

import jobqueue
import jobworker
from jobqueue import Job
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService, synchronous_jobs
from jobworker_pg._testing import drain

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=10, job_timeout=30)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def pool(service: PostgresService, registry: Registry) -> Iterator[WorkerPool]:
    pool = WorkerPool(service, registry, SETTINGS, name="jobworker-asyncpg")
    yield pool
    pool.stop_threads()


def test_mixed_pool_runs_1000_sync_and_1000_async_jobs_each_exactly_once(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    runs: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def sync_job(job: Job) -> str:
        with lock:
            runs[str(job.id)] += 1
        return threading.current_thread().name

    async def async_job(job: Job) -> str:
        await asyncio.sleep(0)
        with lock:
            runs[str(job.id)] += 1
        return threading.current_thread().name

    registry.register("mixed.sync", sync_job)
    registry.register("mixed.async", async_job)
    jobs = service.add_jobs(
        [jobqueue.new_job("mixed.sync", "test", i) for i in range(1000)]
        + [jobqueue.new_job("mixed.async", "test", i) for i in range(1000)]
    )
    pool.start_threads(4, async_concurrency=50)
    wait_for(lambda: service.get_status().succeeded == 2000, 120, "2000 jobs succeed", interval=0.2)
    assert pool.finish_threads(30)
    assert len(runs) == 2000 and set(runs.values()) == {1}
    stored = [service.get_job(j.id) for j in jobs[::50]]
    assert all(j.attempt == 1 and j.succeeded for j in stored)
    assert {j.result for j in stored if j.type == "mixed.async"} == {"jobworker-asyncpg-loop"}
    assert all(
        str(j.result).startswith("jobworker-asyncpg-worker-") for j in stored if j.type == "mixed.sync"
    )


def test_async_timeout_cancels_the_handler_and_the_pool_keeps_its_width(
    service: PostgresService, registry: Registry, pool: WorkerPool
) -> None:
    cancelled = threading.Semaphore(0)
    finally_ran = threading.Semaphore(0)
    release_strays = threading.Event()
    started = threading.Semaphore(0)
    gate = threading.Event()

    async def stubborn(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.release()
            await asyncio.to_thread(release_strays.wait, 30)  # carries on after the cancel
        finally:
            finally_ran.release()

    async def gated(job: Job) -> str:
        started.release()
        await asyncio.to_thread(gate.wait, 30)
        return "ok"

    registry.register("stubborn", stubborn, timeout=0.5)
    registry.register("gated", gated)
    pool.start_threads(1, async_concurrency=2)
    strays = service.add_jobs([jobqueue.new_job("stubborn", "test", None) for _ in range(2)])
    for _ in strays:
        assert cancelled.acquire(timeout=30)
    wait_for(lambda: all(service.get_job(j.id).stopped for j in strays), 30, "both strays time out")
    assert all("ran longer than its timeout" in (service.get_job(j.id).error_msg or "") for j in strays)
    # Both strays still run; both places are free again: two new jobs run side by side.
    gated_jobs = service.add_jobs([jobqueue.new_job("gated", "test", None) for _ in range(2)])
    for _ in gated_jobs:
        assert started.acquire(timeout=30), "a place stayed taken by a timed-out task"
    gate.set()
    release_strays.set()
    for _ in strays:
        assert finally_ran.acquire(timeout=30)
    assert pool.finish_threads(30)
    assert all(service.get_job(j.id).result == "ok" for j in gated_jobs)


@pytest.mark.slow
def test_sigterm_mid_run_finishes_running_async_jobs_and_exits_zero(
    service: PostgresService, db_url: str
) -> None:
    worker = WorkerProcess(db_url, 1, JQ_TYPES="aexec", JQ_ASYNC="20", JQ_HEARTBEAT="0.5", JQ_DEAD_FOR="10")
    try:
        worker.wait_ready()
        jobs = service.add_jobs([jobqueue.new_job("aexec", "test", {"sleep": 1.5}) for _ in range(10)])
        wait_for(lambda: scalar(db_url, "select count(*) from exec_log") == 10, 30, "all ten start")
        assert worker.terminate() == 0, worker.log()
    finally:
        if worker.alive:
            worker.kill()
    assert all(service.get_job(j.id).succeeded for j in jobs)
    assert scalar(db_url, "select count(*) from exec_log where ended_at is null") == 0
    assert scalar(db_url, "select count(*) from exec_log") == 10


# -- AsyncWorker in a FastAPI app ---------------------------------------------------------------


# Starlette's TestClient prefers httpx2 and warns when it finds httpx (our dev dependency).
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_async_worker_in_a_fastapi_app_runs_the_job_a_request_enqueued_in_its_transaction(
    db_url: str, service: PostgresService
) -> None:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute("create table orders (id serial primary key, item text not null)")
    registry = Registry()
    loops: list[asyncio.AbstractEventLoop] = []

    async def ship(job: Job) -> dict[str, Any]:
        loops.append(asyncio.get_running_loop())
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            cur = await aconn.execute("select item from orders where id = %s", (job.payload["order_id"],))
            row = await cur.fetchone()
        assert row is not None, "the job ran before the order's transaction committed"
        return {"shipped": row[0]}

    registry.register("orders.ship", ship)
    app_loop: list[asyncio.AbstractEventLoop] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app_loop.append(asyncio.get_running_loop())
        async with jobworker.AsyncWorker(service, registry=registry, concurrency=10, settings=SETTINGS):
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders")
    async def create_order(item: str, fail: bool = False) -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            try:
                async with aconn.transaction():
                    cur = await aconn.execute("insert into orders (item) values (%s) returning id", (item,))
                    row = await cur.fetchone()
                    assert row is not None
                    job = jobqueue.new_job("orders.ship", "api", {"order_id": row[0]})
                    await service.add_job_async(job, conn=aconn)
                    if fail:
                        raise RuntimeError("payment declined")
            except RuntimeError as exc:
                raise HTTPException(status_code=402, detail=str(exc)) from None
        return {"job_id": str(job.id)}

    @app.get("/jobs/{job_id}")
    async def job_result(job_id: str) -> Any:
        done = await jobqueue.wait_for_job_async(job_id, timeout=30, service=service)  # type: ignore[arg-type]
        return done.result

    with TestClient(app) as client:
        declined = client.post("/orders", params={"item": "nothing", "fail": True})
        assert declined.status_code == 402
        created = client.post("/orders", params={"item": "book"})
        assert created.status_code == 200, created.text
        result = client.get(f"/jobs/{created.json()['job_id']}")
        assert result.json() == {"shipped": "book"}
    assert loops == app_loop, "the handler ran on the app's event loop"
    assert service.get_status().total == 1  # the declined order's job was rolled back with it


def test_drain_and_synchronous_jobs_run_async_handlers_through_the_same_attempt_runner(
    current: PostgresService,
) -> None:
    registry = jobworker.default_registry()

    async def shout(job: Job) -> str:
        await asyncio.sleep(0)
        assert jobworker.current_job_context().job.id == job.id
        return str(job.payload).upper()

    registry.register("async.shout", shout)
    try:
        stored = jobqueue.add(jobqueue.new_job("async.shout", "test", "drained"))
        (ran,) = drain(current)
        assert ran.id == stored.id and current.get_job(stored.id).result == "DRAINED"
        with synchronous_jobs():
            assert jobqueue.add(jobqueue.new_job("async.shout", "test", "inline")).result == "INLINE"

            async def produce() -> Job:
                return await jobqueue.add_async(jobqueue.new_job("async.shout", "test", "awaited"))

            assert asyncio.run(produce()).result == "AWAITED"
    finally:
        registry.unregister("async.shout")


def test_async_worker_keeps_the_heartbeat_of_a_job_that_blocks_the_app_loop(
    service: PostgresService, caplog: pytest.LogCaptureFixture
) -> None:
    """Claims and heartbeats run on the worker's threads, not on the loop: a handler that
    blocks the loop for longer than dead_for is reported, and its job never looks dead."""
    caplog.set_level(logging.WARNING, logger="jobworker")
    registry = Registry()
    started = threading.Event()
    unblock = threading.Event()

    async def blocker(job: Job) -> str:
        started.set()
        unblock.wait(30)  # blocks the event loop: what the warning is about
        return "done"

    registry.register("app.blocker", blocker)
    settings = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=1.0, job_timeout=30)

    async def main() -> Job:
        async with jobworker.AsyncWorker(service, registry=registry, settings=settings):
            job = await service.add_job_async(jobqueue.new_job("app.blocker", "test", None))
            return await jobqueue.wait_for_job_async(job.id, timeout=60, service=service)

    result: list[Job] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(main())))
    runner.start()
    assert started.wait(30)
    (job_id,) = [j.id for j in service.get_all_jobs_to_do()]
    heartbeats: set[Any] = set()

    def heartbeats_past_dead_for() -> bool:  # 8 x 0.2 s: the reaper has looked at it too
        heartbeats.add(service.get_job(job_id).worker_alive_at)
        return len(heartbeats) >= 8

    wait_for(heartbeats_past_dead_for, 30, "heartbeats while the loop is blocked", interval=0.05)
    assert service.get_job(job_id).worker_alive(timedelta(seconds=1.0))
    unblock.set()
    runner.join(60)
    assert result and result[0].result == "done" and result[0].attempt == 1
    blocked = [r for r in caplog.records if getattr(r, "action", None) == "loop-blocked"]
    assert any("'app.blocker'" in r.getMessage() for r in blocked)
