"""The narrow seam between the worker runtime and its database.

The pool talks to the database only through :class:`WorkerDatabase`;
``jobworker_pg.PostgresService`` implements it with SQL, and the unit tests
with an in-memory fake. Every write that concerns a claimed job carries that
claim's token and applies only while the token is still the job's, so a worker
that wakes up after its job was reclaimed cannot overwrite the newer attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from jobqueue import Job, JobBundle
from jobqueue._queues import DEFAULT_QUEUE
from jobworker._retention import Retention

if TYPE_CHECKING:
    from jobworker._periodic import PeriodicSpec


class OutcomeKind(enum.Enum):
    """How an attempt ended."""

    SUCCEEDED = "succeeded"  # stop the job with its result
    FAILED = "failed"  # stop the job with its error, no retry
    RETRY = "retry"  # record the error and make the job available again after a delay
    SNOOZE = "snooze"  # available again after a delay, the attempt uncounted, no error (Snooze)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, to be written for the claim ``(job_id, claim_token)``.

    JSON values are passed as JSON text so the database layer does no encoding.
    """

    job_id: UUID
    claim_token: UUID
    kind: OutcomeKind
    attempt: int
    result_json: str | None = None  # SUCCEEDED: the handler's result
    error_msg: str | None = None  # FAILED / RETRY: first line of the error
    error_type: str | None = None  # FAILED / RETRY: qualified exception class name
    error_data_json: str | None = None  # FAILED / RETRY: {"type", "message", "traceback"}
    retry_delay: timedelta | None = None  # RETRY / SNOOZE: wait from the database's now()
    bundle_id: UUID | None = None  # the job's bundle, whose counter a stop moves


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the database knows of a periodic schedule (a row of ``worker.schedule``)."""

    enabled: bool
    last_tick: datetime | None  # the latest tick enqueued (or skipped); None before the first
    created_at: datetime  # when first declared: the first tick comes after it


class ClaimedJobs(list[Job]):
    """The jobs a :meth:`WorkerDatabase.claim_jobs` call took (a list), and ``retry_in``: when
    the queue's rules (a limit, the pause) held the claim back, the seconds after which a new
    claim may take more; None otherwise. An implementation may return a plain list instead."""

    retry_in: float | None = None

    def __init__(self, jobs: list[Job] | None = None, retry_in: float | None = None) -> None:
        super().__init__(jobs or ())
        self.retry_in = retry_in


#: Called when the database says jobs may be available: the job type if known, None when
#: unknown (for example right after the listener reconnected and may have missed notifications).
WakeupCallback = Callable[[str | None], None]


class WorkerDatabase(Protocol):
    """What the worker pool needs from the database. Implementations are thread-safe."""

    def claim_jobs(self, job_types: Sequence[str], limit: int, *, queue: str = DEFAULT_QUEUE) -> list[Job]:
        """Claim up to ``limit`` due jobs of ``job_types`` from ``queue``, highest priority
        then oldest first, within the queue's rules (limits, pause) across every process.

        May return :class:`ClaimedJobs` to say when a claim held back by the rules may
        succeed. Each claim commits before this returns, sets ``started_at`` and
        ``worker_alive_at``, gives the job a fresh ``claim_token`` and counts an
        attempt (``attempt`` is 1 on the first claim). Jobs are returned in
        claim order.
        """
        ...

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> set[UUID]:
        """Write several outcomes in one transaction; returns the ids of the jobs whose
        write applied. A job whose claim token changed (reclaimed, reset, deleted) is
        left alone and its id is missing from the result."""
        ...

    def heartbeat(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        """Set ``worker_alive_at`` to now for every ``(job_id, claim_token)`` still current,
        in one statement; returns the ids that were still current."""
        ...

    def release_claims(self, claims: Sequence[tuple[UUID, UUID]]) -> set[UUID]:
        """Give back claimed jobs whose handler never started (a stopping pool's
        prefetched jobs): each ``(job_id, claim_token)`` still current becomes available
        again with its attempt uncounted, in one statement; returns the ids released."""
        ...

    def reap_dead_jobs(self, dead_for: timedelta) -> int:
        """End or requeue running jobs whose heartbeat is older than ``dead_for``.

        A job with attempts left becomes available again with a "worker lost"
        error in its history; one without ends failed with that error.
        Returns how many jobs were reaped.
        """
        ...

    def seconds_until_next_job(self, job_types: Sequence[str]) -> float | None:
        """Seconds until the earliest scheduled (future ``start_at``) job of ``job_types``
        is due, by the database clock; None when none is scheduled."""
        ...

    def set_wakeup_callback(self, callback: WakeupCallback | None) -> None:
        """Call ``callback`` when jobs become available (LISTEN job_available), and with
        None after the notification connection reconnects. None stops the calls."""
        ...

    def declare_bundle_handlers(self, handlers: Mapping[str, int]) -> None:
        """Record durably that bundles of these types have a completion handler (each with
        the ``max_retry_count`` of its completion jobs) and that a worker serves them now,
        so the transaction that stops a bundle's last job also enqueues its completion job."""
        ...

    def prune_finished(self, retention: Retention) -> int | None:
        """Delete finished jobs and bundles older than ``retention`` allows, in batches of
        ``retention.batch_size`` rows, each its own short transaction. One process at a
        time: returns None at once when another one is pruning, else how many rows (jobs
        and bundles) were deleted."""
        ...

    def get_job_bundle(self, bundle_id: UUID) -> JobBundle:
        """The bundle with its jobs (JobNotFoundError if none)."""
        ...

    def declare_schedules(self, specs: Sequence[PeriodicSpec], now: datetime) -> None:
        """Store or update the periodic schedules this process runs, marking them seen at
        ``now``. A new one is created at ``now`` with its ``enabled``; an existing one keeps
        its ``enabled``, ``last_tick`` and ``created_at``."""
        ...

    def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """The stored state of the named schedules (missing names are left out)."""
        ...

    def enqueue_ticks(
        self,
        spec: PeriodicSpec,
        expected_last_tick: datetime | None,
        last_tick: datetime,
        ticks: Sequence[datetime],
    ) -> list[UUID] | None:
        """In one transaction: if the schedule is enabled and its ``last_tick`` is still
        ``expected_last_tick``, set it to ``last_tick`` and enqueue one job per tick of
        ``ticks`` (``scheduled_for`` = the tick). Returns the new jobs' ids, or None when
        the schedule was disabled or another worker moved ``last_tick`` first."""
        ...


#: The job type of the completion job of a bundle of type T is BUNDLE_JOB_PREFIX + T;
#: its payload is {"bundle_id": "...", "bundle_type": T}.
BUNDLE_JOB_PREFIX = "jobqueue.bundle:"
