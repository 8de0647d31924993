"""One run of a worker pool, from start_threads to finish/stop: its threads and their wiring.

Threads: ``jobworker-<pool>-claimer``, ``-maintenance``, ``-outcomes``, the
worker threads ``-worker-<n>`` and, with async job types, the event loop's
``-loop`` and ``-loop-watch`` (see :mod:`jobworker._async_runner`). A new run is
built for every start, so threads of an earlier run (a stray handler still running) cannot touch the new one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from uuid import UUID

from jobqueue import Job
from jobworker._async_runner import AsyncLane
from jobworker._claimer import Claimer
from jobworker._completer import OutcomeWriter
from jobworker._database import Outcome, OutcomeKind, WorkerDatabase
from jobworker._errors import ErrorReporter, JobTimeoutError
from jobworker._execute import Attempt, run_attempt, run_attempt_async, timeout_message
from jobworker._log import job_extra
from jobworker._maintenance import Maintenance
from jobworker._observer import Observers
from jobworker._outcomes import settle
from jobworker._periodic import PeriodicScheduler
from jobworker._queue_plan import QueuePlan
from jobworker._registry import Handler, Registry
from jobworker._settings import WorkerSettings
from jobworker._slots import Run, Slots, WorkerHandle

logger = logging.getLogger(__name__)

JOIN_TIMEOUT = 5.0  # how long stopping waits for a service thread
#: Handlers still running past their timeouts, per thread of the pool, beyond which a
#: timed-out run's thread is no longer replaced (a type whose handlers all hang would
#: otherwise grow threads without end).
MAX_STRAYS = 1
#: The least number of unsaved outcomes at which claiming pauses (see Session.max_unsaved).
MIN_UNSAVED_BOUND = 500


class _Worker(WorkerHandle):
    """A worker thread: takes runs from the slots until retired or the pool closes."""

    def __init__(self, session: Session, name: str) -> None:
        self._session = session
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while (run := self._session.slots.take(self)) is not None:
            self._session.execute(run)
            if self.retired:  # a stray: its run timed out and its place went to another thread
                self._session.stray_ended()
                return


class Session:
    """The threads and in-flight state of one pool run."""

    def __init__(
        self,
        name: str,
        width: int,
        database: WorkerDatabase,
        registry: Registry,
        handlers: Mapping[str, Handler],
        settings: WorkerSettings,
        report: ErrorReporter,
        poll_interval: float | None,
        queues: QueuePlan | None = None,
        async_width: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
        observers: Observers | None = None,
    ) -> None:
        self.name = name
        self.observers = observers if observers is not None else Observers((), report)
        self.database = database
        self.registry = registry
        self.settings = settings
        self.report = report
        self._worker_numbers = itertools.count(1)
        self._workers: list[_Worker] = []
        self._workers_lock = threading.Lock()
        self._missing_workers = 0  # threads not replaced because of the stray cap
        self.slots = Slots(width, self._slot_freed, settings.prefetch, async_width, self._async_work)
        # Async handlers' lane: on ``loop`` (the caller's, for AsyncWorker) or a loop of its own.
        self.async_lane = AsyncLane(self, loop, name) if async_width else None
        self.writer = OutcomeWriter(
            database,
            report,
            self._saved,
            f"{name}-outcomes",
            self.observers.outcomes_saved if self.observers else None,
        )
        # Claiming stops while this many outcomes wait to be saved (the database refuses
        # writes): each unsaved claim is kept alive by heartbeats, so claims must not pile up.
        self.max_unsaved = max(MIN_UNSAVED_BOUND, 2 * (width + async_width + self.slots.prefetch_limit))
        self.claimer = Claimer(
            database,
            handlers,
            self.slots,
            self._claimed,
            report,
            poll_interval,
            f"{name}-claimer",
            backlogged=lambda: self.writer.unsaved() >= self.max_unsaved,
            queues=queues,
            on_claim_timed=self.observers.jobs_claimed if self.observers else None,
        )
        self.maintenance = Maintenance(
            database,
            settings,
            self.slots,
            self.writer.pending_claims,
            self._timed_out,
            self._reaped,
            report,
            f"{name}-maintenance",
        )
        specs = registry.periodic_specs()
        self.periodic = PeriodicScheduler(database, specs, report, f"{name}-periodic") if specs else None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start every thread and subscribe to job_available wake-ups."""
        self.writer.start()
        if self.async_lane is not None:
            self.async_lane.start()
        for _ in range(self.slots.width):
            self._spawn_worker()
        self.maintenance.start()
        self.claimer.start()
        self.database.set_wakeup_callback(self.claimer.wake)
        if self.periodic is not None:
            self.periodic.start()

    def finish(self, deadline: float | None) -> bool:
        """Stop claiming, let in-flight jobs end, save every outcome, stop. False when
        ``deadline`` (monotonic) passed first; jobs still running are then abandoned."""
        self._stop_periodic()
        self._unsubscribe()
        self.claimer.stop(JOIN_TIMEOUT)
        self.slots.close()
        self._release(self.slots.drop_pending())
        drained = self.slots.wait_drained(deadline)
        if not drained:
            for run in self.slots.abandon():
                logger.warning(
                    "finish_threads timed out while job %s ran; it stays running until reaped",
                    run.job.id,
                    extra=job_extra(run.job, "abandoned"),
                )
        self._stop_async_lane()
        saved = self.writer.finish(deadline)
        self.maintenance.stop(JOIN_TIMEOUT)
        self._join_workers(deadline)
        return drained and saved

    def stop(self) -> None:
        """Hard stop: stop claiming, disown running jobs, try one last write, return."""
        self._stop_periodic()
        self._unsubscribe()
        self.claimer.stop(JOIN_TIMEOUT)
        self.slots.close()
        self._release(self.slots.drop_pending())
        for run in self.slots.abandon():
            logger.warning(
                "stop_threads: job %s left running; it is requeued once its heartbeat is stale",
                run.job.id,
                extra=job_extra(run.job, "abandoned"),
            )
        self._stop_async_lane()
        self.maintenance.stop(JOIN_TIMEOUT)
        self.writer.stop(JOIN_TIMEOUT)

    def _stop_async_lane(self) -> None:
        if self.async_lane is not None:
            self.async_lane.stop()

    def _release(self, runs: list[Run]) -> None:
        """Give back claimed jobs that never started, so they run elsewhere at once, their
        attempt uncounted (left claimed, the reaper would count them as crashed). Waits at
        most JOIN_TIMEOUT: with the database down, stopping must not hang on it."""
        claims = [(r.job.id, r.job.claim_token) for r in runs if r.job.claim_token is not None]
        if not claims:
            return

        def release() -> None:
            try:
                released = self.database.release_claims(claims)
            except Exception as exc:
                self.report(
                    exc,
                    f"giving back {len(claims)} unstarted claimed jobs (the reaper will requeue them)",
                )
                return
            logger.info("gave back %d claimed jobs that did not start", len(released))

        thread = threading.Thread(target=release, name=f"{self.name}-release", daemon=True)
        thread.start()
        thread.join(JOIN_TIMEOUT)

    def _stop_periodic(self) -> None:
        if self.periodic is not None:
            self.periodic.stop(JOIN_TIMEOUT)

    def _unsubscribe(self) -> None:
        try:
            self.database.set_wakeup_callback(None)
        except Exception as exc:
            self.report(exc, "unsubscribing from job_available wake-ups")

    def _spawn_worker(self) -> None:
        worker = _Worker(self, f"{self.name}-worker-{next(self._worker_numbers)}")
        with self._workers_lock:
            self._workers = [w for w in self._workers if w.thread.is_alive()]
            self._workers.append(worker)
        worker.thread.start()

    def _join_workers(self, deadline: float | None) -> None:
        with self._workers_lock:
            workers = [w for w in self._workers if not w.retired]
        for worker in workers:
            remaining = JOIN_TIMEOUT if deadline is None else max(0.0, deadline - time.monotonic())
            worker.thread.join(min(remaining, JOIN_TIMEOUT))

    # -- callbacks from the threads ---------------------------------------------------------

    def _claimed(self, jobs: list[Job]) -> None:
        runs = []
        for job in jobs:
            handler = self.registry.handler(job.type)
            if handler is None:  # the database returned a type we did not ask for
                logger.error("claimed job %s of unregistered type", job.id, extra=job_extra(job, "claim"))
                continue
            # The job's own timeout overrides its type's, which overrides the pool's.
            timeout = job.timeout or handler.timeout or self.settings.job_timeout
            runs.append(Run(job, handler, timeout, self.database))
        rejected = self.slots.add(runs)
        if rejected:  # the pool stopped meanwhile (or, a bug, more came than asked for)
            logger.info("giving back %d jobs claimed as the pool stopped", len(rejected))
            self._release(rejected)

    def _reaped(self, count: int) -> None:
        self.observers.jobs_reaped(count)
        self.claimer.wake(None)

    def _slot_freed(self, job_type: str) -> None:
        self.claimer.slot_freed(job_type)

    def _async_work(self) -> None:
        if self.async_lane is not None:
            self.async_lane.wake()

    def execute(self, run: Run) -> None:
        """Run one attempt on the calling worker thread and hand its outcome to the writer."""
        self._debug_start(run)
        try:
            self.record(
                run, run_attempt(self.registry, run, self.report, self.slots.handler_returned, self.observers)
            )
        except Exception as exc:  # a bug, not the handler's: the reaper will requeue the job
            self.report(exc, f"recording the outcome of job {run.job.id}")
        finally:
            self.slots.release(run)

    async def execute_async(self, run: Run) -> None:
        """:meth:`execute` for an async handler, on the async lane's event loop."""
        self._debug_start(run)
        try:
            self.record(
                run,
                await run_attempt_async(
                    self.registry, run, self.report, self.slots.handler_returned, self.observers
                ),
            )
        except Exception as exc:  # a bug, not the handler's: the reaper will requeue the job
            self.report(exc, f"recording the outcome of job {run.job.id}")
        finally:
            self.slots.release(run)

    @staticmethod
    def _debug_start(run: Run) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # the hot path: spare building the extra
            job = run.job
            logger.debug("starting job %s (attempt %d)", job.id, job.attempt, extra=job_extra(job, "start"))

    def record(self, run: Run, attempt: Attempt | None) -> None:
        """Hand the outcome of an attempt that ended in time to the writer (None: it ended
        late, after a timeout or a hard stop: nothing to record)."""
        if attempt is None:
            return
        assert attempt.outcome is not None, "a worker's jobs are claimed"
        self._submit(run, attempt.outcome, attempt.error)

    def _timed_out(self, run: Run) -> None:
        """Maintenance found ``run`` past its deadline: end the attempt, replace its thread
        (or cancel its task)."""
        error = JobTimeoutError(timeout_message(run))
        logger.warning("%s", error, extra=job_extra(run.job, "timeout"))
        try:
            outcome = settle(run.job, None, error, self.registry.retry_scheduler(run.job.type))
            self._submit(run, outcome, error)
        finally:
            if not run.handler.is_async:
                self._replace_worker()
            elif self.async_lane is not None:  # its place is free already: end the task
                self.async_lane.cancel(run)
                self.async_lane.wake()

    def _replace_worker(self) -> None:
        """Give the place of a timed-out run's thread to a new thread, unless MAX_STRAYS
        handlers per thread of the pool still run past their timeouts: then the pool
        narrows by one (and claims that much less) until one of them returns."""
        with self._workers_lock:
            strays = sum(1 for w in self._workers if w.retired and w.thread.is_alive())
            capped = strays > MAX_STRAYS * self.slots.width
            if capped:
                self._missing_workers += 1
        if self.slots.closing:
            return
        if capped:
            self._release(self.slots.resize(-1))
            logger.warning(
                "%d handlers still run past their timeouts: not starting another thread until one "
                "returns (the pool runs %d fewer jobs at once meanwhile)",
                strays,
                self._missing_workers,
                extra={"action": "stray-cap"},
            )
            return
        self._spawn_worker()

    def stray_ended(self) -> None:
        """A stray handler returned and its thread exits: start a thread held back by the cap."""
        with self._workers_lock:
            if self._missing_workers == 0:
                return
            self._missing_workers -= 1
        if not self.slots.closing:
            self._release(self.slots.resize(+1))
            self._spawn_worker()
            self.claimer.wake(None)  # room to claim again

    def _submit(self, run: Run, outcome: Outcome, error: BaseException | None) -> None:
        job = run.job
        if self.observers:
            self.observers.attempt_settled(job, outcome.kind)
        if outcome.kind is OutcomeKind.SUCCEEDED:
            if logger.isEnabledFor(logging.INFO):
                logger.info("job %s succeeded", job.id, extra=job_extra(job, "succeeded"))
        elif outcome.kind is OutcomeKind.RETRY:
            assert outcome.retry_delay is not None
            logger.info(
                "job %s failed (attempt %d of %d), retrying in %.1fs: %s",
                job.id,
                job.attempt,
                job.max_retry_count + 1,
                outcome.retry_delay.total_seconds(),
                outcome.error_msg,
                extra=job_extra(job, "retry"),
            )
        elif outcome.kind is OutcomeKind.SNOOZE:
            assert outcome.retry_delay is not None
            logger.info(
                "job %s snoozed for %.1fs",
                job.id,
                outcome.retry_delay.total_seconds(),
                extra=job_extra(job, "snooze"),
            )
        else:
            logger.warning(
                "job %s failed for good (attempt %d): %s",
                job.id,
                job.attempt,
                outcome.error_msg,
                exc_info=error if error is not None and not isinstance(error, JobTimeoutError) else None,
                extra=job_extra(job, "failed"),
            )
        self.writer.submit(outcome, job)

    def _saved(self, saved: list[tuple[Outcome, Job]], applied: set[UUID]) -> None:
        if self.writer.unsaved() + len(saved) >= self.max_unsaved:  # the backlog held claims back
            self.claimer.wake(None)
        debug = logger.isEnabledFor(logging.DEBUG)
        for outcome, job in saved:
            if outcome.job_id not in applied:
                logger.warning(
                    "outcome of job %s not saved: its claim was taken over (reclaimed or reset)",
                    outcome.job_id,
                    extra=job_extra(job, "not-saved"),
                )
                continue
            if debug:
                logger.debug("outcome of job %s saved", job.id, extra=job_extra(job, "saved"))
            if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.SNOOZE) and outcome.retry_delay is not None:
                self.claimer.job_due_in(outcome.retry_delay.total_seconds())
