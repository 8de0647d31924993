"""One attempt runner for worker threads and do_job: hooks see the same job context."""

from __future__ import annotations

import threading

from fakes import FakeDatabase

import jobworker
from jobqueue import Job, new_job
from jobworker import JobContext, Registry, WorkerPool


def _record_contexts(registry: Registry, seen: list[tuple[str, JobContext]], done: threading.Event) -> None:
    registry.add_before_job_hook(lambda job: seen.append(("before", jobworker.current_job_context())))

    def after(job: Job, error: BaseException | None) -> None:
        seen.append(("after", jobworker.current_job_context()))
        done.set()

    registry.add_after_job_hook(after)


def test_after_hook_sees_the_job_context_on_a_worker_thread(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    seen: list[tuple[str, JobContext]] = []
    done = threading.Event()
    errors: list[BaseException] = []
    pool.on_error(errors.append)
    registry.register("t", lambda job: "ok")
    _record_contexts(registry, seen, done)
    pool.start_threads(1)
    job = db.add(new_job("t", "test", None))
    assert done.wait(10)
    db.wait_stopped(job.id)
    assert errors == []
    assert [(when, ctx.job.id) for when, ctx in seen] == [("before", job.id), ("after", job.id)]


def test_after_hook_sees_the_job_context_under_do_job(registry: Registry) -> None:
    seen: list[tuple[str, JobContext]] = []
    done = threading.Event()
    registry.register("t", lambda job: "ok")
    _record_contexts(registry, seen, done)
    job = WorkerPool(None, registry).do_job(new_job("t", "test", None))
    assert job.succeeded
    assert [(when, ctx.job.id) for when, ctx in seen] == [("before", job.id), ("after", job.id)]


def test_after_hook_of_a_timed_out_attempt_sees_the_job_context(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    release = threading.Event()
    seen: list[tuple[BaseException | None, JobContext]] = []
    done = threading.Event()

    def slow(job: Job) -> None:
        release.wait(10)

    def after(job: Job, error: BaseException | None) -> None:
        seen.append((error, jobworker.current_job_context()))
        done.set()

    registry.register("slow", slow, timeout=0.2)
    registry.add_after_job_hook(after)
    pool.start_threads(1)
    job = db.add(new_job("slow", "test", None))
    db.wait_stopped(job.id)
    release.set()
    assert done.wait(10)
    error, context = seen[0]
    assert isinstance(error, jobworker.JobTimeoutError)
    assert context.job.id == job.id
