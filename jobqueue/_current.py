"""The current service and the module functions that act on it.

``set_default_service`` sets the process-wide service; ``use_service`` overrides
it for a block (a context variable, so it follows asyncio tasks and
``contextvars.copy_context()``). Before either, every call raises
NotInitializedError saying what to call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from jobqueue._errors import NotInitializedError
from jobqueue._models import Job, JobBundle, Status
from jobqueue._queues import NoLimit, QueueInfo, RateLimit, check_queue_name
from jobqueue._service import Service, ServiceListener, Transaction

_NOT_INITIALIZED = (
    "no job queue service is set up: call jobworker_pg.init_job_queue(DATABASE_URL) at start-up, "
    "or jobqueue.set_default_service(service) / jobqueue.use_service(service)"
)


class _NullService:
    """The service before set-up: every method raises NotInitializedError."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> NoReturn:
            raise NotInitializedError(f"jobqueue.{name}(): {_NOT_INITIALIZED}")

        return fail

    def close(self) -> None:
        """Closing nothing is fine."""


NULL_SERVICE: Service = _NullService()  # satisfies Service through __getattr__

_default: Service | None = None
_current: ContextVar[Service | None] = ContextVar("jobqueue_service", default=None)


def set_default_service(service: Service | None) -> None:
    """Make ``service`` the process-wide default (``None`` forgets it)."""
    global _default
    _default = service


def get_service() -> Service:
    """The service of this context: the innermost ``use_service``, else the default,
    else a null service whose every call raises NotInitializedError."""
    service = _current.get()
    if service is not None:
        return service
    if _default is not None:
        return _default
    return NULL_SERVICE


@contextlib.contextmanager
def use_service(service: Service) -> Iterator[Service]:
    """Use ``service`` as the current service inside the ``with`` block (this context only)."""
    token = _current.set(service)
    try:
        yield service
    finally:
        _current.reset(token)


def add(job: Job, *, conn: Transaction | None = None) -> Job:
    """Store ``job`` (from :func:`new_job`) with the current service and return it as stored.

    With ``conn`` (psycopg or SQLAlchemy connection or session) the insert joins
    that open transaction: workers see the job only after it commits, and never
    if it rolls back. Raises InvalidJobError before any SQL for a bad job.
    """
    return get_service().add_job(job, conn=conn)


def add_many(jobs: Sequence[Job], *, conn: Transaction | None = None) -> list[Job]:
    """Store many jobs in one statement; all or none. See :func:`add`."""
    return get_service().add_jobs(jobs, conn=conn)


def add_bundle(bundle: JobBundle, *, conn: Transaction | None = None) -> JobBundle:
    """Store a bundle (from :func:`new_job_bundle`) and its jobs atomically. See :func:`add`."""
    return get_service().add_job_bundle(bundle, conn=conn)


async def add_async(job: Job, *, conn: Transaction | None = None) -> Job:
    """Awaitable :func:`add`, for asyncio code: never blocks the event loop.

    ``conn`` is a psycopg ``AsyncConnection`` or a SQLAlchemy ``AsyncConnection`` /
    ``AsyncSession``: the insert joins its open transaction, so workers see the job
    only after it commits, and never if it rolls back. Without ``conn`` the job is
    stored on its own. Raises InvalidJobError before any SQL for a bad job.
    """
    return await get_service().add_job_async(job, conn=conn)


async def add_many_async(jobs: Sequence[Job], *, conn: Transaction | None = None) -> list[Job]:
    """Awaitable :func:`add_many`: many jobs in one statement, all or none. See :func:`add_async`."""
    return await get_service().add_jobs_async(jobs, conn=conn)


async def add_bundle_async(bundle: JobBundle, *, conn: Transaction | None = None) -> JobBundle:
    """Awaitable :func:`add_bundle`: a bundle and its jobs atomically. See :func:`add_async`."""
    return await get_service().add_job_bundle_async(bundle, conn=conn)


async def get_job_async(job_id: UUID, *, conn: Transaction | None = None) -> Job:
    """Awaitable :func:`get_job` (JobNotFoundError if none); with ``conn`` (see
    :func:`add_async`) it reads inside that transaction."""
    return await get_service().get_job_async(job_id, conn=conn)


