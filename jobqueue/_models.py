"""Pydantic models of the rows in the ``worker`` schema."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class JobState(enum.StrEnum):
    """Where a job is in its life. Derived from the job's columns, never stored."""

    PENDING = "pending"  # waiting, due now, never attempted
    SCHEDULED = "scheduled"  # waiting for a start_at in the future, never attempted
    RUNNING = "running"  # claimed by a worker, not stopped
    RETRYING = "retrying"  # an attempt failed, another one is scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptError(BaseModel):
    """One failed attempt in a job's history (``Job.errors``)."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    at: datetime
    message: str
    type: str | None = None


class Job(BaseModel):
    """A job: one row of ``worker.job``.

    Built by :func:`jobqueue.new_job` for enqueueing and returned by every
    query. Instances are plain data; changing one changes nothing in the
    database.
    """

    model_config = ConfigDict(validate_assignment=False)

    id: UUID
    bundle_id: UUID | None = None
    type: str
    payload: Any = None
    priority: int = 0
    origin: str
    max_retry_count: int = 0
    current_retry_count: int = 0
    start_at: datetime | None = None
    started_at: datetime | None = None
    worker_alive_at: datetime | None = None
    stopped_at: datetime | None = None
    error_msg: str | None = None
    error_data: Any = None
    result: Any = None
    updated_at: datetime | None = None
    created_at: datetime | None = None
    # Additions to the go-jobqueue columns (all nullable or defaulted there).
    attempt: int = 0
    errors: list[AttemptError] = Field(default_factory=list)
    cancelled_at: datetime | None = None
    claim_token: UUID | None = None
    #: At most one unfinished job has this key; see :func:`jobqueue.new_job`.
    unique_key: str | None = None
    #: The tick a periodic job was enqueued for (its period ends there); None for other jobs.
    scheduled_for: datetime | None = None
    # Queues (revision jobqueue_0004): the queue, custom metadata for hooks, a per-job timeout
    # overriding the type's, and the key of the queue's per-key concurrency limit.
    queue: str = "default"
    meta: dict[str, Any] | None = None
    timeout: timedelta | None = None
    concurrency_key: str | None = None
    # Options of the insert, not stored (nor dumped): see :func:`jobqueue.new_job`.
    unique_for: timedelta | None = Field(default=None, exclude=True)
    on_conflict: str = Field(default="return", exclude=True)
    #: True when :func:`jobqueue.add` found an unfinished job with the same ``unique_key`` and
    #: returned that one instead of storing this one.
    deduplicated: bool = False

    @property
    def started(self) -> bool:
        """True once a worker has claimed the job (and it was not reset since)."""
        return self.started_at is not None

    @property
    def stopped(self) -> bool:
        """True when the job has ended for good: succeeded, failed or cancelled."""
        return self.stopped_at is not None

    @property
    def is_finished(self) -> bool:
        """Same as :attr:`stopped`, by go-jobqueue's name."""
        return self.stopped_at is not None

    @property
    def succeeded(self) -> bool:
        """True when the job stopped without an error."""
        return self.stopped_at is not None and self.error_msg is None

    @property
    def has_error(self) -> bool:
        """True when the last attempt failed (the job may still be retried)."""
        return self.error_msg is not None

    @property
    def cancelled(self) -> bool:
        """True when the job was cancelled before it ran."""
        return self.cancelled_at is not None

    @property
    def state(self) -> JobState:
        """The job's :class:`JobState`, judged by the local clock for ``start_at``."""
        if self.cancelled_at is not None:
            return JobState.CANCELLED
        if self.stopped_at is not None:
            return JobState.FAILED if self.error_msg is not None else JobState.SUCCEEDED
        if self.started_at is not None:
            return JobState.RUNNING
        if self.error_msg is not None or self.current_retry_count > 0:
            return JobState.RETRYING
        if self.start_at is not None and self.start_at > datetime.now(UTC):
            return JobState.SCHEDULED
        return JobState.PENDING

    def worker_alive(self, dead_for: timedelta | float) -> bool:
        """True when the job runs and its worker's heartbeat is younger than ``dead_for``."""
        if self.started_at is None or self.stopped_at is not None:
            return False
        if self.worker_alive_at is None:
            return False
        limit = dead_for if isinstance(dead_for, timedelta) else timedelta(seconds=dead_for)
        return datetime.now(UTC) - self.worker_alive_at < limit


class JobDesc(BaseModel):
    """The description of one job of a bundle, for :func:`jobqueue.new_job_bundle`.

    A missing ``type`` is ``job_type_of(payload)``; a missing ``origin`` or ``queue`` is
    the bundle's. ``meta``, ``timeout`` and ``concurrency_key`` are as for :func:`jobqueue.new_job`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: str | None = None
    payload: Any = None
    priority: int = 0
    origin: str | None = None
    max_retry_count: int = 0
    unique_key: str | None = None
    unique_for: timedelta | None = None
    queue: str | None = None  # None: the bundle's queue
    meta: dict[str, Any] | None = None
    timeout: timedelta | float | None = None
    concurrency_key: str | None = None


class JobBundle(BaseModel):
    """A bundle: one row of ``worker.job_bundle`` and, when built or fetched, its jobs."""

    id: UUID
    type: str
    origin: str
    num_jobs: int
    num_jobs_stopped: int = 0
    updated_at: datetime | None = None
    created_at: datetime | None = None
    jobs: list[Job] = Field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """True when every job of the bundle has stopped."""
        return self.num_jobs_stopped >= self.num_jobs


class StateCounts(BaseModel):
    """Numbers of jobs in each :class:`JobState`."""

    pending: int = 0
    scheduled: int = 0
    running: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        """All jobs counted."""
        return (
            self.pending
            + self.scheduled
            + self.running
            + self.retrying
            + self.succeeded
            + self.failed
            + self.cancelled
        )


class Status(StateCounts):
    """Counts of jobs by state, overall and per job type (``by_type``), plus bundles.

    ``pending``, ``scheduled``, ``running`` and ``retrying`` are always exact. When
    ``estimated`` is True (a big job table: PostgresService counts finished jobs exactly
    below 20,000 rows), ``succeeded``, ``failed`` and ``cancelled`` (overall and per type)
    are estimates from a sample of the table, so that the call stays cheap with a long
    history; bundle counts are exact.
    """

    by_type: dict[str, StateCounts] = Field(default_factory=dict)
    num_bundles: int = 0
    num_bundles_stopped: int = 0
    estimated: bool = False
