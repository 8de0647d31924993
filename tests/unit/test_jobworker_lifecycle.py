"""Stopping during a start, claims that do not fit, claims that land as the pool stops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest
from fakes import FAST, FakeDatabase

from jobqueue import Job, new_job
from jobworker import Registry, WorkerPool, _session
from jobworker._slots import Run, Slots


class _GatedDatabase(FakeDatabase):
    """A fake whose declare_bundle_handlers / claim_jobs wait for a gate (the seams)."""

    def __init__(self) -> None:
        super().__init__()
        self.declaring = threading.Event()
        self.declare_gate = threading.Event()
        self.claiming = threading.Event()
        self.claim_gate: threading.Event | None = None

    def declare_bundle_handlers(self, bundle_types: Mapping[str, int]) -> None:
        self.declaring.set()
        assert self.declare_gate.wait(10)
        super().declare_bundle_handlers(bundle_types)

    def claim_jobs(self, job_types: Sequence[str], limit: int, *, queue: str = "default") -> list[Job]:
        gate = self.claim_gate
        if gate is not None:
            claimed = super().claim_jobs(job_types, limit, queue=queue)  # committed: the jobs are ours
            self.claiming.set()
            assert gate.wait(10)
            return claimed
        return super().claim_jobs(job_types, limit, queue=queue)


def _worker_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name) and t.is_alive()]


def test_finish_during_a_start_stops_the_threads_that_start() -> None:
    db = _GatedDatabase()
    registry = Registry()
    registry.register_bundle_handler("b", lambda bundle: None)  # start declares it: the seam
    pool = WorkerPool(db, registry, FAST, name="jobworker-startstop")
    starter = threading.Thread(target=pool.start_threads, args=(2,), name="starter")
    starter.start()
    try:
        assert db.declaring.wait(10)  # start_threads is under way
        finished: list[bool] = []
        finisher = threading.Thread(target=lambda: finished.append(pool.finish_threads(10)), name="finisher")
        finisher.start()
        db.declare_gate.set()
        starter.join(10)
        finisher.join(10)
        assert finished == [True]
        assert not pool.running
        for thread in _worker_threads("jobworker-startstop"):
            thread.join(10)
        assert _worker_threads("jobworker-startstop") == []
    finally:
        db.declare_gate.set()
        pool.stop_threads()


def test_a_finish_that_times_out_during_a_start_makes_the_start_stop_itself() -> None:
    db = _GatedDatabase()
    registry = Registry()
    registry.register_bundle_handler("b", lambda bundle: None)
    pool = WorkerPool(db, registry, FAST, name="jobworker-startcancel")
    starter = threading.Thread(target=pool.start_threads, args=(1,), name="starter")
    starter.start()
    try:
        assert db.declaring.wait(10)
        assert pool.finish_threads(0.05) is False  # the start has not ended yet
        db.declare_gate.set()
        starter.join(10)
        assert not pool.running
    finally:
        db.declare_gate.set()
        pool.stop_threads()


def test_slots_take_no_more_runs_than_they_have_places(registry: Registry, db: FakeDatabase) -> None:
    registry.register("t", lambda job: None)
    handler = registry.handler("t")
    assert handler is not None
    slots = Slots(2, lambda job_type: None, prefetch=1)
    runs = [Run(new_job("t", "test", i), handler, timedelta(seconds=5), db) for i in range(5)]
    rejected = slots.add(runs)
    assert rejected == runs[3:]
    assert slots.idle() == 0
    assert slots.add(runs[3:]) == runs[3:]


def test_jobs_claimed_as_the_pool_stops_are_given_back_uncounted(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_session, "JOIN_TIMEOUT", 0.1)  # stopping waits this long for the claimer
    db = _GatedDatabase()
    registry.register("t", lambda job: None)
    pool = WorkerPool(db, registry, FAST, name="jobworker-late-claim")
    jobs = [db.add(new_job("t", "test", i), notify=False) for i in range(2)]
    db.claim_gate = threading.Event()
    pool.start_threads(2)
    try:
        assert db.claiming.wait(10)  # the claim committed; its reply is still on the way
        pool.stop_threads()  # returns while the claim is in flight
        db.claim_gate.set()  # now the claimed jobs arrive at a stopped pool
        db.wait_for(lambda: all(db.jobs[j.id].started_at is None for j in jobs))
        assert [db.jobs[j.id].attempt for j in jobs] == [0, 0]
    finally:
        db.claim_gate.set()
        pool.stop_threads()


class _Seen(logging.Handler):
    """Sets an event when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_threads_replacing_hung_handlers_are_capped(registry: Registry, db: FakeDatabase) -> None:
    gate = threading.Event()
    registry.register("hang", lambda job: gate.wait(30), timeout=0.1)
    pool = WorkerPool(db, registry, FAST, name="jobworker-strays")
    seen = _Seen("not starting another thread")
    logging.getLogger("jobworker._session").addHandler(seen)
    jobs = [db.add(new_job("hang", "test", i)) for i in range(10)]
    pool.start_threads(2)
    try:
        assert seen.event.wait(10)  # the cap held
        # 2 threads x (1 running + MAX_STRAYS strays), and no thread for the other jobs.
        assert len(_worker_threads("jobworker-strays-worker")) <= 2 * (1 + _session.MAX_STRAYS)
        # Jobs claimed for the places the cap took away are given back.
        db.wait_for(lambda: sum(db.jobs[j.id].started_at is not None for j in jobs) <= 4)
        gate.set()  # the strays return: their threads exit, held-back ones start
        db.wait_stopped(*(j.id for j in jobs), timeout=30)
    finally:
        gate.set()
        logging.getLogger("jobworker._session").removeHandler(seen)
        pool.stop_threads()