def get_job(job_id: UUID) -> Job:
    """The job with that id (JobNotFoundError if none)."""
    return get_service().get_job(job_id)


def get_job_bundle(bundle_id: UUID) -> JobBundle:
    """The bundle with that id and its jobs (JobNotFoundError if none)."""
    return get_service().get_job_bundle(bundle_id)


def delete_job(job_id: UUID) -> None:
    """Delete the job with that id (JobNotFoundError if none)."""
    get_service().delete_job(job_id)


def delete_job_bundle(bundle_id: UUID) -> None:
    """Delete the bundle with that id and its jobs (JobNotFoundError if none)."""
    get_service().delete_job_bundle(bundle_id)


def reset_job(job_id: UUID) -> Job:
    """Make the job run again from scratch. See :meth:`Service.reset_job`."""
    return get_service().reset_job(job_id)


def reset_jobs(job_ids: Iterable[UUID]) -> list[Job]:
    """Reset several jobs at once, all or none. See :meth:`Service.reset_jobs`."""
    return get_service().reset_jobs(job_ids)


def cancel_job(job_id: UUID) -> Job:
    """Cancel a job that has not started. See :meth:`Service.cancel_job`."""
    return get_service().cancel_job(job_id)


def get_status() -> Status:
    """Counts of jobs by state and type."""
    return get_service().get_status()


def get_all_jobs_to_do() -> list[Job]:
    """Every job not yet stopped."""
    return get_service().get_all_jobs_to_do()


def get_all_jobs_started_before(since: datetime) -> list[Job]:
    """Running jobs started before ``since``."""
    return get_service().get_all_jobs_started_before(since)


def get_all_jobs_with_errors() -> list[Job]:
    """Jobs whose last attempt failed."""
    return get_service().get_all_jobs_with_errors()


def delete_finished_jobs(older_than: timedelta | float | None = None) -> int:
    """Delete succeeded jobs outside bundles; returns the number deleted."""
    return get_service().delete_finished_jobs(older_than)


def configure_queue(
    name: str,
    *,
    concurrency: int | NoLimit | None = None,
    per_key_concurrency: int | NoLimit | None = None,
    rate_limit: RateLimit | NoLimit | None = None,
    paused: bool | None = None,
) -> QueueInfo:
    """Create or change the rules of queue ``name``, stored in the database so that every
    worker process applies them when it claims; returns the queue's rules.

    ``concurrency``: at most that many jobs of the queue running at once, cluster-wide;
    ``per_key_concurrency``: at most that many running jobs with the same
    ``concurrency_key``; ``rate_limit``: a :class:`RateLimit`, at most ``count`` starts in
    any window of ``per``; ``paused``: no claims while True (running jobs finish). None
    keeps a setting as it is, :data:`NO_LIMIT` removes a limit. Raises InvalidJobError for
    a bad value before any SQL runs.
    """
    return get_service().configure_queue(
        name,
        concurrency=concurrency,
        per_key_concurrency=per_key_concurrency,
        rate_limit=rate_limit,
        paused=paused,
    )


def pause_queue(name: str) -> QueueInfo:
    """Stop every worker process from claiming jobs of queue ``name`` (running jobs finish)."""
    return configure_queue(name, paused=True)


def resume_queue(name: str) -> QueueInfo:
    """Let workers claim jobs of queue ``name`` again after :func:`pause_queue`."""
    return configure_queue(name, paused=False)


def list_queues() -> list[QueueInfo]:
    """Every queue with rules or unstopped jobs, by name, with its waiting and running jobs."""
    return get_service().list_queues()


def get_queue(name: str) -> QueueInfo:
    """The rules and job counts of queue ``name`` (no limits for a queue never configured)."""
    name = check_queue_name(name)
    for info in list_queues():
        if info.name == name:
            return info
    return QueueInfo(name)


def add_listener(listener: ServiceListener) -> None:
    """Register a low-level :class:`ServiceListener` with the current service."""
    get_service().add_listener(listener)


def close() -> None:
    """Close the current service."""
    get_service().close()
