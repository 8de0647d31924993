"""The worker pool against the in-memory fake database: claiming, outcomes, lifecycle."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from fakes import FAST, FakeDatabase, Gates

import jobworker
from jobqueue import Job, JobBundle, JobDesc, JobQueueError, RegistrationError, new_job, new_job_bundle
from jobworker import JobContext, OutcomeKind, Registry, WorkerPool


class Counter:
    """Counts handlers running at once; waits for a number of them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.running = 0
        self.peak = 0
        self.started = 0

    def enter(self) -> None:
        with self._cond:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
            self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self.running -= 1
            self._cond.notify_all()

    def wait_started(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.started >= n, 10), f"{self.started} of {n} started"


def blocking(counter: Counter, gate: threading.Event) -> Any:
    def handler(job: Job) -> Any:
        counter.enter()
        try:
            assert gate.wait(10)
            return job.payload
        finally:
            counter.leave()

    return handler


def add(db: FakeDatabase, job_type: str, payload: Any = None, **kwargs: Any) -> Job:
    return db.add(new_job(job_type, "test", payload, **kwargs))


def test_successful_job_result_is_saved(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    registry.register("double", lambda job: {"value": job.payload * 2})
    pool.start_threads(2)
    job = add(db, "double", 21)
    db.wait_stopped(job.id)
    stored = db.job(job.id)
    assert stored.result == {"value": 42}
    assert stored.error_msg is None
    assert pool.finish_threads(5)


def test_handler_exception_is_stored_in_error_fields(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    def fail(job: Job) -> None:
        raise LookupError("customer 7 not found\nwhile billing")

    registry.register("bill", fail)
    pool.start_threads(1)
    job = add(db, "bill")
    db.wait_stopped(job.id)
    stored = db.job(job.id)
    assert stored.error_msg == "customer 7 not found"
    assert stored.error_data["type"] == "LookupError"
    assert stored.error_data["message"] == "customer 7 not found\nwhile billing"
    assert "raise LookupError" in stored.error_data["traceback"]
    (outcome,) = db.all_outcomes()
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error_type == "LookupError"


def test_failed_attempt_is_retried_when_its_scheduler_says(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    def flaky(job: Job) -> str:
        if job.attempt == 1:
            raise RuntimeError("first try fails")
        return "ok"

    registry.register("flaky", flaky)
    registry.register_schedule_retry("flaky", lambda job: datetime.now(UTC) + timedelta(milliseconds=50))
    pool.start_threads(1)
    job = add(db, "flaky", max_retry_count=2)
    db.wait_stopped(job.id)  # no notification for the retry: the pool knows when it is due
    stored = db.job(job.id)
    assert stored.result == "ok"
    assert stored.attempt == 2
    assert [e.message for e in stored.errors] == ["first try fails"]
    assert [o.kind for o in db.all_outcomes()] == [OutcomeKind.RETRY, OutcomeKind.SUCCEEDED]


def test_default_retry_waits_about_a_second(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    registry.register("t", lambda job: 1 / 0)
    pool.start_threads(1)
    job = add(db, "t", max_retry_count=1)
    db.wait_for(lambda: len(db.all_outcomes()) == 1)
    (outcome,) = db.all_outcomes()
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_delay is not None
    assert timedelta(seconds=0.75) <= outcome.retry_delay <= timedelta(seconds=1.25)
    assert not db.job(job.id).stopped


def test_failing_retry_scheduler_fails_the_job(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: 1 / 0)
    registry.register_schedule_retry("t", lambda job: "tomorrow")  # type: ignore[arg-type,return-value]
    pool.start_threads(1)
    job = add(db, "t", max_retry_count=5)
    db.wait_stopped(job.id)
    error_msg = db.job(job.id).error_msg
    assert error_msg is not None
    assert "not a timezone-aware datetime" in error_msg


class Invoice(pydantic.BaseModel):
    amount: int


def test_invalid_typed_payload_fails_for_good(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    def handle(invoice: Invoice) -> int:
        return invoice.amount

    job_type = registry.register_func(handle)
    pool.start_threads(1)
    job = add(db, job_type, {"amount": "lots"}, max_retry_count=3)
    db.wait_stopped(job.id)
    stored = db.job(job.id)
    assert stored.attempt == 1
    assert stored.error_msg is not None
    assert job_type in stored.error_msg
    assert "amount" in stored.error_msg


def test_base_exception_is_recorded_and_the_thread_lives_on(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    threads: list[str] = []

    def handler(job: Job) -> str:
        threads.append(threading.current_thread().name)
        if job.payload == "interrupt":
            raise KeyboardInterrupt
        if job.payload == "exit":
            raise SystemExit(3)
        return "fine"

    registry.register("t", handler)
    pool.start_threads(1)
    first, second, third = add(db, "t", "interrupt"), add(db, "t", "exit"), add(db, "t", "ok")
    db.wait_stopped(first.id, second.id, third.id)
    assert db.job(first.id).error_msg == "KeyboardInterrupt"
    assert db.job(second.id).error_data["type"] == "SystemExit"
    assert db.job(third.id).result == "fine"
    assert threads == ["jobworker-test-worker-1"] * 3


def test_timed_out_job_frees_its_slot_and_its_late_result_is_discarded(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    contexts: list[JobContext] = []
    stray_done = threading.Event()

    def slow(job: Job) -> str:
        context = jobworker.current_job_context()
        contexts.append(context)
        assert context.wait_cancelled(10)
        return "late"

    registry.register("slow", slow, timeout=0.2)
    registry.register("fast", lambda job: threading.current_thread().name)
    registry.add_after_job_hook(lambda job, error: stray_done.set(), job_type="slow")
    pool.start_threads(1)
    slow_job = add(db, "slow")
    db.wait_stopped(slow_job.id)
    fast_job = add(db, "fast")
    db.wait_stopped(fast_job.id)
    assert stray_done.wait(10)
    assert pool.finish_threads(5)

    stored = db.job(slow_job.id)
    assert stored.error_msg is not None
    assert "ran longer than its timeout" in stored.error_msg
    assert stored.error_data["type"] == "jobworker.JobTimeoutError"
    assert db.job(fast_job.id).result == "jobworker-test-worker-2"  # the replacement thread
    assert contexts[0].cancelled
    kinds = [(o.job_id, o.kind) for o in db.all_outcomes()]
    assert kinds == [(slow_job.id, OutcomeKind.FAILED), (fast_job.id, OutcomeKind.SUCCEEDED)]


def test_timed_out_job_is_retried_by_the_retry_rules(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    def slow_once(job: Job) -> str:
        if job.attempt == 1:
            jobworker.current_job_context().wait_cancelled(10)
        return "second time lucky"

    registry.register("slow", slow_once, timeout=0.2)
    registry.register_schedule_retry("slow", lambda job: datetime.now(UTC))
    pool.start_threads(1)
    job = add(db, "slow", max_retry_count=1)
    db.wait_stopped(job.id)
    assert db.job(job.id).result == "second time lucky"
    assert db.job(job.id).attempt == 2


def test_one_claim_call_serves_many_idle_threads(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    jobs = [add(db, "t", i) for i in range(5)]
    pool.start_threads(5)
    counter.wait_started(5)
    assert db.claim_calls[0] == (["t"], 5, 5)
    gate.set()
    db.wait_stopped(*(j.id for j in jobs))


def test_claims_again_as_soon_as_a_slot_frees_after_a_full_batch(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: job.payload)
    jobs = [add(db, "t", i) for i in range(4)]  # added before start: no notification reaches the pool
    pool.start_threads(1)
    db.wait_stopped(*(j.id for j in jobs))
    assert [call[1:] for call in db.claim_calls[:4]] == [(1, 1)] * 4


def test_higher_priority_runs_first(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    order: list[str] = []
    registry.register("t", lambda job: order.append(job.payload))
    jobs = [add(db, "t", "low"), add(db, "t", "high", priority=5), add(db, "t", "mid", priority=1)]
    pool.start_threads(1)
    db.wait_stopped(*(j.id for j in jobs))
    assert order == ["high", "mid", "low"]


def test_max_concurrency_caps_a_type_while_others_flow(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("limited", blocking(counter, gate), max_concurrency=2)
    registry.register("free", lambda job: "done")
    limited = [add(db, "limited", i) for i in range(5)]
    pool.start_threads(4)
    counter.wait_started(2)
    free = [add(db, "free", i) for i in range(3)]
    db.wait_stopped(*(j.id for j in free))
    assert sum(db.job(j.id).started for j in limited) == 2
    for limit in (call[1] for call in db.claim_calls if call[0] == ["limited"]):
        assert limit <= 2
    gate.set()
    db.wait_stopped(*(j.id for j in limited))
    assert counter.peak == 2


def test_one_heartbeat_covers_every_job_in_flight(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    jobs = [add(db, "t", i) for i in range(3)]
    pool.start_threads(3)
    counter.wait_started(3)
    db.wait_for(lambda: any(len(call) == 3 for call in db.heartbeat_calls))
    call = next(call for call in db.heartbeat_calls if len(call) == 3)
    assert {job_id for job_id, _ in call} == {j.id for j in jobs}
    gate.set()


def test_reaper_runs_periodically_once_the_database_answered_for_dead_for(
    db: FakeDatabase, registry: Registry
) -> None:
    settings = FAST.replace(heartbeat_interval=0.05, dead_for=0.3, reaper_interval=0.05)
    pool = WorkerPool(db, registry, settings, name="jobworker-reaper-test")
    registry.register("t", lambda job: None)
    started = time.monotonic()
    pool.start_threads(1)
    try:
        db.wait_for(lambda: len(db.reap_calls) >= 3)
        # Start-up counts as a failure: no reaping before dead_for has passed.
        assert time.monotonic() - started >= 0.3
        assert set(db.reap_calls) == {settings.dead_for}
    finally:
        pool.stop_threads()


def test_a_database_failure_holds_the_reaper_back_for_dead_for(db: FakeDatabase, registry: Registry) -> None:
    settings = FAST.replace(heartbeat_interval=0.05, dead_for=0.3, reaper_interval=0.05)
    pool = WorkerPool(db, registry, settings, name="jobworker-reaper-test")
    pool.on_error(lambda exc: None)
    registry.register("t", lambda job: None)
    pool.start_threads(1)
    try:
        db.wait_for(lambda: len(db.reap_calls) >= 1)
        db.fail("heartbeat", 1)
        db.wait_for(lambda: db.failures_left("heartbeat") == 0)
        failed_at = time.monotonic()
        reaps_before = len(db.reap_calls)
        db.wait_for(lambda: len(db.reap_calls) > reaps_before)
        assert time.monotonic() - failed_at >= 0.3 - 0.06  # one heartbeat period of slack
    finally:
        pool.stop_threads()


def test_finish_threads_waits_for_in_flight_jobs_and_saves_their_outcomes(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    job = add(db, "t", "payload")
    pool.start_threads(2)
    counter.wait_started(1)
    results: list[bool] = []
    finisher = threading.Thread(target=lambda: results.append(pool.finish_threads(10)), name="test-finisher")
    finisher.start()
    db.wait_for(lambda: db.wakeup is None)  # claiming stopped at once
    late = add(db, "t", "too late")
    assert finisher.is_alive()
    gate.set()
    finisher.join(10)
    assert results == [True]
    assert db.job(job.id).result == "payload"  # saved before finish_threads returned
    assert not db.job(late.id).started


def test_finish_threads_times_out_when_a_job_does_not_end(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    job = add(db, "t")
    pool.start_threads(1)
    counter.wait_started(1)
    assert pool.finish_threads(0.1) is False
    assert db.job(job.id).started and not db.job(job.id).stopped
    gate.set()


def test_start_finish_and_start_again(db: FakeDatabase, registry: Registry, pool: WorkerPool) -> None:
    registry.register("t", lambda job: job.payload)
    pool.start_threads(2)
    first = add(db, "t", 1)
    db.wait_stopped(first.id)
    assert pool.finish_threads(5)
    assert not pool.running
    registry.register("u", lambda job: "new type")  # registry is unfrozen between runs
    pool.start_threads(1)
    second, third = add(db, "t", 2), add(db, "u")
    db.wait_stopped(second.id, third.id)
    assert db.job(third.id).result == "new type"
    assert pool.finish_threads(5)


def test_stopping_twice_or_without_starting_is_harmless(registry: Registry, pool: WorkerPool) -> None:
    pool.stop_threads()
    assert pool.finish_threads()
    registry.register("t", lambda job: None)
    pool.start_threads(1)
    pool.stop_threads()
    pool.stop_threads()
    assert pool.finish_threads()


def test_starting_twice_raises(registry: Registry, pool: WorkerPool) -> None:
    pool.start_threads(1)
    with pytest.raises(JobQueueError, match="already running"):
        pool.start_threads(1)


def test_starting_without_a_database_raises(registry: Registry) -> None:
    with pytest.raises(JobQueueError, match="set_database"):
        WorkerPool(None, registry).start_threads(1)


def test_registering_while_threads_run_raises(registry: Registry, pool: WorkerPool) -> None:
    registry.register("t", lambda job: None)
    pool.start_threads(1)
    with pytest.raises(RegistrationError, match="while worker threads run"):
        registry.register("u", lambda job: None)
    with pytest.raises(RegistrationError, match="while worker threads run"):
        registry.unregister("t")
    pool.finish_threads(5)
    registry.unregister("t")


def test_stop_threads_returns_without_waiting_and_cancels_running_handlers(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    started, finished = threading.Event(), threading.Event()
    cancelled: list[bool] = []

    def handler(job: Job) -> str:
        started.set()
        cancelled.append(jobworker.current_job_context().wait_cancelled(10))
        finished.set()
        return "too late"

    registry.register("t", handler)
    job = add(db, "t")
    pool.start_threads(1)
    assert started.wait(10)
    pool.stop_threads()
    assert finished.wait(10)
    assert cancelled == [True]
    stored = db.job(job.id)
    assert stored.started and not stored.stopped  # the reaper will requeue it
    assert db.all_outcomes() == []


def test_outcome_write_is_retried_after_database_errors(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    reported: list[BaseException] = []
    pool.on_error(reported.append)
    db.fail("save_outcomes", 3)
    registry.register("t", lambda job: "saved at last")
    pool.start_threads(1)
    job = add(db, "t")
    db.wait_stopped(job.id)
    assert db.job(job.id).result == "saved at last"
    assert db.failed_save_calls == 3
    assert [type(e) for e in reported] == [ConnectionError] * 3


def test_finish_threads_flushes_through_database_errors(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: "kept")
    pool.start_threads(1)
    db.fail("save_outcomes", 2)
    job = add(db, "t")
    db.wait_for(lambda: db.failed_save_calls >= 1)
    assert pool.finish_threads(10)
    assert db.job(job.id).result == "kept"


def test_claim_errors_are_reported_and_claiming_resumes(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    reported: list[BaseException] = []
    pool.on_error(reported.append)
    registry.register("t", lambda job: "ok")
    db.fail("claim_jobs", 2)
    job = add(db, "t")
    pool.start_threads(1)
    db.wait_stopped(job.id)
    assert len(reported) == 2


def test_polling_finds_jobs_without_notifications(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: "polled")
    pool.start_threads(1)
    db.wait_for(lambda: len(db.claim_calls) >= 1)
    job = db.add(new_job("t", "test", None), notify=False)
    pool.start_polling_available_jobs(0.05)
    db.wait_stopped(job.id)
    pool.stop_polling_available_jobs()


def test_scheduled_job_runs_when_due_without_notification(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: datetime.now(UTC).isoformat())
    start_at = datetime.now(UTC) + timedelta(milliseconds=300)
    job = add(db, "t", start_at=start_at)
    pool.start_threads(1)
    db.wait_stopped(job.id)
    assert datetime.fromisoformat(db.job(job.id).result) >= start_at


def test_wakeup_for_unregistered_type_is_ignored(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    registry.register("t", lambda job: None)
    pool.start_threads(2)  # a claim of 1 job is not a full batch: no extra claim follows
    db.wait_for(lambda: len(db.claim_calls) >= 1)
    calls = len(db.claim_calls)
    db.notify("someone-elses-type")
    job = add(db, "t")  # the next claim is for this one
    db.wait_stopped(job.id)
    assert all(types == ["t"] for types, _, _ in db.claim_calls)
    assert len(db.claim_calls) == calls + 1


def test_lost_claim_cancels_the_handler_and_its_outcome_is_ignored(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    started = threading.Event()

    def handler(job: Job) -> str:
        started.set()
        assert jobworker.current_job_context().wait_cancelled(10)
        return "stale"

    registry.register("t", handler)
    job = add(db, "t")
    pool.start_threads(1)
    assert started.wait(10)
    with db._lock:  # another worker reclaimed the job
        db.jobs[job.id].claim_token = None
    db.wait_for(lambda: len(db.save_calls) == 1)
    assert not db.job(job.id).stopped


def test_bundle_handler_runs_once_with_the_completed_bundle(
    db: FakeDatabase, registry: Registry, pool: WorkerPool
) -> None:
    seen: list[JobBundle] = []
    done = threading.Event()

    @registry.bundle_handler("import")
    def imported(bundle: JobBundle) -> dict[str, int]:
        seen.append(bundle)
        done.set()
        return {"jobs": len(bundle.jobs)}

    registry.register("part", lambda job: job.payload)
    pool.start_threads(2)
    assert db.declared_bundle_types == {"import"}
    bundle = db.add_bundle(
        new_job_bundle("import", "test", [JobDesc(type="part", payload=i) for i in range(3)])
    )
    assert done.wait(10)
    assert pool.finish_threads(5)
    (got,) = seen
    assert got.id == bundle.id
    assert len(got.jobs) == 3 and all(j.stopped for j in got.jobs)
    (completion,) = [j for j in db.jobs.values() if j.type == jobworker.BUNDLE_JOB_PREFIX + "import"]
    assert completion.result == {"jobs": 3}


def test_job_log_records_carry_job_id_type_and_action(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="jobworker")
    registry.register("t", lambda job: None)
    pool.start_threads(1)
    job = add(db, "t")
    db.wait_stopped(job.id)
    assert pool.finish_threads(5)
    actions = [r.action for r in caplog.records if getattr(r, "job_id", None) == str(job.id)]  # type: ignore[attr-defined]
    assert actions[:3] == ["claim", "start", "succeeded"]
    assert all(r.job_type == "t" for r in caplog.records if hasattr(r, "job_id"))  # type: ignore[attr-defined]


def test_module_functions_drive_the_default_pool(db: FakeDatabase) -> None:
    jobworker.register("unit.default-pool", lambda job: "via module")
    jobworker.set_database(db)
    try:
        jobworker.start_threads(1)
        job = add(db, "unit.default-pool")
        db.wait_stopped(job.id)
        assert jobworker.finish_threads(5)
        assert db.job(job.id).result == "via module"
    finally:
        jobworker.stop_threads()
        jobworker.set_database(None)
        jobworker.unregister("unit.default-pool")


def test_a_lost_claim_leaves_the_heartbeat_and_is_reported_once(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, gates: Gates, caplog: pytest.LogCaptureFixture
) -> None:
    gate, started = gates.new(), threading.Event()

    def handler(job: Job) -> None:
        started.set()
        gate.wait(10)  # ignores the cancellation, as a handler may

    registry.register("t", handler)
    job = add(db, "t")
    pool.start_threads(1)
    assert started.wait(10)
    caplog.set_level(logging.WARNING, logger="jobworker._maintenance")
    with db._lock:  # another worker reclaimed the job
        db.jobs[job.id].claim_token = None
    lost_at = len(db.heartbeat_calls)
    db.wait_for(lambda: len(db.heartbeat_calls) >= lost_at + 4)
    with db._lock:
        later = db.heartbeat_calls[lost_at + 1 :]
    assert all(job.id not in {job_id for job_id, _ in call} for call in later)
    assert len([r for r in caplog.records if "reclaimed or reset elsewhere" in r.getMessage()]) == 1
    gate.set()


# -- prefetch ---------------------------------------------------------------------------------


def test_prefetch_claims_ahead_of_the_threads_in_batches(db: FakeDatabase, registry: Registry) -> None:
    order: list[int] = []
    registry.register("t", lambda job: order.append(job.payload))
    jobs = [add(db, "t", i) for i in range(40)]
    pool = WorkerPool(db, registry, FAST.replace(prefetch=8), name="jobworker-prefetch")
    try:
        pool.start_threads(1)
        db.wait_stopped(*(j.id for j in jobs))
    finally:
        pool.stop_threads()
    assert order == list(range(40))  # one thread, claim order kept through the buffer
    limits = [limit for _, limit, claimed in db.claim_calls if claimed]
    assert limits[0] == 9  # one thread + 8 ahead
    # Later claims wait until the buffer is at most half full: batches, not one claim per job.
    assert all(limit >= 4 for limit in limits), limits
    assert len(limits) <= 40 // 4 + 1


def test_prefetched_jobs_are_covered_by_the_heartbeat(
    db: FakeDatabase, registry: Registry, gates: Gates
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    jobs = [add(db, "t", i) for i in range(5)]
    pool = WorkerPool(db, registry, FAST.replace(prefetch=4), name="jobworker-prefetch")
    try:
        pool.start_threads(1)
        counter.wait_started(1)
        db.wait_for(lambda: any(len(call) == 5 for call in db.heartbeat_calls))
        call = next(call for call in db.heartbeat_calls if len(call) == 5)
        assert {job_id for job_id, _ in call} == {j.id for j in jobs}
        gate.set()
        db.wait_stopped(*(j.id for j in jobs))
    finally:
        pool.stop_threads()


@pytest.mark.parametrize("how", ["finish", "stop"])
def test_stopping_gives_back_prefetched_jobs_that_never_started(
    db: FakeDatabase, registry: Registry, gates: Gates, how: str
) -> None:
    counter, gate = Counter(), gates.new()
    registry.register("t", blocking(counter, gate))
    jobs = [add(db, "t", i) for i in range(6)]
    pool = WorkerPool(db, registry, FAST.replace(prefetch=4), name="jobworker-prefetch")
    pool.start_threads(1)
    counter.wait_started(1)
    db.wait_for(lambda: sum(db.jobs[j.id].started for j in jobs) == 5)  # 1 running + 4 ahead
    running = jobs[0]  # one thread, claim order
    if how == "finish":
        finisher = threading.Thread(target=pool.finish_threads, args=(10,), name="test-finisher")
        finisher.start()
        db.wait_for(lambda: len(db.release_calls) == 1)
        gate.set()
        finisher.join(10)
        assert not finisher.is_alive()
    else:
        pool.stop_threads()
        gate.set()
    (released,) = db.release_calls
    assert len(released) == 4
    given_back = {job_id for job_id, _ in released}
    assert running.id not in given_back  # it started: finished (finish) or left to the reaper (stop)
    assert db.job(running.id).attempt == 1
    if how == "finish":
        assert db.job(running.id).result == 0
    for job_id in given_back:
        job = db.job(job_id)
        # Available again, the attempt not counted, no error: as if never claimed.
        assert not job.started and job.attempt == 0 and job.claim_token is None and not job.errors
    assert sum(db.job(j.id).attempt for j in jobs) == 1  # only the job that ran counted an attempt


def test_prefetch_is_validated() -> None:
    with pytest.raises(ValueError, match="prefetch must be between 0 and"):
        jobworker.WorkerSettings(prefetch=-1)
    with pytest.raises(ValueError, match="prefetch must be an int"):
        jobworker.WorkerSettings().replace(prefetch=2.5)  # type: ignore[arg-type]
    assert jobworker.WorkerSettings().replace(prefetch=16).prefetch == 16


def test_transient_claim_and_save_failures_that_recover_log_no_error(
    db: FakeDatabase, registry: Registry, pool: WorkerPool, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register("t", lambda job: "ok")
    caplog.set_level(logging.WARNING)
    db.fail("claim_jobs", 2)
    db.fail("save_outcomes", 2)
    pool.start_threads(1)
    job = add(db, "t")
    db.wait_stopped(job.id)
    assert pool.finish_threads(10)
    retried = [r for r in caplog.records if "db down" in r.getMessage()]
    assert {r.getMessage().split(" (")[0] for r in retried} >= {"claiming jobs", "saving 1 job outcomes"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_claiming_pauses_while_outcomes_cannot_be_saved(
    db: FakeDatabase, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobworker import _session

    monkeypatch.setattr(_session, "MIN_UNSAVED_BOUND", 20, raising=False)
    registry.register("t", lambda job: None)
    pool = WorkerPool(db, registry, FAST, name="jobworker-backpressure")
    jobs = [add(db, "t", i) for i in range(200)]
    db.fail("save_outcomes", 10_000)  # the database refuses writes from now on
    pool.start_threads(2)
    try:

        def claimed() -> int:
            return sum(n for _, _, n in db.claim_calls)

        db.wait_for(lambda: claimed() >= 20)
        failed = db.failed_save_calls
        db.wait_for(lambda: db.failed_save_calls >= failed + 3)  # several retries later
        assert claimed() <= 20 + 2  # the bound, plus the jobs of the threads' last claim
        db.fail("save_outcomes", 0)  # writable again: everything ends
        db.wait_stopped(*(j.id for j in jobs), timeout=30)
    finally:
        pool.stop_threads()
