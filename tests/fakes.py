"""An in-memory :class:`jobworker.WorkerDatabase` for unit tests of the worker runtime.

It honours claim tokens, attempts, ``start_at``, priorities (then insertion
order), retries, the reaper and bundle completion jobs. Every state change
notifies a condition, so tests wait with :meth:`FakeDatabase.wait_for` instead
of sleeping. Failures can be injected per method.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from jobqueue import AttemptError, Job, JobBundle, JobNotFoundError, new_job
from jobworker import (
    BUNDLE_JOB_PREFIX,
    PERIODIC_ORIGIN,
    Outcome,
    OutcomeKind,
    PeriodicSpec,
    Retention,
    ScheduleState,
    WakeupCallback,
    WorkerSettings,
)

WAIT_TIMEOUT = 10.0

#: Settings for pools under test: quick heartbeats, a generous dead_for.
# prefetch 0: these tests count claims; the adaptive default has tests of its own.
FAST = WorkerSettings().replace(job_timeout=5, heartbeat_interval=0.05, dead_for=30, prefetch=0)


def _now() -> datetime:
    return datetime.now(UTC)


class FakeDatabase:
    """Thread-safe in-memory worker database with call records and failure injection."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._order: dict[UUID, int] = {}
        self.jobs: dict[UUID, Job] = {}
        self.bundles: dict[UUID, JobBundle] = {}
        self.declared_bundle_types: set[str] = set()
        self.bundle_handler_retries: dict[str, int] = {}  # bundle type -> completion job retries
        self.schedules: dict[str, tuple[PeriodicSpec, ScheduleState]] = {}
        self.wakeup: WakeupCallback | None = None
        # call records
        self.claim_calls: list[tuple[list[str], int, int]] = []  # (types, limit, claimed)
        self.save_calls: list[list[Outcome]] = []  # successful writes only
        self.heartbeat_calls: list[list[tuple[UUID, UUID]]] = []
        self.reap_calls: list[timedelta] = []
        self.release_calls: list[list[tuple[UUID, UUID]]] = []
        self.prune_calls: list[Retention] = []
        self.next_job_calls = 0
        self.failed_save_calls = 0
        self._inserted: list[str] = []  # job types inserted by the current save_outcomes
        # failure injection: method name -> [remaining count, exception factory]
        self._failures: dict[str, list[Any]] = {}

    # -- test helpers -----------------------------------------------------------------------

    def fail(
        self, method: str, times: int, exc: Callable[[], Exception] = lambda: ConnectionError("db down")
    ) -> None:
        """Make the next ``times`` calls of ``method`` raise ``exc()``."""
        with self._lock:
            self._failures[method] = [times, exc]

    def failures_left(self, method: str) -> int:
        """How many injected failures of ``method`` are still to come (call under wait_for)."""
        entry = self._failures.get(method)
        return int(entry[0]) if entry else 0

    def _maybe_fail(self, method: str) -> None:
        entry = self._failures.get(method)
        if entry and entry[0] > 0:
            entry[0] -= 1
            if method == "save_outcomes":
                self.failed_save_calls += 1
            self._changed.notify_all()
            raise entry[1]()

    def add(self, job: Job, *, notify: bool = True) -> Job:
        """Store a copy of ``job`` (from new_job) and wake the worker, as the insert trigger does."""
        stored = job.model_copy(deep=True)
        stored.created_at = _now()
        with self._lock:
            self.jobs[stored.id] = stored
            self._order[stored.id] = next(self._seq)
            self._changed.notify_all()
            callback = self.wakeup
        if notify and callback is not None:
            callback(stored.type)
        return stored

    def add_bundle(self, bundle: JobBundle) -> JobBundle:
        """Store a bundle and its jobs."""
        with self._lock:
            self.bundles[bundle.id] = bundle.model_copy(update={"jobs": []})
        for job in bundle.jobs:
            self.add(job)
        return bundle

    def job(self, job_id: UUID) -> Job:
        """A copy of the stored job."""
        with self._lock:
            return self.jobs[job_id].model_copy(deep=True)

    def notify(self, job_type: str | None) -> None:
        """Fire the wake-up callback, as a job_available notification would."""
        callback = self.wakeup
        if callback is not None:
            callback(job_type)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until ``predicate()`` (checked under the lock at every change) holds."""
        with self._lock:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"condition not met within {timeout}s")

    def wait_stopped(self, *job_ids: UUID, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until these jobs have stopped for good."""
        self.wait_for(lambda: all(self.jobs[i].stopped_at is not None for i in job_ids), timeout)

    def all_outcomes(self) -> list[Outcome]:
        """Every outcome written, in order."""
        with self._lock:
            return [o for call in self.save_calls for o in call]

    # -- WorkerDatabase ---------------------------------------------------------------------

    def claim_jobs(self, job_types: Sequence[str], limit: int, *, queue: str = "default") -> list[Job]:
        with self._lock:
            self._maybe_fail("claim_jobs")
            now = _now()
            due = [
                j
                for j in self.jobs.values()
                if j.type in job_types
                and j.queue == queue
                and j.started_at is None
                and j.stopped_at is None
                and (j.start_at is None or j.start_at <= now)
            ]
            due.sort(key=lambda j: (-j.priority, self._order[j.id]))
            claimed = []
            for job in due[:limit]:
                job.started_at = job.worker_alive_at = now
                job.claim_token = uuid.uuid4()
                job.attempt += 1
                claimed.append(job.model_copy(deep=True))
            self.claim_calls.append((list(job_types), limit, len(claimed)))
            self._changed.notify_all()
            return claimed

    def _current(self, job_id: UUID, token: UUID) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.claim_token != token or job.stopped_at is not None or job.started_at is None:
            return None
        return job

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> set[UUID]:
        with self._lock:
            self._maybe_fail("save_outcomes")
            applied = set()
            for outcome in outcomes:
                job = self._current(outcome.job_id, outcome.claim_token)
                if job is None:
                    continue
                self._apply(job, outcome)
                applied.add(job.id)
            self.save_calls.append(list(outcomes))
            self._changed.notify_all()
            inserted, self._inserted = self._inserted, []
            callback = self.wakeup
        for job_type in inserted:  # the insert trigger notifies job_available on commit
            if callback is not None:
                callback(job_type)
        return applied

    def _apply(self, job: Job, outcome: Outcome) -> None:
        now = _now()
        job.claim_token = None
        if outcome.kind is OutcomeKind.SUCCEEDED:
            job.stopped_at = now
            job.error_msg = job.error_data = None
            job.result = None if outcome.result_json is None else json.loads(outcome.result_json)
            self._job_stopped(job)
            return
        if outcome.kind is OutcomeKind.SNOOZE:
            assert outcome.retry_delay is not None and outcome.error_msg is not None
            job.started_at = None
            job.attempt -= 1
            job.start_at = now + outcome.retry_delay
            job.errors = [
                *job.errors,
                AttemptError(
                    attempt=outcome.attempt, at=now, message=outcome.error_msg, type=outcome.error_type
                ),
            ]
            return
        assert outcome.error_msg is not None
        job.error_msg = outcome.error_msg
        job.error_data = None if outcome.error_data_json is None else json.loads(outcome.error_data_json)
        job.errors = [
            *job.errors,
            AttemptError(attempt=outcome.attempt, at=now, message=outcome.error_msg, type=outcome.error_type),
        ]
        if outcome.kind is OutcomeKind.FAILED:
            job.stopped_at = now
            self._job_stopped(job)
        else:
            assert outcome.retry_delay is not None
            job.started_at = None
            job.current_retry_count += 1
            job.start_at = now + outcome.retry_delay

    def _job_stopped(self, job: Job) -> None:
        if job.bundle_id is None or job.bundle_id not in self.bundles:
            return
        bundle = self.bundles[job.bundle_id]
        bundle.num_jobs_stopped += 1
        if bundle.num_jobs_stopped == bundle.num_jobs and bundle.type in self.declared_bundle_types:
            # As the database does: the bundle as it stopped travels with the completion job.
            snapshot = bundle.model_copy(
                update={"jobs": [j for j in self.jobs.values() if j.bundle_id == bundle.id]}
            ).model_dump(mode="json")
            completion = new_job(
                BUNDLE_JOB_PREFIX + bundle.type,
                bundle.origin,
                {"bundle_id": str(bundle.id), "bundle_type": bundle.type, "bundle": snapshot},
                max_retry_count=self.bundle_handler_retries[bundle.type],
            )
            stored = completion.model_copy(deep=True)
            stored.created_at = _now()
            self.jobs[stored.id] = stored
            self._order[stored.id] = next(self._seq)
            self._inserted.append(stored.type)

    def heartbeat(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        with self._lock:
            self._maybe_fail("heartbeat")
            self.heartbeat_calls.append(list(claims))
            alive = set()
            for job_id, token in claims:
                job = self._current(job_id, token)
                if job is not None:
                    job.worker_alive_at = _now()
                    alive.add(job_id)
            self._changed.notify_all()
            return alive

    def release_claims(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        with self._lock:
            self._maybe_fail("release_claims")
            self.release_calls.append(list(claims))
            released = set()
            for job_id, token in claims:
                job = self._current(job_id, token)
                if job is not None:
                    job.started_at = job.worker_alive_at = job.claim_token = None
                    job.attempt -= 1
                    released.add(job_id)
            self._changed.notify_all()
        if released and self.wakeup is not None:
            self.wakeup(None)
        return released

    def reap_dead_jobs(self, dead_for: timedelta) -> int:
        with self._lock:
            self._maybe_fail("reap_dead_jobs")
            self.reap_calls.append(dead_for)
            now = _now()
            reaped = 0
            for job in self.jobs.values():
                if job.started_at is None or job.stopped_at is not None or job.worker_alive_at is None:
                    continue
                if now - job.worker_alive_at < dead_for:
                    continue
                reaped += 1
                job.claim_token = None
                # As reap_dead_jobs in queries.sql (the contract suite compares them).
                message = f"worker lost: no heartbeat for {dead_for.total_seconds()} s"
                job.error_msg = f"{message} during attempt {job.attempt}"
                job.error_data = {"type": "WorkerLost", "message": message.removeprefix("worker lost: ")}
                job.errors = [
                    *job.errors,
                    AttemptError(attempt=job.attempt, at=now, message=message, type="WorkerLost"),
                ]
                if job.attempt <= job.max_retry_count:
                    job.started_at = job.start_at = None
                    job.current_retry_count = min(job.attempt, job.max_retry_count)
                else:
                    job.stopped_at = now
            self._changed.notify_all()
            return reaped

    def seconds_until_next_job(self, job_types: Sequence[str]) -> float | None:
        with self._lock:
            self._maybe_fail("seconds_until_next_job")
            self.next_job_calls += 1
            now = _now()
            waits = [
                (j.start_at - now).total_seconds()
                for j in self.jobs.values()
                if j.type in job_types
                and j.started_at is None
                and j.stopped_at is None
                and j.start_at is not None
            ]
            return max(min(waits), 0.0) if waits else None

    def set_wakeup_callback(self, callback: WakeupCallback | None) -> None:
        with self._lock:
            self.wakeup = callback

    def declare_bundle_handlers(self, handlers: Mapping[str, int]) -> None:
        with self._lock:
            self._maybe_fail("declare_bundle_handlers")
            self.declared_bundle_types.update(handlers)
            self.bundle_handler_retries.update(handlers)

    def prune_finished(self, retention: Retention) -> int | None:
        """Jobs outside bundles only (the fake keeps bundles)."""
        with self._lock:
            self._maybe_fail("prune_finished")
            self.prune_calls.append(retention)
            now = _now()
            doomed = []
            for job in self.jobs.values():
                if job.stopped_at is None or job.bundle_id is not None:
                    continue
                age = (
                    retention.cancelled
                    if job.cancelled_at
                    else retention.failed
                    if job.error_msg
                    else retention.succeeded
                )
                if age is not None and now - job.stopped_at >= age:
                    doomed.append(job.id)
            for job_id in doomed:
                del self.jobs[job_id]
            return len(doomed)

    def get_job_bundle(self, bundle_id: UUID) -> JobBundle:
        with self._lock:
            self._maybe_fail("get_job_bundle")
            bundle = self.bundles.get(bundle_id)
            if bundle is None:
                raise JobNotFoundError("job bundle", bundle_id)
            jobs = [j.model_copy(deep=True) for j in self.jobs.values() if j.bundle_id == bundle_id]
            return bundle.model_copy(update={"jobs": jobs})

    def declare_schedules(self, specs: Sequence[PeriodicSpec], now: datetime) -> None:
        with self._lock:
            self._maybe_fail("declare_schedules")
            for spec in specs:
                _, state = self.schedules.get(spec.name, (spec, ScheduleState(spec.enabled, None, now)))
                self.schedules[spec.name] = (spec, state)

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        with self._lock:
            self._maybe_fail("schedule_states")
            return {n: self.schedules[n][1] for n in names if n in self.schedules}

    def enqueue_ticks(
        self,
        spec: PeriodicSpec,
        expected_last_tick: datetime | None,
        last_tick: datetime,
        ticks: Sequence[datetime],
    ) -> list[UUID] | None:
        with self._lock:
            self._maybe_fail("enqueue_ticks")
            stored, state = self.schedules[spec.name]
            if not state.enabled or state.last_tick != expected_last_tick:
                return None
            self.schedules[spec.name] = (stored, ScheduleState(True, last_tick, state.created_at))
            ids = []
            for tick in ticks:
                job = new_job(spec.job_type, PERIODIC_ORIGIN, spec.payload, unique_key=spec.unique_key(tick))
                job.scheduled_for = tick
                ids.append(self.add(job).id)
            return ids

    def set_schedule_enabled(self, name: str, enabled: bool) -> None:
        """As jobqueue.enable_periodic / disable_periodic do in the database."""
        with self._lock:
            spec, state = self.schedules[name]
            self.schedules[name] = (spec, ScheduleState(enabled, state.last_tick, state.created_at))
            self._changed.notify_all()


class Gates:
    """Events handlers block on; all opened at teardown so no thread outlives the test."""

    def __init__(self) -> None:
        self._events: list[threading.Event] = []

    def new(self) -> threading.Event:
        event = threading.Event()
        self._events.append(event)
        return event

    def open_all(self) -> None:
        for event in self._events:
            event.set()
