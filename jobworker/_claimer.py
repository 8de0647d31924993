"""The claimer: one thread that claims jobs in batches for all idle worker threads.

It sleeps until there is a reason to claim (a job_available wake-up, the
polling interval, a scheduled job falling due, a freed slot after a full batch,
a queue's limit or pause that may have let go) and there is room (an idle
thread, or with ``prefetch`` a buffer half empty); one ``claim_jobs`` round trip
per queue then fills every free place it can, the places shared among the
queues as :mod:`jobworker._queue_plan` says. Job types at their
``max_concurrency`` are left out. Sync and async job types are claimed
separately, each up to the free places of its lane (threads, or the event loop's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jobqueue import Job
from jobworker._database import WorkerDatabase
from jobworker._errors import ErrorReporter
from jobworker._log import job_extra
from jobworker._queue_plan import QueuePlan
from jobworker._registry import Handler
from jobworker._slots import Slots

logger = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 1.0  # longest single sleep; nothing happens on waking without a reason
ERROR_BACKOFF_START = 0.1
# Failed claims are retried at least this often: once the database is back, claiming resumes
# within a second (a wake-up from the reconnected listener also ends the wait at once).
ERROR_BACKOFF_MAX = 1.0


@dataclass(frozen=True, slots=True)
class ClaimCall:
    """One ``claim_jobs`` call of a claim round; ``cap`` bounds its limit besides the idle slots."""

    job_types: list[str]
    cap: int | None


def plan_claims(
    handlers: Mapping[str, Handler], busy: Mapping[str, int], idle: int
) -> tuple[list[ClaimCall], set[str]]:
    """The calls of one claim round, and the types left out because they are at capacity.

    One call covers every type that cannot exceed its ``max_concurrency`` with
    ``idle`` more jobs; each type closer to its cap gets a call of its own,
    limited to its remaining capacity.
    """
    shared: list[str] = []
    own: list[ClaimCall] = []
    full: set[str] = set()
    for job_type in sorted(handlers):
        cap = handlers[job_type].max_concurrency
        if cap is None:
            shared.append(job_type)
            continue
        free = cap - busy.get(job_type, 0)
        if free <= 0:
            full.add(job_type)
        elif free >= idle:
            shared.append(job_type)
        else:
            own.append(ClaimCall([job_type], free))
    calls = [ClaimCall(shared, None)] if shared else []
    return calls + own, full


class _Round:
    """The state of one claim round across its queues."""

    def __init__(self) -> None:
        self.calls: list[ClaimCall] = []  # the current lane's calls
        self.caps: list[int] = []  # what each capped call of the lane may still take
        self.capped: set[str] = set()
        self.more = False  # some call filled its limit: there may be more
        self.more_lanes: set[bool] = set()  # lanes (is_async) that may have more
        self.lane = False  # the current lane
        self.retry_in: float | None = None  # soonest time a held-back queue may give more

    def start_lane(self, is_async: bool, calls: list[ClaimCall], capped: set[str]) -> None:
        self.lane = is_async
        self.calls = calls
        self.caps = [call.cap or 0 for call in calls]
        self.capped |= capped

    def found_more(self) -> None:
        self.more = True
        self.more_lanes.add(self.lane)


class Claimer:
    """Owns the thread ``jobworker-claimer``. ``on_claimed(jobs)`` hands claimed jobs on.

    ``backlogged()`` True holds claiming back (too many outcomes wait to be saved); whoever
    ends the backlog calls :meth:`wake`.
    """

    def __init__(
        self,
        database: WorkerDatabase,
        handlers: Mapping[str, Handler],
        slots: Slots,
        on_claimed: Callable[[list[Job]], None],
        report: ErrorReporter,
        poll_interval: float | None,
        name: str,
        backlogged: Callable[[], bool] = lambda: False,
        queues: QueuePlan | None = None,
        on_claim_timed: Callable[[list[Job], float], None] | None = None,
    ) -> None:
        self._database = database
        self._backlogged = backlogged
        self._queues = queues if queues is not None else QueuePlan()
        self._on_claim_timed = on_claim_timed  # observers: every claim statement and its duration
        self._handlers = dict(handlers)
        # (is_async, handlers) per lane that has job types: each claims up to its own free places.
        self._lanes = [
            (is_async, lane)
            for is_async in (False, True)
            if (lane := {t: h for t, h in self._handlers.items() if h.is_async is is_async})
        ]
        self._slots = slots
        self._on_claimed = on_claimed
        self._report = report
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requested = True  # claim once at start
        self._more: bool = False  # the last round filled its limit: there may be more
        self._capped: set[str] = set()  # types left out or filled at their max_concurrency
        self._stopping = False
        self._next_due: float | None = None  # monotonic time a scheduled job falls due
        self._poll_interval = poll_interval
        self._next_poll: float | None = None if poll_interval is None else time.monotonic() + poll_interval
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the claimer thread."""
        self._thread.start()

    def stop(self, join_timeout: float) -> None:
        """Stop claiming at once; wait up to ``join_timeout`` for a round in progress."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join_timeout)

    def wake(self, job_type: str | None) -> None:
        """Jobs may be available (of ``job_type``, or of any type when None)."""
        if job_type is not None and job_type not in self._handlers:
            return
        with self._cond:
            self._requested = True
            self._cond.notify_all()

    def slot_freed(self, job_type: str) -> None:
        """A slot freed: claim again if the last round suggested more jobs wait."""
        with self._cond:
            if self._more or job_type in self._capped:
                self._requested = True
            # Wake the claimer only when it would claim (with prefetch, most freed slots
            # leave the buffer more than half full).
            if self._requested and self._slots.claimable() > 0:
                self._cond.notify_all()

    def job_due_in(self, seconds: float) -> None:
        """A job of ours becomes due in ``seconds`` (a retry was scheduled)."""
        due = time.monotonic() + max(seconds, 0.0)
        with self._cond:
            if self._next_due is None or due < self._next_due:
                self._next_due = due
                self._cond.notify_all()

    def set_poll_interval(self, seconds: float | None) -> None:
        """Also claim every ``seconds`` (None: only on wake-ups)."""
        with self._cond:
            self._poll_interval = seconds
            self._next_poll = None if seconds is None else time.monotonic()
            self._cond.notify_all()

    def _wait_for_reason(self) -> bool:
        """Sleep until a claim is wanted and a slot is idle; False when stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._next_due is not None and now >= self._next_due:
                    self._next_due, self._requested = None, True
                if self._next_poll is not None and self._poll_interval is not None and now >= self._next_poll:
                    self._next_poll, self._requested = now + self._poll_interval, True
                if self._requested and self._slots.claimable() > 0 and not self._backlogged():
                    self._requested = False
                    return True
                timeouts = [IDLE_WAIT_SECONDS]
                if self._next_due is not None:
                    timeouts.append(self._next_due - now)
                if self._next_poll is not None:
                    timeouts.append(self._next_poll - now)
                self._cond.wait(max(min(timeouts), 0.0))
            return False

    def _loop(self) -> None:
        backoff = ERROR_BACKOFF_START
        while self._wait_for_reason():
            try:
                self._claim_round()
            except Exception as exc:
                self._report(exc, f"claiming jobs (retrying in {backoff:.1f}s)", retrying=True)
                with self._cond:
                    self._requested = True
                    if not self._stopping:
                        self._cond.wait(backoff)
                backoff = min(backoff * 2, ERROR_BACKOFF_MAX)
                continue
            backoff = ERROR_BACKOFF_START

    def _claim_round(self) -> None:
        if not self._handlers:
            return
        round_ = _Round()
        for is_async, handlers in self._lanes:
            self._claim_lane(round_, handlers, is_async)
        with self._cond:
            self._more = round_.more
            self._capped = round_.capped
            if any(self._slots.claimable(lane) > 0 for lane in round_.more_lanes):
                # A slot freed while an earlier call of this round had said "no more".
                self._requested = True
        if round_.retry_in is not None:
            self.job_due_in(round_.retry_in)
        if not round_.more:
            self._schedule_next_due()

    def _claim_lane(self, round_: _Round, handlers: Mapping[str, Handler], is_async: bool) -> None:
        """Claim for one lane (sync or async types) up to its idle places, queue by queue."""
        with self._cond:
            # Planned and published under the lock that slot_freed takes: a slot that frees
            # after the snapshot sees these types as capped and asks for the next round.
            idle = self._slots.idle(is_async)
            calls, capped = plan_claims(handlers, self._slots.busy_by_type(), idle)
            round_.start_lane(is_async, calls, capped)
            self._capped = set(round_.capped)
        if idle <= 0:
            # A full lane learns nothing this round (which runs for the other lane): its
            # jobs may still wait, so its next freed place must claim.
            if calls:
                round_.found_more()
            return
        left = 0  # places a queue left unused, handed to the next
        unfilled: set[str] = set()
        for queue, share in self._queues.deal(idle):
            want = share + left
            got = self._claim_queue(round_, queue, want) if want > 0 else 0
            left = want - got
            if got < want:
                unfilled.add(queue)
        for queue in self._queues.queues:  # then to the queues before, which may have more
            if left <= 0:
                break
            if queue not in unfilled:
                left -= self._claim_queue(round_, queue, left)

    def _claim_queue(self, round_: _Round, queue: str, want: int) -> int:
        """Claim up to ``want`` jobs of ``queue`` through the round's calls; returns how many."""
        got = 0
        for index, call in enumerate(round_.calls):
            room = want - got
            if room <= 0:
                round_.found_more()
                break
            limit = room if call.cap is None else min(round_.caps[index], room)
            if limit <= 0:
                continue
            started = time.monotonic()
            jobs = self._database.claim_jobs(call.job_types, limit, queue=queue)
            took = time.monotonic() - started
            self._slots.claim_took(took, round_.lane)
            if self._on_claim_timed is not None:
                self._on_claim_timed(jobs, took)
            retry_in = getattr(jobs, "retry_in", None)  # ClaimedJobs: held back by the queue's rules
            if retry_in is not None:
                round_.retry_in = retry_in if round_.retry_in is None else min(round_.retry_in, retry_in)
            if logger.isEnabledFor(logging.DEBUG):  # spare building each record's extra
                for job in jobs:
                    logger.debug(
                        "claimed job %s (attempt %d)", job.id, job.attempt, extra=job_extra(job, "claim")
                    )
            got += len(jobs)
            if call.cap is not None:
                round_.caps[index] -= len(jobs)
            if len(jobs) >= limit:
                if call.cap is None:
                    round_.found_more()
                else:
                    round_.capped.update(call.job_types)
            # Say "there may be more" before handing the jobs on: a handler fast enough to
            # end before this round does must find it set, or its freed slot claims nothing.
            with self._cond:
                self._more = round_.more
                self._capped = set(round_.capped)
            if jobs:
                self._on_claimed(jobs)
        return got

    def _schedule_next_due(self) -> None:
        """Ask the database when the next scheduled job of our types falls due."""
        seconds = self._database.seconds_until_next_job(sorted(self._handlers))
        if seconds is not None:
            self.job_due_in(seconds)
