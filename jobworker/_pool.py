"""The worker pool: starts and stops the threads that run registered jobs."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Unpack

from jobqueue import Job, JobQueueError, NotInitializedError, RegistrationError
from jobworker._async_runner import DEFAULT_ASYNC_CONCURRENCY
from jobworker._database import WorkerDatabase
from jobworker._errors import ErrorCallback, ErrorReporter
from jobworker._inline import do_job_with, run_job_inline_with
from jobworker._observer import Observers, WorkerObserver
from jobworker._queue_plan import QueuePlan, QueueSpec
from jobworker._registry import Registry
from jobworker._session import Session
from jobworker._settings import Duration, SettingsChanges, WorkerSettings, to_timedelta

logger = logging.getLogger(__name__)

_pool_numbers = itertools.count(1)
_START_WAIT_SLICE = 1.0  # stopping re-checks a start in progress at least this often


class WorkerPool:
    """A pool of worker threads running the jobs of ``registry`` from ``database``.

    Thread-safe. ``start_threads`` / ``finish_threads`` / ``stop_threads`` can be
    repeated (start, finish, start again); stopping a pool that does not run is
    harmless. While the threads run, the registry is frozen.
    """

    def __init__(
        self,
        database: WorkerDatabase | None = None,
        registry: Registry | None = None,
        settings: WorkerSettings | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._database = database
        self._registry = registry if registry is not None else Registry()
        self._settings = settings if settings is not None else WorkerSettings()
        self._name = name or f"jobworker-{next(_pool_numbers)}"
        self._report = ErrorReporter()
        self._poll_interval: float | None = None
        self._session: Session | None = None
        self._starting = False
        self._start_ended = threading.Condition(self._lock)  # notified when a start ends
        self._start_cancelled = False  # a stop gave up waiting for the start: it stops itself
        self._observers: list[WorkerObserver] = []

    @property
    def registry(self) -> Registry:
        """The registry whose job types this pool runs."""
        return self._registry

    @property
    def settings(self) -> WorkerSettings:
        """The current settings (a running pool uses those it started with)."""
        with self._lock:
            return self._settings

    @property
    def database(self) -> WorkerDatabase | None:
        """The database the pool claims jobs from, if set."""
        with self._lock:
            return self._database

    @property
    def running(self) -> bool:
        """True between start_threads and finish_threads / stop_threads."""
        with self._lock:
            return self._session is not None

    def set_database(self, database: WorkerDatabase | None) -> None:
        """Use ``database`` from the next start on. RegistrationError while threads run."""
        with self._lock:
            if self._session is not None:
                raise RegistrationError("cannot change the database while worker threads run")
            self._database = database

    def configure(self, **changes: Unpack[SettingsChanges]) -> WorkerSettings:
        """Change settings (None keeps a value); they apply from the next start_threads().

        The keywords are those of :class:`SettingsChanges`: ``job_timeout``,
        ``heartbeat_interval``, ``dead_for``, ``reaper_interval`` (durations: timedeltas
        or seconds) and ``prefetch`` (jobs claimed ahead of free threads, see
        :class:`WorkerSettings`). Raises ValueError for a non-positive duration or a
        ``dead_for`` under 3 x ``heartbeat_interval``, TypeError for an unknown keyword.
        """
        with self._lock:
            self._settings = self._settings.replace(**changes)
            return self._settings

    def add_observer(self, observer: WorkerObserver) -> None:
        """Tell ``observer`` (a :class:`WorkerObserver`) what this pool does, from the next
        start_threads() on. Adding the same observer twice is a no-op."""
        if not isinstance(observer, WorkerObserver):
            raise TypeError(f"add_observer needs a jobworker.WorkerObserver, got {type(observer).__name__}")
        with self._lock:
            if observer not in self._observers:
                self._observers.append(observer)

    def remove_observer(self, observer: WorkerObserver) -> None:
        """Stop telling ``observer``, from the next start_threads() on (no-op if absent)."""
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    @property
    def observers(self) -> list[WorkerObserver]:
        """The observers added, in order."""
        with self._lock:
            return list(self._observers)

    def on_error(self, callback: ErrorCallback | None) -> None:
        """Call ``callback(exc)`` for every error outside handlers (database errors, failing
        hooks); errors are logged either way. None removes the callback."""
        self._report.set_callback(callback)

    def pass_on_error(self, exc: BaseException) -> None:
        """Hand an error found outside the pool, and logged there, to the on_error callback
        (``jobworker_pg.init_job_queue`` sends the notification listener's errors here)."""
        self._report.pass_on(exc)

    def start_threads(
        self, n: int, *, queues: QueueSpec = None, async_concurrency: int | None = None
    ) -> None:
        """Start ``n`` worker threads plus the claimer, heartbeat and outcome threads.

        ``queues`` says which queues the threads take jobs from: None for ``"default"``
        only; a list for strict order (``["critical", "default"]``: a later queue gets
        only the threads the earlier ones leave idle); a dict of weights
        (``{"critical": 10, "default": 1}``: under a backlog in both, claims split about
        10:1, and a queue with nothing to give lends its share to the others). See
        :mod:`jobworker._queue_plan`.

        ``async def`` handlers run beside the threads on an event loop the pool owns,
        up to ``async_concurrency`` at a time (default DEFAULT_ASYNC_CONCURRENCY when
        async job types are registered); they share the claimer, heartbeats, prefetch
        and outcome writes with the threads. ``n`` may be 0 when every job type is async.

        Declares the registry's bundle types to the database first. Raises
        NotInitializedError without a database, ValueError for a bad ``n``, ``queues``
        or ``async_concurrency``, JobQueueError when already running; a database error
        propagates.
        """
        self._start(n, async_concurrency, None, queues)

    def _start(
        self,
        n: int,
        async_concurrency: int | None,
        loop: asyncio.AbstractEventLoop | None,
        queues: QueueSpec = None,
    ) -> None:
        """start_threads, with async handlers on ``loop`` (None: a loop of the pool's own)."""
        async_width = self._check_widths(n, async_concurrency)
        plan = QueuePlan(queues)
        with self._lock:
            if self._session is not None or self._starting:
                raise JobQueueError("worker threads are already running; call finish_threads() first")
            if self._database is None:
                raise NotInitializedError(
                    "no worker database: call jobworker_pg.init_job_queue() or jobworker.set_database() first"
                )
            database, settings, poll = self._database, self._settings, self._poll_interval
            self._starting, self._start_cancelled = True, False
            observers = Observers(self._observers, self._report)
            self._registry.freeze()
        session: Session | None = None
        try:
            handlers = self._registry.handlers()
            if not handlers:
                logger.warning("starting worker threads with no job types registered")
            bundle_handlers = self._registry.bundle_handler_retries()
            if bundle_handlers:
                database.declare_bundle_handlers(bundle_handlers)
            session = Session(
                self._name,
                n,
                database,
                self._registry,
                handlers,
                settings,
                self._report,
                poll,
                plan,
                async_width,
                loop,
                observers,
            )
            session.start()
            observers.pool_started(self._name, n, sorted(handlers))
        except BaseException:
            if session is not None:
                session.stop()
            self._registry.unfreeze()
            with self._lock:
                self._starting = False
                self._start_ended.notify_all()
            raise
        with self._lock:
            cancelled = self._start_cancelled
            if not cancelled:
                self._session = session
            self._starting = False
            self._start_ended.notify_all()
        if cancelled:
            session.stop()
            self._registry.unfreeze()
            observers.pool_stopped(self._name)
            logger.info("worker threads stopped as they started (a stop came during the start)")
            return
        logger.info(
            "started %d worker threads%s for queues %s, job types %s",
            n,
            f" and {async_width} async places" if async_width else "",
            plan.describe(),
            ", ".join(sorted(handlers)),
        )

    def _check_widths(self, n: int, async_concurrency: int | None) -> int:
        """The async lane's width; ValueError for widths that cannot run the registered types."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"start_threads needs a positive number of threads, got {n!r}")
        if async_concurrency is not None and (
            isinstance(async_concurrency, bool)
            or not isinstance(async_concurrency, int)
            or async_concurrency < 0
        ):
            raise ValueError(f"async_concurrency must be a positive int, got {async_concurrency!r}")
        handlers = self._registry.handlers().values()
        async_types = sorted(h.job_type for h in handlers if h.is_async)
        sync_types = sorted(h.job_type for h in handlers if not h.is_async)
        if async_concurrency is None:
            async_concurrency = DEFAULT_ASYNC_CONCURRENCY if async_types else 0
        if async_types and async_concurrency == 0:
            raise ValueError(
                f"async_concurrency=0, but async job types are registered: {', '.join(async_types)}"
            )
        if n == 0 and (sync_types or not async_types):
            raise ValueError(
                "start_threads needs a positive number of threads"
                + (f" for the sync job types {', '.join(sync_types)}" if sync_types else "")
                + ", got 0"
            )
        return async_concurrency if async_types else 0  # no loop thread without async types

    def finish_threads(self, timeout: Duration | None = None) -> bool:
        """Stop claiming at once, wait for in-flight jobs, save their outcomes, stop.

        Returns True when all of that happened within ``timeout`` (None: wait as
        long as it takes; handlers are bounded by their timeouts, and a database
        that is down is retried). Otherwise jobs still running are abandoned as by
        stop_threads(), unsaved outcomes are logged as errors, and it returns False.
        Harmless when not running.
        """
        deadline = (
            None
            if timeout is None
            else time.monotonic() + to_timedelta(timeout, "timeout", allow_zero=True).total_seconds()
        )
        session, in_time = self._detach(deadline)
        if session is None:
            return in_time
        try:
            finished = session.finish(deadline)
        finally:
            self._registry.unfreeze()
            session.observers.pool_stopped(self._name)
        logger.info("worker threads finished%s", "" if finished else " (timed out)")
        return finished

    def stop_threads(self) -> None:
        """Hard stop: stop claiming and return without waiting for handlers.

        Jobs still running stay "running" in the database with a heartbeat that
        stops; the reaper of any worker process requeues (or fails) them once
        their heartbeat is older than ``dead_for``. Their handlers see
        ``current_job_context().cancelled``; their late results are discarded.
        Outcomes already queued get one attempt to be saved. Harmless when not running.
        """
        session, _ = self._detach()
        if session is None:
            return
        try:
            session.stop()
        finally:
            self._registry.unfreeze()
            session.observers.pool_stopped(self._name)
        logger.info("worker threads stopped")

    def start_polling_available_jobs(self, interval: Duration) -> None:
        """Also look for jobs every ``interval``, besides job_available wake-ups (for
        databases where LISTEN cannot work, or as a safety net). Applies at once."""
        seconds = to_timedelta(interval, "interval").total_seconds()
        self._set_poll_interval(seconds)

    def stop_polling_available_jobs(self) -> None:
        """Look for jobs only when woken up (the default)."""
        self._set_poll_interval(None)

    def do_job(self, job: Job) -> Job:
        """Run ``job`` once inline through this pool's registry; see :func:`jobworker.do_job`."""
        return do_job_with(self._registry, job, self.settings.job_timeout, self._report)

    def run_job_inline(self, job: Job) -> tuple[Job, BaseException | None]:
        """:meth:`do_job`, also returning the handler's exception (None on success); never
        raises for a handler failure, KeyboardInterrupt included."""
        return run_job_inline_with(self._registry, job, self.settings.job_timeout, self._report)

    def _set_poll_interval(self, seconds: float | None) -> None:
        with self._lock:
            self._poll_interval = seconds
            session = self._session
        if session is not None:
            session.claimer.set_poll_interval(seconds)

    def _detach(self, deadline: float | None = None) -> tuple[Session | None, bool]:
        """Take the running session. A start_threads still under way is waited for (until
        ``deadline``, monotonic), so that stopping during a start stops the threads it starts;
        if the deadline passes first, the start stops its threads itself when it ends, and
        the second value is False."""
        with self._lock:
            while self._starting:
                remaining = _START_WAIT_SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    self._start_cancelled = True
                    return None, False
                self._start_ended.wait(min(remaining, _START_WAIT_SLICE))
            session, self._session = self._session, None
            return session, True
