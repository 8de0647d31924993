"""What a running handler can learn about its job: :func:`current_job_context`."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

from jobqueue import Job
from jobworker._database import WorkerDatabase
from jobworker._settings import Duration, to_timedelta


class JobContext:
    """The job a handler runs, its deadline and whether it should give up.

    ``cancelled`` turns True once the attempt timed out, the pool is stopping
    hard, or the job's claim was lost (reclaimed or reset elsewhere); a long
    handler should check it (or wait on :meth:`wait_cancelled`) and return.
    Thread-safe.
    """

    __slots__ = ("_cancelled", "_database", "_event", "deadline", "job")

    # Guards the lazy creation of the events: one per process, as waiting is rare and an
    # Event per job (a Condition and a lock) is a cost on the hot path.
    _event_lock = threading.Lock()

    def __init__(self, job: Job, deadline: datetime, database: WorkerDatabase | None) -> None:
        self.job = job
        self.deadline = deadline
        self._database = database
        self._cancelled = False
        self._event: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        """True once the attempt's result will no longer be used."""
        return self._cancelled

    def wait_cancelled(self, timeout: Duration) -> bool:
        """Wait up to ``timeout`` for cancellation; True if cancelled (a cancellable sleep)."""
        seconds = to_timedelta(timeout, "timeout", allow_zero=True).total_seconds()
        with self._event_lock:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            event = self._event
        return event.wait(seconds)

    def seconds_left(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return (self.deadline - datetime.now(UTC)).total_seconds()

    def cancel(self) -> None:
        """Mark the attempt cancelled (called by the pool)."""
        with self._event_lock:
            self._cancelled = True
            if self._event is not None:
                self._event.set()


_current: ContextVar[JobContext | None] = ContextVar("jobworker_job_context", default=None)


def current_job_context() -> JobContext:
    """The :class:`JobContext` of the job the calling handler runs.

    Raises RuntimeError outside a handler (and outside do_job).
    """
    context = _current.get()
    if context is None:
        raise RuntimeError("current_job_context() called outside a job handler")
    return context


@contextlib.contextmanager
def use_context(context: JobContext) -> Iterator[JobContext]:
    """Make ``context`` current for the handler call inside the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
