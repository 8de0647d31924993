"""The observer seam: what a worker pool tells metrics, tracing and process registries.

jobworker itself imports no metrics or tracing library; jobworker_pg.metrics,
jobworker_pg.tracing and jobworker_pg.ProcessRegistry are observers. Every
method is a no-op here: subclass and override what you need.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jobqueue import Job
from jobworker._database import OutcomeKind
from jobworker._errors import ErrorReporter

logger = logging.getLogger(__name__)


class WorkerObserver:
    """Hears what a pool does. Methods run on the pool's threads: they must be quick and
    thread-safe; an exception is reported through ``on_error`` and never stops the pool."""

    def pool_started(self, pool: str, threads: int, job_types: Sequence[str]) -> None:
        """The pool ``pool`` started ``threads`` worker threads for ``job_types``."""

    def pool_stopped(self, pool: str) -> None:
        """The pool finished or was stopped."""

    def jobs_claimed(self, jobs: Sequence[Job], seconds: float) -> None:
        """One claim statement took ``jobs`` in ``seconds`` (called for empty claims too)."""

    def attempt_started(self, job: Job) -> object:
        """The handler of ``job`` is about to run, on this (the worker) thread. What it returns
        is handed to :meth:`attempt_ended`, which runs on the same thread."""
        return None

    def attempt_ended(self, job: Job, state: object, error: BaseException | None, seconds: float) -> None:
        """The handler returned (``error`` None) or raised after ``seconds``."""

    def attempt_settled(self, job: Job, kind: OutcomeKind) -> None:
        """The attempt's outcome is decided (also for a handler that timed out)."""

    def outcomes_saved(self, count: int, seconds: float) -> None:
        """One write saved ``count`` outcomes in ``seconds``."""

    def jobs_reaped(self, count: int) -> None:
        """The reaper requeued or failed ``count`` jobs whose worker died."""


class Observers:
    """The observers of one pool run, called in order; failures go to the error reporter."""

    def __init__(self, observers: Sequence[WorkerObserver], report: ErrorReporter) -> None:
        self.observers = tuple(observers)
        self._report = report

    def __bool__(self) -> bool:
        return bool(self.observers)

    def pool_started(self, pool: str, threads: int, job_types: Sequence[str]) -> None:
        for observer in self.observers:
            try:
                observer.pool_started(pool, threads, job_types)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} pool_started")

    def pool_stopped(self, pool: str) -> None:
        for observer in self.observers:
            try:
                observer.pool_stopped(pool)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} pool_stopped")

    def jobs_claimed(self, jobs: Sequence[Job], seconds: float) -> None:
        for observer in self.observers:
            try:
                observer.jobs_claimed(jobs, seconds)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} jobs_claimed")

    def attempt_started(self, job: Job) -> list[object]:
        states: list[object] = []
        for observer in self.observers:
            try:
                states.append(observer.attempt_started(job))
            except Exception as exc:
                states.append(None)
                self._report(exc, f"observer {observer!r} attempt_started for job {job.id}")
        return states

    def attempt_ended(
        self, job: Job, states: list[object], error: BaseException | None, seconds: float
    ) -> None:
        # Reverse order: observers that set a context (a span) unwind it last in, first out.
        for observer, state in reversed(list(zip(self.observers, states, strict=True))):
            try:
                observer.attempt_ended(job, state, error, seconds)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} attempt_ended for job {job.id}")

    def attempt_settled(self, job: Job, kind: OutcomeKind) -> None:
        for observer in self.observers:
            try:
                observer.attempt_settled(job, kind)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} attempt_settled for job {job.id}")

    def outcomes_saved(self, count: int, seconds: float) -> None:
        for observer in self.observers:
            try:
                observer.outcomes_saved(count, seconds)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} outcomes_saved")

    def jobs_reaped(self, count: int) -> None:
        for observer in self.observers:
            try:
                observer.jobs_reaped(count)
            except Exception as exc:
                self._report(exc, f"observer {observer!r} jobs_reaped")
