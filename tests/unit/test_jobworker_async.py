"""Async handlers in the pool, against the in-memory fake database: every registration form,
timeouts that cancel, the pool's width, context, a blocked loop, finishing."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes import FakeDatabase

import jobworker
from jobqueue import Job, JobBundle, JobDesc, new_job, new_job_bundle
from jobworker import Registry, WorkerPool


def add(db: FakeDatabase, job_type: str, payload: Any = None, **kwargs: Any) -> Job:
    return db.add(new_job(job_type, "test", payload, **kwargs))


@dataclasses.dataclass
class Greeting:
    name: str


def test_async_handler_result_is_saved_and_it_runs_on_the_pool_loop(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    threads: list[str] = []

    async def double(job: Job) -> dict[str, int]:
        await asyncio.sleep(0)
        threads.append(threading.current_thread().name)
        return {"value": job.payload * 2}

    registry.register("double", double)
    pool.start_threads(1)
    job = add(db, "double", 21)
    db.wait_stopped(job.id)
    assert db.job(job.id).result == {"value": 42}
    assert threads == ["jobworker-test-loop"]
    assert pool.finish_threads(5)


def test_async_typed_handlers_of_every_registration_form_run(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    async def greet(payload: Greeting) -> str:
        return f"hello {payload.name}"

    greet_type = registry.register_func(greet)

    @registry.job("shout")
    async def shout(job: Job, payload: Greeting) -> str:
        return f"{payload.name.upper()} (attempt {job.attempt})"

    async def echo(payload: list[int]) -> int:
        return sum(payload)

    registry.register_func_for_job_type("sum", echo)
    pool.start_threads(1, async_concurrency=4)
    jobs = [add(db, greet_type, {"name": "ada"}), add(db, "shout", {"name": "bo"}), add(db, "sum", [1, 2])]
    bad = add(db, greet_type, {"nom": "x"})
    db.wait_stopped(*(j.id for j in [*jobs, bad]))
    assert [db.job(j.id).result for j in jobs] == ["hello ada", "BO (attempt 1)", 3]
    assert "is not a valid Greeting" in (db.job(bad.id).error_msg or "")
    assert pool.finish_threads(5)


def test_async_hooks_and_retry_scheduler_are_awaited(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    events: list[str] = []

    async def before(job: Job) -> None:
        await asyncio.sleep(0)
        events.append(f"before {job.type} {jobworker.current_job_context().job.id == job.id}")

    async def after(job: Job, error: BaseException | None) -> None:
        events.append(f"after {job.type} {type(error).__name__}")

    async def schedule(job: Job) -> datetime:
        await asyncio.sleep(0)
        events.append(f"schedule {job.error_msg}")
        return datetime.now(UTC) + timedelta(milliseconds=10)

    async def flaky(job: Job) -> str:
        if job.attempt == 1:
            raise RuntimeError("first try fails")
        return "second try"

    registry.register("flaky", flaky)
    registry.register("plain", lambda job: "sync")  # a sync job with the same async hooks
    registry.add_before_job_hook(before)
    registry.add_after_job_hook(after)
    registry.register_schedule_retry("flaky", schedule)
    pool.start_threads(1)
    flaky_job = add(db, "flaky", max_retry_count=1)
    db.wait_stopped(flaky_job.id)
    plain = add(db, "plain")
    db.wait_stopped(plain.id)
    assert pool.finish_threads(5)
    assert db.job(flaky_job.id).result == "second try"
    assert db.job(plain.id).result == "sync"
    assert events == [
        "before flaky True",
        "after flaky RuntimeError",
        "schedule first try fails",
        "before flaky True",
        "after flaky NoneType",
        "before plain True",
        "after plain NoneType",
    ]


def test_async_bundle_handler_runs_with_the_completed_bundle(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    done = threading.Event()

    @registry.bundle_handler("import")
    async def imported(bundle: JobBundle) -> dict[str, int]:
        done.set()
        return {"jobs": len(bundle.jobs)}

    registry.register("part", lambda job: job.payload)
    pool.start_threads(2)
    db.add_bundle(new_job_bundle("import", "test", [JobDesc(type="part", payload=i) for i in range(3)]))
    assert done.wait(10)
    assert pool.finish_threads(5)
    (completion,) = [j for j in db.jobs.values() if j.type == jobworker.BUNDLE_JOB_PREFIX + "import"]
    assert completion.result == {"jobs": 3}


def test_async_timeout_cancels_the_task_and_the_pool_keeps_its_width(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    cancelled: list[str] = []
    strays_may_end = asyncio.Event()
    running = 0
    both_ran_together = threading.Event()

    async def stubborn(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(str(job.id))
            await strays_may_end.wait()  # ignores the cancellation: a stray that keeps going
        finally:
            cancelled.append(f"finally {job.id}")

    async def quick(job: Job) -> str:
        nonlocal running
        running += 1
        if running == 2:
            both_ran_together.set()
        for _ in range(500):
            if both_ran_together.is_set():
                break
            await asyncio.sleep(0.01)
        running -= 1
        return "ok"

    registry.register("stubborn", stubborn, timeout=0.2)
    registry.register("quick", quick)
    pool.start_threads(1, async_concurrency=2)
    strays = [add(db, "stubborn"), add(db, "stubborn")]
    db.wait_stopped(*(j.id for j in strays))
    for stray in strays:
        assert "ran longer than its timeout" in (db.job(stray.id).error_msg or "")
    db.wait_for(lambda: len(cancelled) == 2)
    quicks = [add(db, "quick"), add(db, "quick")]
    db.wait_stopped(*(j.id for j in quicks))
    assert both_ran_together.is_set(), "two places were free while both strays still ran"
    session = pool._session
    assert session is not None and session.async_lane is not None
    session.async_lane.loop.call_soon_threadsafe(strays_may_end.set)
    db.wait_for(lambda: len(cancelled) == 4)
    assert pool.finish_threads(5)
    assert all(db.job(j.id).result == "ok" for j in quicks)


def test_async_timeout_runs_finally_and_retries(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    finally_ran = threading.Event()

    async def hang(job: Job) -> str:
        if job.attempt > 1:
            return "second attempt"
        try:
            await asyncio.sleep(60)
        finally:
            finally_ran.set()
        return "never"

    registry.register("hang", hang, timeout=0.2)
    pool.start_threads(1)
    job = add(db, "hang", max_retry_count=1)
    assert finally_ran.wait(10)
    db.wait_stopped(job.id)
    assert db.job(job.id).result == "second attempt"
    assert pool.finish_threads(5)


def test_finish_threads_waits_for_running_async_jobs(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    started = threading.Semaphore(0)

    async def slow(job: Job) -> int:
        started.release()
        await asyncio.sleep(0.3)
        return int(job.payload)

    registry.register("slow", slow)
    pool.start_threads(1, async_concurrency=10)
    jobs = [add(db, "slow", i) for i in range(10)]
    for _ in jobs:
        assert started.acquire(timeout=10)
    assert pool.finish_threads(10)
    assert [db.job(j.id).result for j in jobs] == list(range(10))


def test_async_concurrency_caps_the_async_jobs_running_at_once(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    running = peak = 0

    async def work(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    registry.register("work", work)
    pool.start_threads(1, async_concurrency=3)
    jobs = [add(db, "work") for _ in range(20)]
    db.wait_stopped(*(j.id for j in jobs))
    assert pool.finish_threads(5)
    assert peak == 3


def test_an_async_handler_blocking_the_loop_is_logged_with_its_job_type(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobworker")

    async def blocker(job: Job) -> None:
        threading.Event().wait(1.0)  # blocking call on the loop: what the warning is for

    registry.register("app.blocker", blocker)
    pool.start_threads(1)
    job = add(db, "app.blocker")
    db.wait_stopped(job.id)
    assert pool.finish_threads(5)
    warnings = [r for r in caplog.records if getattr(r, "action", None) == "loop-blocked"]
    assert warnings, "no slow-callback warning"
    assert "'app.blocker'" in warnings[0].getMessage()
    assert warnings[0].job_type == "app.blocker"  # type: ignore[attr-defined]


def test_current_job_context_in_concurrent_async_handlers_is_each_ones_own(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    async def whoami(job: Job) -> bool:
        await asyncio.sleep(0.01)
        context = jobworker.current_job_context()
        await asyncio.sleep(0.01)
        return context.job.id == job.id and jobworker.current_job_context() is context

    registry.register("whoami", whoami)
    pool.start_threads(1, async_concurrency=50)
    jobs = [add(db, "whoami") for _ in range(50)]
    db.wait_stopped(*(j.id for j in jobs))
    assert pool.finish_threads(5)
    assert all(db.job(j.id).result is True for j in jobs)


def test_do_job_runs_an_async_handler_inline(registry: Registry, pool: WorkerPool) -> None:
    async def triple(job: Job) -> int:
        await asyncio.sleep(0)
        return int(job.payload) * 3

    registry.register("triple", triple)
    assert pool.do_job(new_job("triple", "test", 4)).result == 12


def test_start_threads_rejects_widths_that_cannot_run_the_registered_types(
    registry: Registry, pool: WorkerPool
) -> None:
    async def a(job: Job) -> None:
        return None

    registry.register("a", a)
    with pytest.raises(ValueError, match="async_concurrency=0, but async job types are registered: a"):
        pool.start_threads(1, async_concurrency=0)
    with pytest.raises(ValueError, match="async_concurrency must be a positive int"):
        pool.start_threads(1, async_concurrency=-1)
    registry.register("s", lambda job: None)
    with pytest.raises(ValueError, match="for the sync job types s, got 0"):
        pool.start_threads(0)
    assert not pool.running


def test_async_only_pool_runs_without_threads(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    async def a(job: Job) -> str:
        return "ran"

    registry.register("a", a)
    pool.start_threads(0, async_concurrency=2)
    job = add(db, "a")
    db.wait_stopped(job.id)
    assert db.job(job.id).result == "ran"
    assert pool.finish_threads(5)
    assert not [t for t in threading.enumerate() if t.name.startswith("jobworker-test-")]


def test_do_job_of_an_async_handler_works_inside_a_running_event_loop(
    registry: Registry, pool: WorkerPool
) -> None:
    async def whoami(job: Job) -> bool:
        await asyncio.sleep(0)
        return jobworker.current_job_context().job.id == job.id

    registry.register("whoami", whoami)

    async def main() -> Job:
        return pool.do_job(new_job("whoami", "test", None))  # the loop cannot be re-entered

    assert asyncio.run(main()).result is True


def test_a_sync_function_returning_a_coroutine_is_awaited(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    async def later(value: int) -> int:
        await asyncio.sleep(0)
        return value + 1

    registry.register("wrapped", lambda job: later(job.payload))  # not async def itself: a thread runs it
    pool.start_threads(1)
    job = add(db, "wrapped", 41)
    db.wait_stopped(job.id)
    assert db.job(job.id).result == 42
    assert pool.finish_threads(5)


def test_a_full_thread_lane_neither_loses_its_waiting_job_nor_spins_the_claimer(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    # One thread, busy; the async lane has room but nothing to run. The waiting sync job
    # must run once the thread frees, and the claimer must not claim in a loop meanwhile.
    release = threading.Event()
    started: list[int] = []

    def blocking(job: Job) -> None:
        started.append(job.payload)
        release.wait(10)

    async def idle(job: Job) -> None:
        return None

    registry.register("blocking", blocking)
    registry.register("idle", idle)
    pool.start_threads(1)
    first = add(db, "blocking", 1)
    second = add(db, "blocking", 2)
    db.wait_for(lambda: started == [1])
    claims_while_full = len(db.claim_calls)
    # Absence of activity can only be observed over time: give a spinning claimer a chance.
    release_after = threading.Timer(0.5, release.set)
    release_after.start()
    db.wait_stopped(first.id)
    assert len(db.claim_calls) - claims_while_full <= 4, db.claim_calls[claims_while_full:]
    db.wait_stopped(second.id)
    assert started == [1, 2]
    assert pool.finish_threads(5)
