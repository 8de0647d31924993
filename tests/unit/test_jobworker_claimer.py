"""The claimer: no lost wake-up when handlers end before the claim round that fed them."""

from __future__ import annotations

import threading
from datetime import timedelta

from fakes import FakeDatabase

from jobqueue import Job, new_job
from jobworker import Registry, WorkerPool
from jobworker._claimer import Claimer
from jobworker._errors import ErrorReporter
from jobworker._slots import Run, Slots, WorkerHandle


def test_a_slot_freed_while_claimed_jobs_are_handed_on_claims_again(
    db: FakeDatabase, registry: Registry
) -> None:
    # The interleaving of the lost wake-up, made certain: each claimed job "runs" and frees
    # its slot inside on_claimed, before the claim round that handed it on has ended.
    registry.register("t", lambda job: None)
    handler = registry.handler("t")
    assert handler is not None
    finished: list[Job] = []
    all_done = threading.Event()
    worker = WorkerHandle()

    def on_claimed(jobs: list[Job]) -> None:
        slots.add([Run(j, handler, timedelta(seconds=5), db) for j in jobs])
        for _ in jobs:
            run = slots.take(worker)
            assert run is not None and slots.handler_returned(run)
            slots.release(run)  # calls slot_freed now
            finished.append(run.job)
        if len(finished) == 3:
            all_done.set()

    slots = Slots(1, lambda job_type: claimer.slot_freed(job_type))
    claimer = Claimer(db, registry.handlers(), slots, on_claimed, ErrorReporter(), None, "test-claimer")
    for i in range(3):
        db.add(new_job("t", "test", i), notify=False)
    claimer.start()
    try:
        # No notification, no polling: only the freed slots can ask for the next claims.
        assert all_done.wait(5), f"{len(finished)} of 3 queued jobs ran"
    finally:
        claimer.stop(5)


def test_bursts_without_a_notification_after_the_last_all_run(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    # Stress: one thread, no polling, fast handlers; each burst notifies once, when its
    # first job is added; the rest of the burst is found only through freed slots.
    done = threading.Semaphore(0)
    registry.register("burst", lambda job: done.release())
    pool.start_threads(1)
    bursts, size = 40, 25
    for _ in range(bursts):
        db.add(new_job("burst", "test", 0))
        for _ in range(size - 1):
            db.add(new_job("burst", "test", 0), notify=False)
    for n in range(bursts * size):
        assert done.acquire(timeout=10), f"only {n} of {bursts * size} jobs ran"
    assert pool.finish_threads(10)
