"""The in-flight jobs of a running pool, under one lock: claimed, running, finishing.

A pool of width N runs at most N non-timed-out jobs, and holds at most
``prefetch`` more claimed ones waiting for a thread. A job that overruns its
deadline leaves its slot at once (its thread is retired and replaced), so the
next claim can use the slot while the stray handler keeps running.

Async handlers have a lane of their own beside the threads': ``async_width``
places (the pool's async concurrency, plus ``prefetch``), taken by the event
loop's runner with :meth:`Slots.take_async` instead of by threads. Each lane
has its own claim-ahead (:mod:`jobworker._claim_ahead`): an adaptive one
learns from that lane's claims and jobs only.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from jobqueue import Job
from jobworker._claim_ahead import ClaimAhead
from jobworker._context import JobContext
from jobworker._database import WorkerDatabase
from jobworker._registry import Handler

_WAIT_SLICE = 1.0  # longest single wait; loops re-check their condition after it


class RunState(enum.Enum):
    """Where a claimed job is in this pool."""

    PENDING = "pending"  # claimed, waiting for a thread
    RUNNING = "running"  # its handler runs; the deadline applies
    FINISHING = "finishing"  # the handler returned in time; the outcome is being written
    DONE = "done"
    TIMED_OUT = "timed_out"  # the deadline passed; a late result is discarded
    ABANDONED = "abandoned"  # the pool stopped hard; a late result is discarded


class WorkerHandle:
    """What the slots know of a worker thread: whether it was retired (its run timed out)."""

    retired = False


class Run:
    """One claimed job in this pool."""

    __slots__ = ("context", "deadline", "handler", "job", "started", "state", "thread", "timeout")

    def __init__(
        self, job: Job, handler: Handler, timeout: timedelta, database: WorkerDatabase | None
    ) -> None:
        self.job = job
        self.handler = handler
        self.timeout = timeout
        self.state = RunState.PENDING
        self.deadline = 0.0  # time.monotonic() deadline, set when the handler starts
        self.started = 0.0  # time.monotonic() the handler started
        self.thread: WorkerHandle | None = None
        self.context = JobContext(job, datetime.now(UTC) + timeout, database)


class Slots:
    """The pool's in-flight runs. Thread-safe; the lock is held only while state changes.

    ``on_free(job_type)`` is called, outside the lock, whenever a slot frees.
    """

    def __init__(
        self,
        width: int,
        on_free: Callable[[str], None],
        prefetch: int | Literal["auto"] = 0,
        async_width: int = 0,
        on_async_work: Callable[[], None] | None = None,
    ) -> None:
        self.width = width
        self.async_width = async_width
        # One claim-ahead per lane (False: threads, True: async): the lanes' jobs run at
        # their own pace, so each learns from its own claims and jobs.
        self._ahead = {False: ClaimAhead(width, prefetch), True: ClaimAhead(async_width, prefetch)}
        self._resized = 0  # thread places added (or, negative, held back) by resize()
        self._on_free = on_free
        self._on_async_work = on_async_work
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # worker threads wait for pending runs
        # Maintenance waits here until its next wake-up; it is woken early only by a deadline
        # earlier than that (not by every job start and end: that cost two wake-ups per job).
        self._changed = threading.Condition(self._lock)
        self._watch_until = 0.0  # monotonic time the maintenance wait ends
        self._emptied = threading.Condition(self._lock)  # nothing pending or active any more
        self._pending: deque[Run] = deque()
        self._pending_async: deque[Run] = deque()
        self._active: dict[UUID, Run] = {}
        self._active_async = 0  # how many of _active are async runs
        self._per_type: Counter[str] = Counter()
        self._closed = False  # take no more runs; threads exit once pending is empty
        self._hard = False  # threads exit at once

    @property
    def closing(self) -> bool:
        """True once the pool stopped taking work."""
        with self._lock:
            return self._closed

    def idle(self, is_async: bool = False) -> int:
        """Free places of a lane: jobs that may be claimed now (threads, or async places,
        plus prefetch, minus in-flight)."""
        with self._lock:
            return self._free(is_async)

    def prefetch(self, is_async: bool = False) -> int:
        """Jobs claimed ahead of a lane's places now (fixed, or adapted as jobs run)."""
        with self._lock:
            return self._ahead[is_async].value

    def claimable(self, is_async: bool | None = None) -> int:
        """How many jobs to claim now for a lane (None: the larger of both): the free places,
        or 0 while more than half of the prefetch is still waiting, so that claims come in
        batches, not one per ended job."""
        with self._lock:
            if is_async is None:
                return max(self._claimable(False), self._claimable(True))
            return self._claimable(is_async)

    def _claimable(self, is_async: bool) -> int:
        pending = self._pending_async if is_async else self._pending
        ahead = self._ahead[is_async].value
        if ahead and len(pending) > ahead // 2:
            return 0
        return self._free(is_async)

    def claim_took(self, seconds: float, is_async: bool = False) -> None:
        """A claim round trip for a lane took ``seconds`` (an adaptive prefetch learns from it)."""
        with self._lock:
            self._ahead[is_async].claim_took(seconds)

    @property
    def prefetch_limit(self) -> int:
        """The most jobs ever claimed ahead of the places, both lanes together (the fixed
        prefetch, or the adaptive one's limit, of each lane that has places)."""
        lanes = ((False, self.width), (True, self.async_width))
        return sum(self._ahead[is_async].limit for is_async, width in lanes if width)

    def _room(self, is_async: bool) -> int:
        # Negative when the places shrank below what is held (resize, an adaptive prefetch
        # that dropped).
        if is_async:
            if not self.async_width:
                return 0
            return self.async_width + self._ahead[True].value - len(self._pending_async) - self._active_async
        if not self.width:
            return 0
        held = len(self._pending) + len(self._active) - self._active_async
        return self.width + self._resized + self._ahead[False].value - held

    def _free(self, is_async: bool) -> int:
        return max(0, self._room(is_async))

    def resize(self, delta: int) -> list[Run]:
        """Change the number of places by ``delta`` (threads held back or given back).
        Returns the pending runs that no longer fit (newest first out), for the caller to
        give back."""
        with self._lock:
            self._resized += delta
            over = min(max(-self._room(False), 0), len(self._pending))
            dropped = self._take_pending(list(self._pending)[len(self._pending) - over :]) if over else []
        for run in dropped:
            run.context.cancel()
        return dropped

    def busy_by_type(self) -> dict[str, int]:
        """In-flight runs per job type."""
        with self._lock:
            return +self._per_type

    def add(self, runs: list[Run]) -> list[Run]:
        """Queue claimed runs for the worker threads, as many as there are free places;
        returns those not queued (all of them once closed), for the caller to give back."""
        with self._lock:
            if self._closed:
                return runs
            room = {False: max(self._free(False), 0), True: max(self._free(True), 0)}
            rejected: list[Run] = []
            threaded = queued_async = 0
            for run in runs:
                is_async = run.handler.is_async
                if room[is_async] == 0:
                    rejected.append(run)
                    continue
                room[is_async] -= 1
                self._per_type[run.job.type] += 1
                if is_async:
                    self._pending_async.append(run)
                    queued_async += 1
                else:
                    self._pending.append(run)
                    threaded += 1
            if threaded:
                self._work.notify(threaded)
        if queued_async and self._on_async_work is not None:
            self._on_async_work()
        return rejected

    def take(self, thread: WorkerHandle) -> Run | None:
        """The next pending run for ``thread`` (now RUNNING, its deadline set), or None when
        the thread should exit: retired, or the pool is closing and nothing is pending."""
        with self._lock:
            while True:
                if thread.retired or self._hard:
                    return None
                if self._pending:
                    run = self._pending.popleft()
                    run.thread = thread
                    self._start(run)
                    return run
                if self._closed:
                    return None
                self._work.wait(_WAIT_SLICE)

    def take_async(self) -> Run | None:
        """The next pending async run (now RUNNING, its deadline set), or None when none is
        pending or every async place is taken. Never blocks."""
        with self._lock:
            if self._hard or not self._pending_async or self._active_async >= self.async_width:
                return None
            run = self._pending_async.popleft()
            self._active_async += 1
            self._start(run)
            return run

    def _start(self, run: Run) -> None:
        run.state = RunState.RUNNING
        run.started = time.monotonic()
        run.deadline = run.started + run.timeout.total_seconds()
        run.context.deadline = datetime.now(UTC) + run.timeout
        self._active[run.job.id] = run
        if run.deadline < self._watch_until:
            self._changed.notify_all()

    def handler_returned(self, run: Run) -> bool:
        """The handler of ``run`` returned: True if its result counts (it was in time)."""
        with self._lock:
            if run.state is RunState.RUNNING:
                run.state = RunState.FINISHING
                self._ahead[run.handler.is_async].job_ran(time.monotonic() - run.started)
                return True
            return False

    def release(self, run: Run) -> None:
        """``run``'s outcome is handed on: free its slot."""
        with self._lock:
            if run.state is not RunState.FINISHING:
                return
            run.state = RunState.DONE
            self._forget(run)
        self._on_free(run.job.type)

    def expire(self) -> list[Run]:
        """Mark runs past their deadline TIMED_OUT, retire their threads, free their slots."""
        now = time.monotonic()
        with self._lock:
            expired = [r for r in self._active.values() if r.state is RunState.RUNNING and r.deadline <= now]
            for run in expired:
                run.state = RunState.TIMED_OUT
                self._ahead[run.handler.is_async].job_ran(now - run.started)
                if run.thread is not None:
                    run.thread.retired = True
                self._forget(run)
        for run in expired:
            run.context.cancel()
            self._on_free(run.job.type)
        return expired

    def _forget(self, run: Run) -> None:
        del self._active[run.job.id]
        if run.handler.is_async:
            self._active_async -= 1
        self._per_type[run.job.type] -= 1
        self._notify_if_empty()

    def _notify_if_empty(self) -> None:
        if not self._pending and not self._pending_async and not self._active:
            self._emptied.notify_all()

    def next_deadline(self) -> float | None:
        """The earliest deadline (monotonic) of a running handler."""
        with self._lock:
            deadlines = [r.deadline for r in self._active.values() if r.state is RunState.RUNNING]
        return min(deadlines, default=None)

    def claims(self) -> list[tuple[UUID, UUID]]:
        """``(job_id, claim_token)`` of every in-flight run whose claim is not known lost,
        for the heartbeat."""
        with self._lock:
            runs = [*self._pending, *self._pending_async, *self._active.values()]
        return [
            (r.job.id, r.job.claim_token)
            for r in runs
            if r.job.claim_token is not None and not r.context.cancelled
        ]

    def cancel(self, job_ids: set[UUID]) -> list[Run]:
        """These runs' claims were lost (reclaimed or reset elsewhere): drop the ones not
        started yet, so that they never run beside their new owner, and cancel the contexts
        of running ones. Returns the runs newly cancelled (each is reported once)."""
        with self._lock:
            runs = [
                r
                for r in [*self._pending, *self._pending_async, *self._active.values()]
                if r.job.id in job_ids and not r.context.cancelled
            ]
            dropped = self._take_pending([r for r in runs if r.state is RunState.PENDING])
        for run in runs:
            run.context.cancel()
        for run in dropped:
            self._on_free(run.job.type)
        return runs

    def close(self) -> None:
        """Accept no more work; threads run what is pending, then exit."""
        with self._lock:
            self._closed = True
            self._work.notify_all()
            self._changed.notify_all()
            self._emptied.notify_all()

    def drop_pending(self) -> list[Run]:
        """Take every run not started yet out of the slots (they are given back to the
        queue by the caller); threads see an empty queue."""
        with self._lock:
            dropped = self._take_pending([*self._pending, *self._pending_async])
        for run in dropped:
            run.context.cancel()
        return dropped

    def _take_pending(self, runs: list[Run]) -> list[Run]:
        """Remove these pending runs (they will not start); call with the lock held."""
        taken = set(runs)
        self._pending = deque(r for r in self._pending if r not in taken)
        self._pending_async = deque(r for r in self._pending_async if r not in taken)
        for run in runs:
            run.state = RunState.ABANDONED
            self._per_type[run.job.type] -= 1
        self._notify_if_empty()
        return runs

    def abandon(self) -> list[Run]:
        """Hard stop: drop pending runs, disown running ones (their late results are
        discarded) and cancel their contexts. Returns the runs dropped or disowned."""
        with self._lock:
            self._closed = self._hard = True
            runs = [*self._pending, *self._pending_async, *self._active.values()]
            for run in runs:
                run.state = RunState.ABANDONED
            self._pending.clear()
            self._pending_async.clear()
            self._active.clear()
            self._active_async = 0
            self._per_type.clear()
            self._work.notify_all()
            self._changed.notify_all()
            self._emptied.notify_all()
        for run in runs:
            run.context.cancel()
        return runs

    def wait_drained(self, deadline: float | None) -> bool:
        """Wait until nothing is pending or active (True), or until ``deadline`` (False)."""
        with self._lock:
            while self._pending or self._pending_async or self._active:
                remaining = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._emptied.wait(min(remaining, _WAIT_SLICE))
            return True

    def wait_changed(self, timeout: float) -> None:
        """Sleep up to ``timeout``, or until a handler starts whose deadline falls before
        the end of that wait, or the pool closes."""
        timeout = max(0.0, min(timeout, _WAIT_SLICE))
        with self._lock:
            self._watch_until = time.monotonic() + timeout
            self._changed.wait(timeout)
            self._watch_until = 0.0

    def poke(self) -> None:
        """Wake whoever waits in :meth:`wait_changed`."""
        with self._lock:
            self._changed.notify_all()
