"""The two protocols producers and observers program against."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from jobqueue._models import Job, JobBundle, Status
from jobqueue._queues import NoLimit, QueueInfo, RateLimit

#: A connection whose open transaction an insert may join: a psycopg ``Connection``,
#: a SQLAlchemy ``Connection`` or ``Session`` (for the ``*_async`` methods: a psycopg
#: ``AsyncConnection``, a SQLAlchemy ``AsyncConnection`` or ``AsyncSession``).
#: Typed loosely so this package needs no driver.
Transaction = Any


@runtime_checkable
class ServiceListener(Protocol):
    """Receives the stop events of jobs and bundles, as the database notifies them.

    Called on the service's listener thread; keep it quick. Delivered at most
    once per listening process and only after the stopping transaction commits.

    A listener may also have ``on_listening(listen_works: bool)``: the service then
    calls it after every (re)connect of its notification connection (events may have
    been missed while it was away), with whether notifications work there at all.
    """

    def on_job_stopped(self, job_id: UUID, job_type: str, origin: str, will_retry: bool) -> None:
        """An attempt of a job ended; ``will_retry`` says whether another is scheduled."""

    def on_job_bundle_stopped(self, bundle_id: UUID, bundle_type: str, origin: str) -> None:
        """The last job of a bundle stopped for good."""


class Service(Protocol):
    """What a job queue backend offers. :class:`jobworker_pg.PostgresService` is the real one.

    Every method may raise ServiceClosedError after :meth:`close`, and
    DatabaseError when the database fails. Methods are thread-safe.
    """

    def add_job(self, job: Job, *, conn: Transaction | None = None) -> Job:
        """Store one job. With ``conn`` the insert joins that connection's open
        transaction and becomes visible (and notifies workers) only when it commits."""
        ...

    def add_jobs(self, jobs: Sequence[Job], *, conn: Transaction | None = None) -> list[Job]:
        """Store many jobs in one round trip (one statement), optionally in ``conn``'s transaction."""
        ...

    def add_job_bundle(self, bundle: JobBundle, *, conn: Transaction | None = None) -> JobBundle:
        """Store a bundle and all its jobs atomically, optionally in ``conn``'s transaction."""
        ...

    def get_job(self, job_id: UUID) -> Job:
        """The job with that id; JobNotFoundError if there is none."""
        ...

    def get_job_bundle(self, bundle_id: UUID) -> JobBundle:
        """The bundle with that id, with its jobs; JobNotFoundError if there is none."""
        ...

    def delete_job(self, job_id: UUID) -> None:
        """Delete a job; JobNotFoundError if there is none."""
        ...

    def delete_job_bundle(self, bundle_id: UUID) -> None:
        """Delete a bundle and its jobs; JobNotFoundError if there is none."""
        ...

    def reset_job(self, job_id: UUID) -> Job:
        """Make a job run again from scratch (attempts, result and error cleared;
        the error history kept). A running attempt's later writes are discarded."""
        ...

    def reset_jobs(self, job_ids: Iterable[UUID]) -> list[Job]:
        """:meth:`reset_job` for several jobs in one transaction; JobNotFoundError
        (and nothing reset) if any id is unknown."""
        ...

    def cancel_job(self, job_id: UUID) -> Job:
        """Stop a job that has not started: it never runs and counts as stopped
        for its bundle. A job already stopped is returned unchanged; a running
        job cannot be cancelled (InvalidJobError)."""
        ...

    def get_status(self) -> Status:
        """Counts of jobs by state and by type."""
        ...

    def get_all_jobs_to_do(self) -> list[Job]:
        """Every job not yet stopped, in the order workers would take them."""
        ...

    def get_all_jobs_started_before(self, since: datetime) -> list[Job]:
        """Running jobs started before ``since`` (timezone-aware)."""
        ...

    def get_all_jobs_with_errors(self) -> list[Job]:
        """Jobs whose last attempt failed, stopped or waiting for a retry."""
        ...

    def delete_finished_jobs(self, older_than: timedelta | float | None = None) -> int:
        """Delete succeeded jobs outside bundles (stopped longer than ``older_than`` ago,
        if given); failed jobs stay for inspection. Returns how many were deleted."""
        ...

    def configure_queue(
        self,
        name: str,
        *,
        concurrency: int | NoLimit | None = None,
        per_key_concurrency: int | NoLimit | None = None,
        rate_limit: RateLimit | NoLimit | None = None,
        paused: bool | None = None,
    ) -> QueueInfo:
        """Create or change a queue's rules, stored for every worker process; returns them."""
        ...

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with rules or unstopped jobs, by name, with job counts."""
        ...

    def add_listener(self, listener: ServiceListener) -> None:
        """Deliver job and bundle stop notifications to ``listener``."""
        ...

    def close(self) -> None:
        """Release connections and threads. Idempotent."""
        ...

    async def add_job_async(self, job: Job, *, conn: Transaction | None = None) -> Job:
        """Awaitable :meth:`add_job`. ``conn`` is an async connection or session (psycopg
        ``AsyncConnection``, SQLAlchemy ``AsyncConnection`` / ``AsyncSession``) whose open
        transaction the insert joins. Never blocks the event loop."""
        ...

    async def add_jobs_async(self, jobs: Sequence[Job], *, conn: Transaction | None = None) -> list[Job]:
        """Awaitable :meth:`add_jobs`; ``conn`` as for :meth:`add_job_async`."""
        ...

    async def add_job_bundle_async(self, bundle: JobBundle, *, conn: Transaction | None = None) -> JobBundle:
        """Awaitable :meth:`add_job_bundle`; ``conn`` as for :meth:`add_job_async`."""
        ...

    async def get_job_async(self, job_id: UUID, *, conn: Transaction | None = None) -> Job:
        """Awaitable :meth:`get_job`; with ``conn`` it reads inside that transaction."""
        ...
